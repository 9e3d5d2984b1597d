"""Backends: where the shard workers run. ``"threads"``: in this process (`ThreadBackend`); ``"ray"``: one Ray actor
per shard (`RayBackend`), with the retry and restart handling of a failed actor (`ray_result`).

Ray is imported when a Ray backend is made, never by ``import simdex``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .._core import FormatError
from .._index import Index
from .worker import ShardError, ShardWorker, payload

BACKENDS = ("threads", "ray")

log = logging.getLogger(__name__)


class ThreadBackend:
    """Runs the workers in this process: one shard after another, or side by side on a thread pool when
    max_workers > 1."""

    name = "threads"

    def __init__(self, sources: list[tuple[str, Any]], mmap: bool, max_workers: int | None) -> None:
        self.workers = [ShardWorker(i, s, mmap) for i, s in enumerate(sources)]
        workers = min(max_workers or 1, len(sources))
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="simdex-shard") if workers > 1 else None

    def call(self, shards: Sequence[int], method: str, args: Callable[[int], tuple]) -> list[Any]:
        if self.pool is None or len(shards) == 1:
            return [getattr(self.workers[i], method)(*args(i)) for i in shards]
        futures = [self.pool.submit(getattr(self.workers[i], method), *args(i)) for i in shards]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def pids(self) -> list[int]:
        return [os.getpid()] * len(self.workers)


class RayBackend:
    """One Ray actor per shard. See `ShardedIndex` for the failure handling."""

    name = "ray"

    def __init__(self, sources: list[tuple[str, Any]], mmap: bool, threads: int | None,
                 actor_options: dict | None) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("backend='ray' needs Ray: pip install 'simdex[ray]' (or pip install 'ray[data]')") from None
        self.ray = ray
        if not ray.is_initialized():
            # Connects to RAY_ADDRESS or a running local cluster when there is one, else starts a local Ray.
            ray.init()
        options = {"max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        options.update(actor_options or {})
        self.actor_cls = ray.remote(ShardWorker).options(**options)
        self.mmap, self.threads = mmap, threads
        # An in-memory Index travels as the bytes of its file, pinned in the object store, so a restarted actor
        # can load it again.
        self.sources = [("bytes", ray.put(_index_bytes(s[1]))) if s[0] == "index" else s for s in sources]
        self.actors = [self.actor_cls.remote(i, s, mmap, threads) for i, s in enumerate(self.sources)]
        self.created = list(self.sources)  # what each actor loads when it (re)starts

    def submit(self, i: int, method: str, args: tuple):
        return getattr(self.actors[i], method).remote(*args)

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception as e:  # noqa: BLE001 - an actor already gone has nothing to release
                log.debug("closing shard actor: %s", e)
        self.actors = []

    def pids(self) -> list[int]:
        return [r["pid"] for r in self.ray.get([a.info.remote() for a in self.actors])]


def _index_bytes(index: Index) -> bytes:
    return index._core.to_bytes()  # what save writes, without a file (the texts stay behind: vectors only)


def reraise_open_error(shard: int, source: str, error: tuple[str, Any, str]) -> None:
    kind, errno_, message = error
    text = f"shard {shard} ({source}): {message}"
    if kind == "FormatError":
        raise FormatError(text)
    if errno_ is not None:
        import errno as _errno

        cls = {_errno.ENOENT: FileNotFoundError, _errno.EACCES: PermissionError,
               _errno.EISDIR: IsADirectoryError}.get(errno_, OSError)
        raise cls(errno_, text)
    raise ShardError(f"{text} ({kind})", shard, source)


# -- the Ray backend's failure handling (see ShardedIndex) ---------------------------------------------------

def ray_result(sharded: Any, i: int, ref: Any, method: str, args: Callable[[int], tuple]) -> Any:
    """Waits for one shard's reply; retries once after an actor failure, and re-points a restarted actor."""
    ray = sharded._backend.ray
    from ray.exceptions import RayActorError, RayTaskError

    failure: BaseException | None = None
    reloaded = False
    while True:
        try:
            reply = ray.get(ref)
        except RayActorError as e:  # the actor died or is restarting (max_restarts=-1): try once more
            if failure is not None:
                raise ShardError(f"shard {i} ({sharded._name(i)}) failed during {method}() and again when retried "
                                 f"on the restarted actor: {e}", i, sharded._name(i)) from e
            log.warning("shard %d (%s): %s() hit a dead actor (%s); retrying once on the restarted actor",
                        i, sharded._name(i), method, type(e).__name__)
            failure = e
            _wait_restarted(sharded, i, e)
            ref = sharded._backend.submit(i, method, args(i))
            continue
        except RayTaskError as e:
            # The method itself raised (bad input, a shard that cannot be loaded): give the caller the
            # original exception, whose message is ours, without Ray's remote-traceback wrapper.
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        epoch = reply if isinstance(reply, str) else reply[0]
        if epoch != sharded._epochs[i]:
            if sharded._dirty[i]:
                raise ShardError(
                    f"shard {i} ({sharded._name(i)}) restarted and lost the {sharded._dirty[i]} change(s) (vectors "
                    "added or removed) made since the last save; answering without them would be wrong. "
                    "Save more often, and re-open the ShardedIndex from the saved files.", i, sharded._name(i))
            if sharded._sources[i] != sharded._backend.created[i] and not reloaded:
                # The restarted actor loaded the file it was created with, but the shard has been saved
                # elsewhere since: point it at the current file and redo the call there.
                reloaded = True
                sharded._epochs[i] = _reload(sharded, i)
                ref = sharded._backend.submit(i, method, args(i))
                continue
            sharded._epochs[i] = epoch
        return payload(reply)


def _reload(sharded: Any, i: int) -> str:
    from ray.exceptions import RayTaskError

    try:
        epoch = sharded._backend.ray.get(sharded._backend.actors[i].reload.remote(sharded._sources[i]))
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        raise (cause if isinstance(cause, Exception) else e) from None
    sharded._backend.created[i] = sharded._sources[i]
    return epoch


def _wait_restarted(sharded: Any, i: int, error: BaseException) -> None:
    """Waits until shard i's actor answers again (it is restarting), up to `restart_timeout` seconds."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

    ray = sharded._backend.ray
    deadline = time.monotonic() + sharded._restart_timeout
    pause = 0.05
    while True:
        try:
            ray.get(sharded._backend.actors[i].ping.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return
        except (ActorUnavailableError, GetTimeoutError):
            pass
        except ActorDiedError as e:
            # Dead for good only when Ray gave up on it (e.g. its node is gone and restarts are exhausted);
            # a death mid-restart is retried until the deadline.
            error = e
        if time.monotonic() >= deadline:
            raise ShardError(f"shard {i} ({sharded._name(i)}): its actor did not come back within "
                             f"{sharded._restart_timeout:g} s after it failed ({error})", i, sharded._name(i)) from error
        time.sleep(pause)
        pause = min(1.0, pause * 2)
