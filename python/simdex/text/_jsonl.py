"""Reading untrusted files for `simdex.ingest`, one line at a time in bounded memory, where no line can raise.

A line longer than ``max_line_bytes`` is never held whole: `read_lines` reads at most ``max_line_bytes + 1`` bytes
of it, then drops the rest in chunks of `DISCARD_CHUNK` bytes. `parse_json_line` and `parse_text_line` turn every
other line into a value or a `Skip` (a reason to count), whatever its bytes: invalid UTF-8, raw NUL bytes, JSON
nested 100,000 deep, integers of 5,000 digits.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

#: Bytes per read while dropping the rest of an over-long line.
DISCARD_CHUNK = 1 << 16
#: Records nested deeper than this (objects and arrays) are skipped: the document store writes and reads their
#: metadata with the json module, whose recursion would fail in a caller that is itself deep in its stack.
MAX_DEPTH = 100
_DETAIL_CHARS = 80
_NUL = "a raw NUL byte: binary data, or text in UTF-16/32"


class Skip(str):
    """Why an item is not stored: equal to its reason ("empty", "invalid_utf8", "malformed", "too_long"), with
    the item's key where it is known and a short detail for the report."""

    key: Any
    detail: str

    def __new__(cls, reason: str, key: Any = None, detail: str = "") -> Skip:
        self = super().__new__(cls, reason)
        self.key = key
        self.detail = detail[:_DETAIL_CHARS]
        return self


def read_lines(path: str | os.PathLike[str], max_line_bytes: int) -> Iterator[tuple]:
    """(line number from 1, the line's bytes without its ``\\n``, or a too_long `Skip`) per line of a file
    (gzip-compressed when its name ends with ``.gz``). Lines end at ``\\n`` only, as in a binary file's iteration,
    so line numbers (and the progress a resumed ingest skips by) are those of ``enumerate(open(path, "rb"), 1)``."""
    opener: Any = gzip.open if os.fspath(path).lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno in itertools.count(1):
            line = f.readline(max_line_bytes + 1)
            if not line:
                return
            if line.endswith(b"\n"):
                yield lineno, line[:-1]
            elif len(line) <= max_line_bytes:  # the last line, without a newline
                yield lineno, line
            else:
                del line
                while True:
                    rest = f.readline(DISCARD_CHUNK)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield lineno, Skip("too_long", detail=f"a line of more than {max_line_bytes} bytes (max_line_bytes)")


def parse_text_line(line: bytes) -> str | Skip:
    """The line as text (``\\r`` and ``\\n`` stripped from its end), or why it is skipped."""
    if b"\x00" in line:
        return Skip("malformed", detail=_NUL)
    try:
        return line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as e:
        return Skip("invalid_utf8", detail=f"byte {e.start}: {e.reason}")


def parse_json_line(line: bytes, id_field: str | None = None) -> Any:
    """The line's JSON value, or why it is skipped: strict UTF-8 (a leading byte order mark allowed), no raw NUL
    byte (a NUL in a string is written ``\\u0000``), nested at most `MAX_DEPTH` deep (the skip names the
    object's str or int `id_field`, if it has one)."""
    if not line.strip():
        return Skip("empty")
    if b"\x00" in line:
        return Skip("malformed", detail=_NUL)
    text = parse_text_line(line)
    if isinstance(text, Skip):
        return text
    try:
        value = json.loads(text[1:] if text.startswith("\ufeff") else text)
    except RecursionError:
        return Skip("malformed", detail="nested too deeply for the json module")
    except ValueError as e:  # JSONDecodeError; also integers longer than sys.get_int_max_str_digits()
        return Skip("malformed", detail=f"not JSON: {e}")
    if (text.count("[") + text.count("{") > MAX_DEPTH) and too_deep(value):
        key = value.get(id_field) if isinstance(value, dict) else None
        key = key if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)) else None
        return Skip("malformed", key, f"nested deeper than {MAX_DEPTH} levels")
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether dicts, lists and tuples nest more than `limit` deep in value (without recursion)."""
    containers = (dict, list, tuple)
    stack = [(value, 1)] if isinstance(value, containers) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, containers))
    return False


def metadata_error(meta: dict) -> str | None:
    """Why the document store could not keep meta (too deep, or not JSON), or None; for records from an
    iterable (JSONL records are checked as they are parsed)."""
    if too_deep(meta):
        return f"metadata nested deeper than {MAX_DEPTH} levels"
    try:
        json.dumps(meta)
    except (TypeError, ValueError, RecursionError) as e:
        return f"metadata not JSON: {e}"
    return None
