"""Sharded exact search: `simdex.ShardedIndex` over several index files or `Index` objects.

A sharded index is a list of ordinary simdex indexes (shards) with disjoint ids. A search sends the queries to
every shard once, each shard returns its own top-k, and the coordinator merges them into the global top-k. The
merge is exact: every shard scores a vector exactly as one index holding everything would (the kernels do not
depend on where a row sits), and the merge keeps the best k by score with ties to the lower id, like the core.
So the ids and scores equal those of a single index over the union of the shards.

Two backends run the same protocol (a `_ShardWorker` per shard):

* ``"threads"``: the workers live in this process; by default the shards are searched one after another, each
  with all the cores (``max_workers`` runs them side by side). No extra dependency; the choice on one machine.
* ``"ray"``: each worker is a Ray actor that loads its own shard file, on whichever node of a Ray cluster has
  room for it (``pip install simdex[ray]``). Actors restart after a crash (``max_restarts=-1``) and reload
  their shard; a call that hit the dead actor is retried once.

Routing of new vectors (``add``): the vector with id ``i`` goes to shard ``splitmix64(i) % num_shards``, where
splitmix64 is the 64-bit finalizer of Steele et al.'s SplitMix generator (see :func:`shard_of`). It is fixed,
platform-independent and spreads consecutive or strided ids evenly. `simdex.distributed_ingest` writes its shards
with the same rule. Shards opened from arbitrary files need not follow it: searches, `remove` and the duplicate
check ask every shard.

The manifest (``manifest.json`` in a shard folder) lists the shard files relative to itself; `ShardedIndex.save`
and `simdex.distributed_ingest` write it and `ShardedIndex.open` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Union

import numpy as np

from . import _shard_txn
from ._index import FormatError, Index, SearchResult, load, load_bytes
from ._validate import as_ids, as_k, as_matrix, as_min_score
from .docstore import TextSearchResult

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "simdex-sharded"
MANIFEST_VERSION = 1
ROUTING = "splitmix64"
BACKENDS = ("threads", "ray")

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


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


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> SearchResult:
    """Merges per-shard results (each best first, padded with (-inf, -1)) into the global top-k.

    Orders by score descending, then id ascending (the core's tie rule); padding sorts last.
    """
    if len(parts) == 1:
        return SearchResult(parts[0][0], parts[0][1])
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    # lexsort's last key is the primary one: -score ascending (best first), then id ascending.
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return SearchResult(np.ascontiguousarray(np.take_along_axis(scores, order, axis=1)),
                        np.ascontiguousarray(np.take_along_axis(ids, order, axis=1)))


# -- the per-shard worker ----------------------------------------------------------------------------------

def _describe(source: tuple[str, Any]) -> str:
    kind, value = source
    return value if kind == "path" else f"<in-memory shard ({kind})>"


class _ShardWorker:
    """One shard: the same methods in a thread (backend "threads") or as a Ray actor (backend "ray").

    Every reply carries the worker's epoch, a token drawn when the shard was (re)loaded, so the coordinator can
    tell that a Ray actor restarted (and reloaded its file) between two calls.

    A shard that cannot be loaded does not fail the constructor: the error is kept and raised by every call.
    That way Ray reports it as an ordinary task error (with its type) instead of a dead actor, and a restart
    that finds a damaged file produces a message that names the shard.
    """

    def __init__(self, shard: int, source: tuple[str, Any], mmap: bool = False, threads: int | None = None):
        self.shard = shard
        self.mmap = mmap
        if threads is not None:
            from ._core import set_num_threads

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
            raise ShardError(f"shard {self.shard} ({_describe(self.source)}) could not be loaded: "
                             f"{type(e).__name__}: {e}", self.shard, _describe(self.source))
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

    def search(self, queries: np.ndarray, k: int, min_score: float, allow: np.ndarray | None, rescore: Any = None):
        index = self._ready()
        # The public method: its checks cost nothing on arrays the coordinator already validated (no copies).
        extra = {} if rescore is None else {"rescore": rescore}
        scores, ids = index.search(queries, k, filter=allow, min_score=min_score, **extra)
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
        store = self._ready()._docstore  # the texts beside the shard file (simdex.docstore), if any
        return self.epoch, {} if store is None else {cid: doc for cid, (_, doc) in store.get(ids).items()}

    def save(self, path: str):
        self._ready().save(path)
        return self.epoch

    def set_metadata(self, metadata: dict):
        self._ready().metadata = metadata
        return self.epoch


# -- backends -------------------------------------------------------------------------------------------------

class _ThreadBackend:
    """Runs the workers in this process: one shard after another, or side by side on a thread pool when
    max_workers > 1."""

    name = "threads"

    def __init__(self, sources: list[tuple[str, Any]], mmap: bool, max_workers: int | None) -> None:
        self.workers = [_ShardWorker(i, s, mmap) for i, s in enumerate(sources)]
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


class _RayBackend:
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
        self.actor_cls = ray.remote(_ShardWorker).options(**options)
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
    import tempfile

    with tempfile.TemporaryDirectory(prefix="simdex-shard-") as tmp:
        path = os.path.join(tmp, "shard.simdex")
        index.save(path)
        with open(path, "rb") as f:
            return f.read()


def _reraise_open_error(shard: int, source: str, error: tuple[str, Any, str]) -> None:
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


# -- the coordinator ----------------------------------------------------------------------------------------

class ShardedIndex:
    """An exact index split into shards, searched as one.

    Args:
        shards: the shards: a list of index file paths and/or `simdex.Index` objects (used as they are, not
            copied, by the threads backend), or the path of a shard folder / its ``manifest.json``
            (like :meth:`open`). All must have the same dim and metric, the same fingerprint, and disjoint ids.
        backend: ``"threads"`` (in this process) or ``"ray"`` (one Ray actor per shard; uses the Ray cluster
            this process is connected to, ``ray.init()``'s default when it is not connected yet).
        mmap: load shard files memory-mapped (read-only: ``add``/``remove`` then raise ValueError).
        threads_per_shard: Ray backend: search threads in each actor (default: all cores of its node).
        actor_options: Ray backend: extra ``.options()`` for the shard actors, e.g. ``{"num_cpus": 8}`` to
            reserve cores, or a scheduling strategy. Default: ``max_restarts=-1, max_task_retries=0`` and
            ``scheduling_strategy="SPREAD"`` (shards go to different nodes when there are several).
        max_workers: threads backend: shards searched at once. Default 1: one after another, each with all the
            cores (the core parallelizes inside a shard, and a search that finds its thread pool busy runs on one
            thread, so side-by-side shard searches would leave cores idle on a large machine). More helps only
            for many small shards, where per-call costs dominate.
        check_ids: check at open that no id is in two shards (reads every id once; turn off for huge
            indexes you know are disjoint).
        restart_timeout: Ray backend: seconds to wait for a failed shard actor to come back before the retry.

    Raises:
        FileNotFoundError, PermissionError, OSError: a shard file cannot be read; the message names the shard.
        simdex.FormatError: a shard file is damaged or truncated, or does not match the manifest.
        ValueError: shards disagree on dim, metric or fingerprint, or share ids; a bad argument.
        ImportError: backend "ray" without Ray installed.

    Failures (Ray backend): a call that finds its actor dead (killed, out of memory, node lost) is retried once
    on the restarted actor, which has reloaded its file; if the retry fails too, or the restarted actor cannot
    load its file, a `ShardError` names the shard. Vectors added or removed since the last `save` live only in
    the actor's memory: when an actor with such changes restarts, they are gone, and every later call to that
    shard raises `ShardError` saying so rather than returning results without them (save, then re-open).

    Thread safety: searches may run from any number of threads; ``add``, ``remove`` and ``save`` take a lock.
    ``add`` is all or nothing across shards: every check (shape, NaN/Inf, ids, duplicates in any shard, read-only
    shards) happens before anything is sent, and when a shard fails mid-add the shards that took their part are
    rolled back (``simdex._shard_txn``); a search running meanwhile may see part of the batch until add returns.
    """

    _encoder: Any = None  # search_text's last encoder

    def __init__(self, shards: PathLike | Sequence[PathLike | Index], backend: str = "threads", *,
                 mmap: bool = False, threads_per_shard: int | None = None, actor_options: dict | None = None,
                 max_workers: int | None = None, check_ids: bool = True, restart_timeout: float = 120.0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        manifest = None
        if isinstance(shards, (str, os.PathLike)):
            manifest_path, manifest = _read_manifest(shards)
            base = os.path.dirname(manifest_path)
            shards = [os.path.join(base, s["file"]) for s in manifest["shards"]]
        elif isinstance(shards, Index):
            raise TypeError("shards: expected a list of paths or Index objects, got one Index (wrap it in a list)")
        shards = list(shards)
        if not shards:
            raise ValueError("shards: expected at least one shard, got an empty list")
        sources: list[tuple[str, Any]] = []
        for i, s in enumerate(shards):
            if isinstance(s, Index):
                sources.append(("index", s))
            elif isinstance(s, (str, os.PathLike)):
                sources.append(("path", os.path.abspath(os.fspath(s))))
            else:
                raise TypeError(f"shards[{i}]: expected a path or a simdex.Index, got {type(s).__name__}")
        self._sources = sources
        self._restart_timeout = float(restart_timeout)
        self._lock = threading.Lock()
        self._closed = False
        if backend == "threads":
            self._backend: Any = _ThreadBackend(sources, mmap, max_workers)
        else:
            self._backend = _RayBackend(sources, mmap, threads_per_shard, actor_options)
            self._sources = self._backend.sources
        self._epochs: list[str | None] = [None] * len(sources)
        self._dirty = [0] * len(sources)
        try:
            self._open(manifest, check_ids)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: PathLike, backend: str = "threads", **kwargs: Any) -> ShardedIndex:
        """Opens the shards listed in a manifest (a shard folder, or its ``manifest.json``).

        Keyword arguments are those of `ShardedIndex`.
        """
        return cls(os.fspath(path), backend, **kwargs)

    # -- protocol plumbing ----------------------------------------------------------------------------------
    def _open(self, manifest: dict | None, check_ids: bool) -> None:
        n = len(self._sources)
        if self._backend.name == "ray":
            errors = self._backend.ray.get([a.open_error.remote() for a in self._backend.actors])
        else:
            errors = [w.open_error() for w in self._backend.workers]
        for i, err in enumerate(errors):
            if err is not None:
                _reraise_open_error(i, _describe(self._sources[i]), err)
        infos = self._raw_call(range(n), "info", lambda i: ())
        for i, info in enumerate(infos):
            self._epochs[i] = info["epoch"]
        first = infos[0]
        for i, info in enumerate(infos[1:], start=1):
            for key in ("dim", "metric", "dtype", "fingerprint"):
                if info[key] != first[key]:
                    raise ValueError(f"shards disagree on {key}: shard 0 ({self._name(0)}) has {first[key]!r}, "
                                     f"shard {i} ({self._name(i)}) has {info[key]!r}")
        if manifest is not None:
            for i, (entry, info) in enumerate(zip(manifest["shards"], infos)):
                if "count" in entry and entry["count"] != info["size"]:
                    raise FormatError(f"shard {i} ({self._name(i)}) holds {info['size']} vectors, the manifest says "
                                      f"{entry['count']}: the folder mixes files from different saves")
                if manifest.get("dim") not in (None, info["dim"]):
                    raise FormatError(f"shard {i} ({self._name(i)}) has dim {info['dim']}, "
                                      f"the manifest says {manifest['dim']}")
        self._dim = int(first["dim"])
        self._metric = first["metric"]
        self._fingerprint = first["fingerprint"]
        self._dtype = first["dtype"]
        self._mapped = [bool(info["mapped"]) for info in infos]  # read-only shards: add/remove refuse up front
        self._next_id = max(int(info["next_id"]) for info in infos)
        if check_ids and n > 1:
            all_ids = self._call(range(n), "ids", lambda i: ())
            sizes = [len(a) for a in all_ids]
            merged = np.concatenate(all_ids)
            uniq, counts = np.unique(merged, return_counts=True)
            if (counts > 1).any():
                dup = int(uniq[counts > 1][0])
                owners = [i for i, a in enumerate(all_ids) if (a == dup).any()]
                raise ValueError(f"shards share ids ({int((counts > 1).sum())} in all): id {dup} is in shards "
                                 f"{owners}; a sharded index needs disjoint ids (sizes {sizes})")

    def _name(self, i: int) -> str:
        return _describe(self._sources[i])

    def _raw_call(self, shards: Sequence[int], method: str, args: Callable[[int], tuple]) -> list[Any]:
        """Calls without the epoch protocol (used at open)."""
        shards = list(shards)
        if self._backend.name == "threads":
            return self._backend.call(shards, method, args)
        ray = self._backend.ray
        return ray.get([self._backend.submit(i, method, args(i)) for i in shards])

    def _call(self, shards: Sequence[int], method: str, args: Callable[[int], tuple]) -> list[Any]:
        """Runs method on the given shards side by side and returns the payloads (replies minus the epoch)."""
        if self._closed:
            raise ValueError("this ShardedIndex is closed")
        shards = list(shards)
        if self._backend.name == "threads":
            replies = self._backend.call(shards, method, args)
            return [_payload(r) for r in replies]
        refs = [self._backend.submit(i, method, args(i)) for i in shards]
        return [self._ray_result(i, ref, method, args) for i, ref in zip(shards, refs)]

    def _ray_result(self, i: int, ref: Any, method: str, args: Callable[[int], tuple]) -> Any:
        """Waits for one shard's reply; retries once after an actor failure, and re-points a restarted actor."""
        ray = self._backend.ray
        from ray.exceptions import RayActorError, RayTaskError

        failure: BaseException | None = None
        reloaded = False
        while True:
            try:
                reply = ray.get(ref)
            except RayActorError as e:  # the actor died or is restarting (max_restarts=-1): try once more
                if failure is not None:
                    raise ShardError(f"shard {i} ({self._name(i)}) failed during {method}() and again when retried "
                                     f"on the restarted actor: {e}", i, self._name(i)) from e
                log.warning("shard %d (%s): %s() hit a dead actor (%s); retrying once on the restarted actor",
                            i, self._name(i), method, type(e).__name__)
                failure = e
                self._wait_restarted(i, e)
                ref = self._backend.submit(i, method, args(i))
                continue
            except RayTaskError as e:
                # The method itself raised (bad input, a shard that cannot be loaded): give the caller the
                # original exception, whose message is ours, without Ray's remote-traceback wrapper.
                cause = getattr(e, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            epoch = reply if isinstance(reply, str) else reply[0]
            if epoch != self._epochs[i]:
                if self._dirty[i]:
                    raise ShardError(
                        f"shard {i} ({self._name(i)}) restarted and lost the {self._dirty[i]} change(s) (vectors "
                        "added or removed) made since the last save; answering without them would be wrong. "
                        "Save more often, and re-open the ShardedIndex from the saved files.", i, self._name(i))
                if self._sources[i] != self._backend.created[i] and not reloaded:
                    # The restarted actor loaded the file it was created with, but the shard has been saved
                    # elsewhere since: point it at the current file and redo the call there.
                    reloaded = True
                    self._epochs[i] = self._reload(i)
                    ref = self._backend.submit(i, method, args(i))
                    continue
                self._epochs[i] = epoch
            return _payload(reply)

    def _reload(self, i: int) -> str:
        from ray.exceptions import RayTaskError

        try:
            epoch = self._backend.ray.get(self._backend.actors[i].reload.remote(self._sources[i]))
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, Exception) else e) from None
        self._backend.created[i] = self._sources[i]
        return epoch

    def _wait_restarted(self, i: int, error: BaseException) -> None:
        """Waits until shard i's actor answers again (it is restarting), up to `restart_timeout` seconds."""
        import time

        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

        ray = self._backend.ray
        deadline = time.monotonic() + self._restart_timeout
        pause = 0.05
        while True:
            try:
                ray.get(self._backend.actors[i].ping.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return
            except (ActorUnavailableError, GetTimeoutError):
                pass
            except ActorDiedError as e:
                # Dead for good only when Ray gave up on it (e.g. its node is gone and restarts are exhausted);
                # a death mid-restart is retried until the deadline.
                error = e
            if time.monotonic() >= deadline:
                raise ShardError(f"shard {i} ({self._name(i)}): its actor did not come back within "
                                 f"{self._restart_timeout:g} s after it failed ({error})", i, self._name(i)) from error
            time.sleep(pause)
            pause = min(1.0, pause * 2)

    # -- properties -----------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"`` or ``"ip"``."""
        return self._metric

    @property
    def dtype(self) -> str:
        """The shards' storage type: ``"float32"`` or ``"int8"``."""
        return self._dtype

    @property
    def num_shards(self) -> int:
        """Number of shards."""
        return len(self._sources)

    @property
    def backend(self) -> str:
        """``"threads"`` or ``"ray"``."""
        return self._backend.name

    @property
    def fingerprint(self) -> dict | None:
        """The embedding model's fingerprint shared by all shards, or None."""
        return self._fingerprint

    @property
    def shard_files(self) -> list[str | None]:
        """Each shard's current file (None for an in-memory shard never saved)."""
        return [value if kind == "path" else None for kind, value in self._sources]

    def shard_sizes(self) -> list[int]:
        """Vectors in each shard."""
        return [int(s) for s in self._call(range(self.num_shards), "size", lambda i: ())]

    def __len__(self) -> int:
        return sum(self.shard_sizes())

    def __repr__(self) -> str:
        return (f"simdex.ShardedIndex(num_shards={self.num_shards}, backend={self.backend!r}, dim={self._dim}, "
                f"metric={self._metric!r})")

    def ids(self) -> np.ndarray:
        """All stored ids (int64), shard by shard."""
        return np.concatenate(self._call(range(self.num_shards), "ids", lambda i: ()))

    def contains(self, ids: Any) -> np.ndarray:
        """A bool array: which of the given ids are stored (in any shard)."""
        ids = as_ids(ids, "ids")
        masks = self._call(range(self.num_shards), "contains", lambda i: (ids,))
        return np.logical_or.reduce(masks) if masks else np.zeros(len(ids), dtype=bool)

    def __contains__(self, id_: int) -> bool:
        return bool(self.contains([id_])[0])

    # -- search ---------------------------------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, *, filter: Any = None, min_score: float | None = None,
               rescore: int | None = None) -> SearchResult:
        """Finds the k best-scoring vectors across all shards; the same contract as `simdex.Index.search`.

        Args:
            queries: float array of shape (nq, dim) or (dim,).
            k: results per query; padded with (score -inf, id -1) when fewer qualify.
            filter: optional allow-list of ids (sent to every shard; each applies it inside its scan).
            min_score: optional floor on the score.
            rescore: int8 shards only, as in `Index.search`: each shard rescores its own k * rescore best
                candidates with the kept float vectors.

        Returns:
            SearchResult(scores float32 (nq, k), ids int64 (nq, k)), best first, ties to the lower id. For float32
            shards: the same ids and scores as one index holding every shard's vectors. int8 shards score on
            their own calibration, so they merge exactly only when they share one (trained on the same sample
            with `Index.train`); with ``rescore`` the returned scores are exact float scores either way.

        Raises:
            ShardError: (Ray backend) a shard failed twice, or restarted and lost unsaved changes.
        """
        q = as_matrix(queries, self._dim, "queries")
        k = as_k(k)
        floor = as_min_score(min_score)
        allow = None if filter is None else as_ids(filter, "filter")
        if self._backend.name == "ray":
            # Broadcast once: every actor reads the same object-store copy.
            ray = self._backend.ray
            q_arg: Any = ray.put(q)
            allow_arg: Any = None if allow is None else ray.put(allow)
        else:
            q_arg, allow_arg = q, allow
        parts = self._call(range(self.num_shards), "search", lambda i: (q_arg, k, floor, allow_arg, rescore))
        return merge_topk(parts, k)

    def search_text(self, query: str, k: int = 10, *, encoder: Any = None, filter: Any = None,
                    min_score: float | None = None) -> TextSearchResult:
        """Embeds a query and returns the k best vectors across all shards with their texts.

        The texts come from each shard's document store (``<shard file>.docs.sqlite``, written by
        `simdex.distributed_ingest` and by `Index.save` of an index holding texts). Like `Index.search_text` with
        ``chunks=True``: one result per vector, fewer than k when fewer qualify; a vector stored without text
        has document None.

        Args:
            encoder: the model that filled the shards (``embed_query``, ``dim``, ``fingerprint``); default: the
                one last used, else `simdex.Encoder` for the shards' fingerprint model.
            filter, min_score: as in `search`.

        Raises:
            FingerprintMismatch: (a ValueError) the encoder is another model than the shards', or the shards
                hold vectors but no fingerprint.
        """
        from .encoder import FingerprintMismatch, check_fingerprint

        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        enc = encoder if encoder is not None else self._encoder
        if enc is None:
            from .encoder import Encoder

            fp = self._fingerprint
            enc = Encoder(fp["model"]) if fp and fp.get("model") else Encoder()
        if self._fingerprint is not None:
            check_fingerprint(self._fingerprint, enc.fingerprint, "search_text")
        elif len(self):
            raise FingerprintMismatch("search_text: the shards hold vectors but no fingerprint, so nothing says "
                                      "which model made them")
        if enc.dim != self._dim:
            raise ValueError(f"encoder: its vectors have dim {enc.dim}, the shards expect dim {self._dim}")
        self._encoder = enc
        res = self.search(enc.embed_query(query), k, filter=filter, min_score=min_score)
        keep = res.ids[0] >= 0
        ids, scores = res.ids[0][keep], res.scores[0][keep]
        found: dict = {}
        for part in self._call(range(self.num_shards), "documents", lambda i: (ids,)):
            found.update(part)
        return TextSearchResult(ids, scores, [found.get(int(i)) for i in ids])

    # -- mutation -------------------------------------------------------------------------------------------
    def add(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """Adds vectors, each to the shard its id routes to (:func:`shard_of`), and returns the ids.

        Args:
            vectors: float array of shape (n, dim) or (dim,).
            ids: int64 ids, one per vector, non-negative and in no shard yet. Default: consecutive ids from the
                largest id any shard has ever held + 1.

        All or nothing: when a shard fails part-way, the shards that took their part are rolled back and the
        shard's error is raised; every shard then holds what it held before.

        Raises:
            ValueError: wrong shape, NaN/Inf, or a negative, repeated or already stored id; a memory-mapped
                (read-only) target shard (nothing is added).
            ShardError: (Ray backend) a shard failed mid-add (see the class notes); or a shard failed and the
                rollback failed on another, which may keep part of the batch: the message names those shards,
                and ``remove(ids)`` with the batch's ids repairs it.
        """
        x = as_matrix(vectors, self._dim, "vectors")
        with self._lock:
            return _shard_txn.add(self, x, ids)

    def remove(self, ids: Any) -> int:
        """Removes the given ids from whichever shards hold them; returns how many were removed.

        Not atomic across shards: when a shard fails, the others have removed their ids, and the shard's error is
        raised. Removing absent ids is a no-op, so calling remove again with the same ids completes it.

        Raises:
            ValueError: a shard is memory-mapped (read-only); nothing is removed.
        """
        id_arr = as_ids(ids, "ids")
        with self._lock:
            _shard_txn.read_only_error(self, range(self.num_shards), "removed")
            outcome = _shard_txn.settle(self, range(self.num_shards), "remove", lambda i: (id_arr,))
            for i, (ok, c) in outcome.items():
                if ok:
                    self._dirty[i] += int(c)
            for ok, e in outcome.values():
                if not ok:
                    raise e
        return int(sum(c for _, c in outcome.values()))

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, folder: PathLike | None = None) -> str | None:
        """Saves every shard (each file atomically, as `Index.save` does).

        Args:
            folder: None: each shard is saved over the file it was opened from (in-memory shards need a folder).
                A folder: the shards are written there as ``shard-00000.simdex``, ... with a ``manifest.json``
                (written last) that :meth:`open` reads, and become the shards' files from then on. With the Ray
                backend each actor writes its own file, so on a cluster the folder must be on storage that all
                nodes share.

        Returns:
            The manifest's path when a folder was given, else None.

        Raises:
            ValueError: folder is None but a shard has no file.
            OSError: a file cannot be written.
        """
        with self._lock:
            if folder is None:
                missing = [i for i, (kind, _) in enumerate(self._sources) if kind != "path"]
                if missing:
                    raise ValueError(f"shards {missing} are in-memory Index objects with no file; pass a folder to save()")
                self._call(range(self.num_shards), "save", lambda i: (self._sources[i][1],))
                self._dirty = [0] * self.num_shards
                return None
            folder = os.path.abspath(os.fspath(folder))
            os.makedirs(folder, exist_ok=True)
            names = [f"shard-{i:05d}.simdex" for i in range(self.num_shards)]
            self._call(range(self.num_shards), "save", lambda i: (os.path.join(folder, names[i]),))
            sizes = self.shard_sizes()
            for i, name in enumerate(names):
                self._sources[i] = ("path", os.path.join(folder, name))
            self._dirty = [0] * self.num_shards
            return write_manifest(folder, names, sizes, self._dim, self._metric, self._fingerprint)

    # -- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Releases the workers (Ray: kills the actors). Unsaved changes are lost."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._backend.close()

    def __enter__(self) -> ShardedIndex:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _worker_pids(self) -> list[int]:
        """Process id of each shard's worker (tests)."""
        return self._backend.pids()


def _payload(reply: Any) -> Any:
    if isinstance(reply, str):  # save: the epoch alone
        return None
    if len(reply) == 2:
        return reply[1]
    return reply[1:]


# -- the manifest -------------------------------------------------------------------------------------------

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


def _read_manifest(path: PathLike) -> tuple[str, dict]:
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
