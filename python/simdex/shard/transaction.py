"""All-or-nothing `ShardedIndex.add`, and calls that wait for every shard before reporting a failure.

An add is one transaction over the shards it routes to:

1. Every check that can be made up front is made before any shard changes: the vectors are finite, the ids are
   non-negative, unique in the batch and in no shard (default ids start past every shard's own next id, so a
   shard changed behind the sharded index's back cannot collide), and no target shard is memory-mapped.
2. The pieces go to their shards. If any shard fails (a worker error, a dead Ray actor, a shard that cannot take
   the vectors, such as an untrained PCA given too few), the ids of the batch are removed again from every shard
   that ran, and the shard's error is raised: the shards hold what they held before (their next default id may
   have moved past the batch's ids, as after `Index.remove`).
3. Only if that removal fails too (a shard that died or became unreachable in between) does part of the batch
   stay: a `ShardError` then names the shards that may still hold it, and ``sharded.remove(ids)`` with the
   batch's ids repairs it (the ids were new, so removing them all removes exactly this batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from .._validate import as_ids
from .backends import ray_result
from .routing import shard_of
from .worker import ShardError, payload

log = logging.getLogger(__name__)

_BLOCK_ROWS = 8192


def check_finite(x: np.ndarray) -> None:
    """ValueError naming the first NaN or Inf in x (row and column of the batch), as `Index.add` does."""
    lo, hi = x.min(), x.max()  # NaN propagates through min/max: two passes, no n*dim temporary
    if np.isfinite(lo) and np.isfinite(hi):
        return
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        bad = ~np.isfinite(x[start:start + _BLOCK_ROWS])
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"vectors must be finite: row {start + int(row)}, column {int(col)} is NaN or Inf; "
                             "nothing was added")


def read_only_error(sharded: Any, shards: Sequence[int], what: str) -> None:
    """ValueError when one of the shards is memory-mapped (read-only), before anything is sent."""
    mapped = [s for s in shards if sharded._mapped[s]]
    if mapped:
        s = mapped[0]
        raise ValueError(f"shard {s} ({sharded._name(s)}) is memory-mapped (read-only){' and more' * (len(mapped) > 1)}"
                         f": nothing was {what}; open the shards with mmap=False to change them")


def settle(sharded: Any, shards: Sequence[int], method: str, args: Callable[[int], tuple],
           stop_on_error: bool = False) -> dict[int, tuple[bool, Any]]:
    """Runs method on the shards and waits for every one: {shard: (True, payload) or (False, exception)}.

    Unlike `ShardedIndex._call`, a failure does not leave other shards' calls running unseen. With
    ``stop_on_error``, shards run one after another (threads backend, no pool) stop at the first failure; the
    shards not run are absent from the result.
    """
    if sharded._closed:
        raise ValueError("this ShardedIndex is closed")
    backend = sharded._backend
    out: dict[int, tuple[bool, Any]] = {}
    if backend.name == "threads":
        if backend.pool is None or len(shards) == 1:
            for s in shards:
                try:
                    out[s] = (True, payload(getattr(backend.workers[s], method)(*args(s))))
                except Exception as e:  # noqa: BLE001 - reported to the caller with the shard
                    out[s] = (False, e)
                    if stop_on_error:
                        break
            return out
        futures = {s: backend.pool.submit(getattr(backend.workers[s], method), *args(s)) for s in shards}
        for s, f in futures.items():
            try:
                out[s] = (True, payload(f.result()))
            except Exception as e:  # noqa: BLE001
                out[s] = (False, e)
        return out
    refs = {s: backend.submit(s, method, args(s)) for s in shards}
    for s, ref in refs.items():
        try:
            out[s] = (True, ray_result(sharded, s, ref, method, args))
        except Exception as e:  # noqa: BLE001
            out[s] = (False, e)
    return out


def batch_ids(sharded: Any, n: int, ids: Any) -> np.ndarray:
    """The batch's ids, checked against every shard (nothing changes here)."""
    if ids is None:
        # Past the largest id any shard has ever held, asked of the shards themselves: an Index used as a shard
        # may have been given vectors directly.
        start = max([sharded._next_id, *sharded._call(range(sharded.num_shards), "next_id", lambda i: ())])
        if start + n > 2**63:  # the rule Index.add follows: refuse rather than wrap into ids that may be in use
            raise ValueError(f"automatic ids for {n} vectors would pass 2**63 - 1 (the next automatic id is "
                             f"{start}); pass ids explicitly, nothing was added")
        return np.arange(start, start + n, dtype=np.int64)
    id_arr = as_ids(ids, "ids", n=n)
    if (id_arr < 0).any():
        raise ValueError(f"ids: expected non-negative ids, got {int(id_arr.min())}")
    uniq, counts = np.unique(id_arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"ids: id {int(uniq[counts > 1][0])} appears more than once in this batch")
    present = sharded.contains(id_arr)
    if present.any():
        raise ValueError(f"ids: {int(present.sum())} id(s) are already stored, e.g. {int(id_arr[present][0])}")
    return id_arr


def add(sharded: Any, x: np.ndarray, ids: Any) -> np.ndarray:
    """`ShardedIndex.add` under its lock: all of the batch in the shards, or none of it (see the module notes)."""
    check_finite(x)
    id_arr = batch_ids(sharded, x.shape[0], ids)
    route = shard_of(id_arr, sharded.num_shards)
    picks = {s: np.flatnonzero(route == s) for s in range(sharded.num_shards) if (route == s).any()}
    read_only_error(sharded, list(picks), "added")
    outcome = settle(sharded, list(picks), "add", lambda s: (np.ascontiguousarray(x[picks[s]]), id_arr[picks[s]]),
                     stop_on_error=True)
    failed = [(s, e) for s, (ok, e) in outcome.items() if not ok]
    if not failed:
        for s in picks:
            sharded._dirty[s] += len(picks[s])
        sharded._next_id = max(sharded._next_id, int(id_arr.max()) + 1)
        return id_arr

    shard, error = failed[0]
    # Roll back: remove the batch's ids from every shard that ran, the failed ones included (their add raised, so
    # they should hold none; removing absent ids is a no-op).
    undo = settle(sharded, list(outcome), "remove", lambda s: (id_arr[picks[s]],))
    stuck = [s for s, (ok, _) in undo.items() if not ok and outcome[s][0]]
    for s, (ok, e) in undo.items():
        if not ok and not outcome[s][0]:
            log.debug("shard %d: rollback of a failed add: %s", s, e)
    if stuck:
        for s in stuck:
            sharded._dirty[s] += len(picks[s])  # may still hold them: unsaved changes to protect
        names = ", ".join(f"{s} ({sharded._name(s)})" for s in stuck)
        raise ShardError(
            f"add failed on shard {shard} ({sharded._name(shard)}): {type(error).__name__}: {error}; the other shards "
            f"were rolled back except shard(s) {names}, which may still hold part of this batch of {len(id_arr)} "
            f"vectors ({undo[stuck[0]][1]}). Repair with remove(ids) for this batch's ids (ids "
            f"{int(id_arr.min())}..{int(id_arr.max())}), then add again.", shard, sharded._name(shard)) from error
    log.warning("add: shard %d (%s) failed (%s: %s); the %d shard(s) that took part of the batch were rolled back",
                shard, sharded._name(shard), type(error).__name__, error, sum(ok for ok, _ in outcome.values()))
    raise error
