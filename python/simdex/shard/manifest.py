"""The manifest: ``manifest.json`` in a shard folder lists the shard files (relative to itself) with their counts,
dim, metric and fingerprint. `ShardedIndex.save` and `simdex.distributed_ingest` write it (`write_manifest`),
`ShardedIndex.open` reads it (`read_manifest`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import Union

from .._core import FormatError
from .routing import ROUTING

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "simdex-sharded"
MANIFEST_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


def write_manifest(folder: str, files: Sequence[str], counts: Sequence[int], dim: int, metric: str,
                   fingerprint: dict | None, extra: dict | None = None) -> str:
    """Writes ``folder/manifest.json`` atomically and returns its path.

    Args:
        folder: the shard folder.
        files: shard file names, relative to the folder.
        counts: vectors per shard (checked at open).
        dim, metric, fingerprint: shared by all shards.
        extra: more JSON fields to record (e.g. ingest statistics).
    """
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "routing": ROUTING, "dim": int(dim),
                "metric": metric, "fingerprint": fingerprint, "count": int(sum(counts)),
                "shards": [{"file": f, "count": int(c)} for f, c in zip(files, counts)]}
    if extra:
        manifest.update(extra)
    path = os.path.join(folder, MANIFEST_NAME)
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_manifest(path: PathLike) -> tuple[str, dict]:
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no shard manifest at {path} (expected a folder written by ShardedIndex.save "
                                   "or simdex.distributed_ingest, or its manifest.json)", path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not a valid JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"{path}: expected a manifest with format {MANIFEST_FORMAT!r}, "
                          f"got {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r}")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise FormatError(f"{path}: manifest version {manifest['version']} is newer than this simdex reads "
                          f"({MANIFEST_VERSION}); upgrade simdex")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards or not all(isinstance(s, dict) and "file" in s for s in shards):
        raise FormatError(f"{path}: expected a non-empty 'shards' list of {{'file': ..., 'count': ...}}")
    return path, manifest
