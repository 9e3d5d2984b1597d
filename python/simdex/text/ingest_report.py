"""What `simdex.ingest` reports: `IngestReport` and the `SkippedItem`s it names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

#: Skipped items an `IngestReport` names (the first ones); all are counted.
SKIPPED_KEPT = 100


class SkippedItem(NamedTuple):
    """A source item `simdex.ingest` did not store: item, its number in the source from 1 (for a JSONL or text
    file, its line number; for a folder, its place among the sorted files); key, its document id where known;
    reason, the report's counter without "skipped_" ("malformed", "too_long", ...); detail, what was wrong."""

    item: int
    key: Any
    reason: str
    detail: str = ""


@dataclass
class IngestReport:
    """What `simdex.ingest` did, counted over every run on the same source (a resumed run includes the
    earlier ones).

    Attributes:
        documents: documents stored (new ones, and those replaced because their text changed); chunks: vectors
            added (one per document without chunking).
        replaced: documents whose id was stored by an earlier run with another text: their old chunks and vectors
            were removed and the new text embedded (counted in documents too).
        unchanged: documents whose id was stored by an earlier run with the same text: nothing was embedded; a
            changed source or metadata was updated.
        skipped_empty, skipped_invalid_utf8, skipped_malformed, skipped_duplicate, skipped_too_long: source
            items not stored (malformed: not a str, (id, text) pair or record with a str text field and a str or
            int id, or a line that is not such a JSON record, has a raw NUL byte or nests over 100 deep;
            duplicate: a document id seen earlier in the same run; too_long: a line or file over max_line_bytes).
        skipped_items: the first `SKIPPED_KEPT` of them as `SkippedItem` (item number, key, reason, detail).
        truncated_chars: texts cut at max_chars; truncated_tokens: texts (or chunks) cut at the model's
            max_seq_length tokens.
        items: source items read; resumed_after: items an earlier run had done (skipped this time).
        seconds: time of this run; docs_per_s: documents stored per second by this run.
        checkpoints, checkpoint_seconds: saves of this run (index file, then store commit) and their total time.
        index: the index (saved at index_or_path when that was a path).
    """

    documents: int = 0
    chunks: int = 0
    replaced: int = 0
    unchanged: int = 0
    skipped_empty: int = 0
    skipped_invalid_utf8: int = 0
    skipped_malformed: int = 0
    skipped_duplicate: int = 0
    skipped_too_long: int = 0
    truncated_chars: int = 0
    truncated_tokens: int = 0
    items: int = 0
    resumed_after: int = 0
    seconds: float = 0.0
    docs_per_s: float = 0.0
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    skipped_items: list = field(default_factory=list)
    index: Any = field(default=None, repr=False, compare=False)

    @property
    def skipped(self) -> int:
        """Source items not stored, all reasons."""
        return (self.skipped_empty + self.skipped_invalid_utf8 + self.skipped_malformed + self.skipped_duplicate
                + self.skipped_too_long)

    def __str__(self) -> str:
        text = (f"{self.documents} documents ({self.replaced} replaced, {self.unchanged} unchanged), {self.chunks} "
                f"chunks from {self.items} items; skipped "
                f"{self.skipped} (empty {self.skipped_empty}, invalid UTF-8 {self.skipped_invalid_utf8}, malformed "
                f"{self.skipped_malformed}, duplicate id {self.skipped_duplicate}, too long "
                f"{self.skipped_too_long}); truncated {self.truncated_chars} at max_chars, {self.truncated_tokens} "
                f"at the model's max_seq_length; {self.docs_per_s:.1f} docs/s")
        if self.skipped_items:
            named = ", ".join(f"#{s.item}" + (f" {s.key!r}" if s.key is not None else "") + f" {s.reason}"
                              + (f" ({s.detail})" if s.detail else "") for s in self.skipped_items[:3])
            more = self.skipped - min(3, len(self.skipped_items))
            text += f"; skipped items: {named}" + (f" and {more} more (report.skipped_items)" if more > 0 else "")
        return text + (f"; resumed after item {self.resumed_after}" if self.resumed_after else "")


_COUNTERS = tuple(f.name for f in fields(IngestReport)
                  if f.name.startswith(("skipped_", "truncated_")) and f.name != "skipped_items")
_STORED = _COUNTERS + ("documents", "chunks", "replaced", "unchanged", "items")
