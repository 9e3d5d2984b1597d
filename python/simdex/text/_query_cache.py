"""The query-vector cache of `simdex.Encoder` (``Encoder(cache_size=...)``): a thread-safe LRU with hit-rate counts.

No torch here: the cache is tested without a model.
"""

from __future__ import annotations

import numbers
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

import numpy as np

#: Query vectors an Encoder keeps by default (384-d: 1.5 MiB).
DEFAULT_CACHE_SIZE = 1024


class CacheInfo(NamedTuple):
    """Statistics of a `QueryCache` (as `functools.lru_cache`'s cache_info, plus the hit rate)."""

    hits: int
    misses: int
    size: int  # entries held now
    capacity: int  # at most this many (0: caching is off)
    hit_rate: float  # hits / (hits + misses); 0.0 before the first lookup


class QueryCache:
    """A thread-safe LRU of query vectors: at most `capacity` entries, 0 turns it off.

    Keys are hashable (an `Encoder` uses its model's identity plus a digest of the query text). Stored vectors are
    read-only copies; `get` returns a fresh writable copy, so a caller that changes a returned vector cannot change
    what later lookups return. Pickling keeps the capacity and drops the entries, the counts and the lock (an
    encoder sent to a Ray worker starts with an empty cache).

    Raises:
        TypeError: `capacity` is not an integer (bool included).
        ValueError: `capacity` is negative.
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral):
            raise TypeError(f"cache_size: expected a non-negative integer, got {type(capacity).__name__}")
        if capacity < 0:
            raise ValueError(f"cache_size: expected a non-negative integer (0 turns the cache off), got {capacity}")
        self._capacity = int(capacity)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def get(self, key: Hashable) -> np.ndarray | None:
        """A copy of the vector stored under `key` (now the most recently used), or None; counts a hit or a miss."""
        with self._lock:
            vector = self._entries.get(key)
            if vector is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
        return vector.copy()

    def put(self, key: Hashable, vector: np.ndarray) -> None:
        """Stores a read-only copy of `vector` under `key`, evicting the least recently used entry when full."""
        if self._capacity == 0:
            return
        stored = np.array(vector, dtype=np.float32, copy=True)
        stored.flags.writeable = False
        with self._lock:
            self._entries[key] = stored
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drops every entry and zeroes the counts."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            hits, misses, size = self._hits, self._misses, len(self._entries)
        lookups = hits + misses
        return CacheInfo(hits, misses, size, self._capacity, hits / lookups if lookups else 0.0)

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        return {"capacity": self._capacity}

    def __setstate__(self, state: dict) -> None:
        self._capacity = int(state["capacity"])
        self._reset()
