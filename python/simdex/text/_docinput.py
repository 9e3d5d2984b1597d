"""What `Collection.upsert`, `delete` and `get` accept: document keys, and documents as dicts or tuples, checked
before anything is embedded or written (a bad item is named by its position)."""

from __future__ import annotations

import json
from typing import Any, Optional

from ._jsonl import metadata_error


def as_key(key: Any, where: str) -> Any:
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= 63):
        return key
    raise TypeError(f"{where}: expected a document key (str, or int within 64 bits), got {type(key).__name__}")


def as_keys(keys: Any) -> list:
    if isinstance(keys, (str, int)):
        raise TypeError(f"keys: expected a list of document keys, got a single {type(keys).__name__}")
    return [as_key(k, f"keys[{i}]") for i, k in enumerate(keys)]


def parse_doc(item: Any, i: int) -> tuple:
    """(key, text, metadata dict, its JSON as stored or None) of one upsert item: a dict
    ``{"id": key, "text": str, **metadata}`` (or with a ``"metadata"`` dict), or a tuple ``(key, text)`` /
    ``(key, text, metadata)``."""
    where = f"docs[{i}]"
    meta: Any
    if isinstance(item, dict):
        if "id" not in item or "text" not in item:
            raise ValueError(f"{where}: expected a dict with 'id' and 'text', got keys {sorted(map(str, item))[:8]}")
        meta = {k: v for k, v in item.items() if k not in ("id", "text")}
        if set(meta) == {"metadata"} and isinstance(meta["metadata"], dict):
            meta = meta["metadata"]
        key, text = item["id"], item["text"]
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        key, text, meta = item[0], item[1], (item[2] if len(item) == 3 else None)
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"{where}: expected metadata as a dict, got {type(meta).__name__}")
    else:
        raise TypeError(f"{where}: expected a dict with 'id' and 'text', or (key, text[, metadata]), got "
                        f"{type(item).__name__}")
    key = as_key(key, f"{where} key")
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected the text as str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where}: expected a non-empty text, got {text!r}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{where}: not valid UTF-8 ({e.reason} at {e.start})") from None
    meta = dict(meta or {})
    for k in meta:
        if not isinstance(k, str):
            raise TypeError(f"{where}: metadata keys must be str, got {k!r}")
    encoded = None
    if meta:
        # flat metadata (the common case) cannot be too deep: only nested values need the depth walk
        error = metadata_error(meta) if any(isinstance(v, (dict, list, tuple)) for v in meta.values()) else None
        if error is None:
            try:
                encoded = json.dumps(meta)
            except (TypeError, ValueError, RecursionError) as e:
                error = f"metadata not JSON: {e}"
        if error:
            raise ValueError(f"{where}: {error}")
    return key, text, meta, encoded


def source_of(meta: dict) -> Optional[str]:
    """`Document.source`: the metadata's "source" when it is a str (the metadata keeps it too)."""
    source = meta.get("source")
    return source if isinstance(source, str) else None
