"""The worker protocol: `ShardWorker`, one shard behind the same methods in a thread or as a Ray actor.

Every reply carries the worker's epoch (a token drawn when the shard was (re)loaded) first, then its payload
(`payload`), so the coordinator can tell that a Ray actor restarted, and reloaded its file, between two calls.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

from .._index import Index
from .._load import load_bytes
from ..text.persist import load  # the index file and the texts beside it (sqlite3 only when there are some)


class ShardError(RuntimeError):
    """A shard failed in a way the sharded index cannot hide; the message names the shard and its file.

    Attributes:
        shard: the shard's number (position in the shard list).
        source: the shard's file, or a description of an in-memory shard.
    """

    def __init__(self, message: str, shard: int | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.shard = shard
        self.source = source

    def __reduce__(self):  # keeps shard and source across Ray's pickling
        return (ShardError, (str(self), self.shard, self.source))


def describe(source: tuple[str, Any]) -> str:
    kind, value = source
    return value if kind == "path" else f"<in-memory shard ({kind})>"


class ShardWorker:
    """One shard: the same methods in a thread (backend "threads") or as a Ray actor (backend "ray"); every reply
    is (epoch, payload...) or the epoch alone.

    A shard that cannot be loaded does not fail the constructor: the error is kept and raised by every call.
    That way Ray reports it as an ordinary task error (with its type) instead of a dead actor, and a restart
    that finds a damaged file produces a message that names the shard.
    """

    def __init__(self, shard: int, source: tuple[str, Any], mmap: bool = False, threads: int | None = None):
        self.shard = shard
        self.mmap = mmap
        if threads is not None:
            from .._core import set_num_threads

            set_num_threads(threads)
        self._load(source)

    def _load(self, source: tuple[str, Any]) -> None:
        self.source = source
        self.epoch = uuid.uuid4().hex
        self.index: Index | None = None
        self.error: BaseException | None = None
        kind, value = source
        try:
            if kind == "index":
                self.index = value
            elif kind == "bytes":
                if not isinstance(value, (bytes, bytearray, memoryview)):
                    import ray  # an ObjectRef nested in the source tuple: Ray resolves only top-level args

                    value = ray.get(value)
                self.index = load_bytes(value)
            else:
                self.index = load(value, mmap=self.mmap)
        except (OSError, ValueError) as e:  # FormatError is a ValueError
            self.error = e

    def _ready(self) -> Index:
        if self.index is None:
            e = self.error
            raise ShardError(f"shard {self.shard} ({describe(self.source)}) could not be loaded: "
                             f"{type(e).__name__}: {e}", self.shard, describe(self.source))
        return self.index

    def open_error(self) -> tuple[str, Any] | None:
        """The load error as (type name, errno-or-None, message), for the coordinator to re-raise at open."""
        e = self.error
        if e is None:
            return None
        return (type(e).__name__, getattr(e, "errno", None), str(e))

    def ping(self) -> str:
        return self.epoch

    def info(self) -> dict[str, Any]:
        index = self._ready()
        return {"epoch": self.epoch, "dim": index.dim, "metric": index.metric, "size": len(index),
                "next_id": int(index._core.next_id), "fingerprint": index.fingerprint, "mapped": index._core.mapped,
                "dtype": getattr(index, "dtype", "float32"),
                "pid": os.getpid()}

    def reload(self, source: tuple[str, Any]) -> str:
        self._load(source)
        self._ready()
        return self.epoch

    def search(self, queries: np.ndarray, k: int, min_score: Any, allow: np.ndarray | None, rescore: Any = None,
               nprobe: Any = None, max_distance: Any = None):
        index = self._ready()
        # The public method: its checks cost nothing on arrays the coordinator already validated (no copies).
        scores, ids = index.search(queries, k, filter=allow, min_score=min_score, max_distance=max_distance,
                                   rescore=rescore, nprobe=nprobe)
        return self.epoch, scores, ids

    def add(self, vectors: np.ndarray, ids: np.ndarray):
        index = self._ready()
        index.add(vectors, ids)
        return self.epoch, len(ids)

    def remove(self, ids: np.ndarray):
        return self.epoch, self._ready().remove(ids)

    def contains(self, ids: np.ndarray):
        index = self._ready()
        if len(ids) <= 64:
            mask = np.fromiter((int(i) in index for i in ids), dtype=bool, count=len(ids))
        else:
            mask = np.isin(ids, index.ids())
        return self.epoch, mask

    def ids(self):
        return self.epoch, self._ready().ids()

    def size(self):
        return self.epoch, len(self._ready())

    def next_id(self):
        return self.epoch, int(self._ready()._core.next_id)

    def documents(self, ids: np.ndarray):
        from ..text.texts import documents  # the texts beside the shard file (simdex.text.docstore), if any

        return self.epoch, documents(self._ready(), ids)

    def save(self, path: str):
        self._ready().save(path)
        return self.epoch

    def set_metadata(self, metadata: dict):
        self._ready().metadata = metadata
        return self.epoch


def payload(reply: Any) -> Any:
    if isinstance(reply, str):  # save: the epoch alone
        return None
    if len(reply) == 2:
        return reply[1]
    return reply[1:]
