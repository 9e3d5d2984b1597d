"""Routing: which shard a vector id goes to (`shard_of`), and the merge of per-shard results (`merge_topk`).

The vector with id ``i`` goes to shard ``splitmix64(i) % num_shards``, where splitmix64 is the 64-bit finalizer of
Steele et al.'s SplitMix generator. It is fixed, platform-independent and spreads consecutive or strided ids evenly;
`ShardedIndex.add` and `simdex.distributed_ingest` both follow it. Shards opened from arbitrary files need not:
searches, `remove` and the duplicate check ask every shard.

The merge is exact: every shard scores a vector exactly as one index holding everything would (the kernels do not
depend on where a row sits), and the merge keeps the best k by score with ties to the lower id, like the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._index import SearchResult
from .._validate import as_ids

#: The routing rule's name, recorded in manifests and shard metadata.
ROUTING = "splitmix64"


def shard_of(ids: Any, num_shards: int) -> np.ndarray:
    """The shard each id is routed to: ``splitmix64(id) % num_shards`` (int64 array).

    splitmix64(z): ``z += 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)``, all modulo 2**64 on the id's two's
    complement bits.

    Args:
        ids: int64 ids.
        num_shards: number of shards (positive).
    """
    if num_shards <= 0:
        raise ValueError(f"num_shards: expected a positive integer, got {num_shards}")
    z = as_ids(ids, "ids").view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(num_shards)).astype(np.int64)


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, *, smallest_first: bool = False) -> SearchResult:
    """Merges per-shard results (each best first, padded with (-inf, -1)) into the global top-k.

    Orders by score descending, then id ascending (the core's tie rule); padding sorts last. smallest_first: the
    scores are l2 distances (nearest first, padded with (+inf, -1)), ordered ascending instead.
    """
    if len(parts) == 1:
        return SearchResult(parts[0][0], parts[0][1])
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    # lexsort's last key is the primary one: the score (best first), then id ascending.
    order = np.lexsort((ids, scores if smallest_first else -scores), axis=1)[:, :k]
    return SearchResult(np.ascontiguousarray(np.take_along_axis(scores, order, axis=1)),
                        np.ascontiguousarray(np.take_along_axis(ids, order, axis=1)))
