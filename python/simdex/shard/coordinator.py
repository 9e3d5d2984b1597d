"""The coordinator: `simdex.ShardedIndex`, one exact index split into shards and searched as one.

A sharded index is a list of ordinary simdex indexes (shards) with disjoint ids. A search sends the queries to
every shard once, each shard returns its own top-k, and the coordinator merges them into the global top-k
(`simdex.shard.routing.merge_topk`), so the ids and scores equal those of a single index over the union of the
shards. New vectors go to the shard their id routes to (`simdex.shard.routing.shard_of`).

Two backends run the same protocol (a `simdex.shard.worker.ShardWorker` per shard; `simdex.shard.backends`):

* ``"threads"``: the workers live in this process; by default the shards are searched one after another, each
  with all the cores (``max_workers`` runs them side by side). No extra dependency; the choice on one machine.
* ``"ray"``: each worker is a Ray actor that loads its own shard file, on whichever node of a Ray cluster has
  room for it (``pip install simdex[ray]``). Actors restart after a crash (``max_restarts=-1``) and reload
  their shard; a call that hit the dead actor is retried once.

`add` is one transaction over the shards (`simdex.shard.transaction`); `save` writes the shard files and the
manifest (`simdex.shard.manifest`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .._core import FormatError
from .._index import Index, SearchResult
from .._validate import as_ids, as_k, as_matrix, as_thresholds
from . import transaction
from .backends import BACKENDS, RayBackend, ThreadBackend, ray_result, reraise_open_error
from .manifest import PathLike, read_manifest, write_manifest
from .routing import merge_topk
from .worker import describe, payload

if TYPE_CHECKING:
    from ..text.docstore import TextSearchResult


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
    rolled back (``simdex.shard.transaction``); a search running meanwhile may see part of the batch until add returns.
    """

    _encoder: Any = None  # search_text's last encoder

    def __init__(self, shards: PathLike | Sequence[PathLike | Index], backend: str = "threads", *,
                 mmap: bool = False, threads_per_shard: int | None = None, actor_options: dict | None = None,
                 max_workers: int | None = None, check_ids: bool = True, restart_timeout: float = 120.0) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        manifest = None
        if isinstance(shards, (str, os.PathLike)):
            manifest_path, manifest = read_manifest(shards)
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
            self._backend: Any = ThreadBackend(sources, mmap, max_workers)
        else:
            self._backend = RayBackend(sources, mmap, threads_per_shard, actor_options)
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
                reraise_open_error(i, describe(self._sources[i]), err)
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
        return describe(self._sources[i])

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
            return [payload(r) for r in replies]
        refs = [self._backend.submit(i, method, args(i)) for i in shards]
        return [ray_result(self, i, ref, method, args) for i, ref in zip(shards, refs)]

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
               max_distance: float | None = None, rescore: int | None = None,
               nprobe: int | None = None) -> SearchResult:
        """Finds the k best-scoring vectors across all shards; the same contract as `simdex.Index.search`.

        Args:
            queries: float array of shape (nq, dim) or (dim,).
            k: results per query; padded with (score -inf, id -1) when fewer qualify.
            filter: optional allow-list of ids (sent to every shard; each applies it inside its scan).
            min_score: optional floor on the score (cosine and ip shards).
            max_distance: optional largest squared distance kept (l2 shards), as in `Index.search`.
            rescore: int8 shards only, as in `Index.search`: each shard rescores its own k * rescore best
                candidates with the kept float vectors.
            nprobe: partitioned shards only (``Index(partitions=N)``): partitions each shard probes (default: each
                shard's own ``nprobe``, e.g. the one its ``tune`` stored).

        Returns:
            SearchResult(scores float32 (nq, k), ids int64 (nq, k)), best first, ties to the lower id (l2 shards:
            squared distances, nearest first, padded with (+inf, -1)). For float32
            shards: the same ids and scores as one index holding every shard's vectors. int8 shards score on
            their own calibration, so they merge exactly only when they share one (trained on the same sample
            with `Index.train`); with ``rescore`` the returned scores are exact float scores either way.

        Raises:
            ShardError: (Ray backend) a shard failed twice, or restarted and lost unsaved changes.
        """
        q = as_matrix(queries, self._dim, "queries")
        k = as_k(k)
        as_thresholds(self._metric, min_score, max_distance)  # refused here, before any shard is asked
        allow = None if filter is None else as_ids(filter, "filter")
        if self._backend.name == "ray":
            # Broadcast once: every actor reads the same object-store copy.
            ray = self._backend.ray
            q_arg: Any = ray.put(q)
            allow_arg: Any = None if allow is None else ray.put(allow)
        else:
            q_arg, allow_arg = q, allow
        parts = self._call(range(self.num_shards), "search",
                           lambda i: (q_arg, k, min_score, allow_arg, rescore, nprobe, max_distance))
        return merge_topk(parts, k, smallest_first=self._metric == "l2")

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
        from .._fingerprint import FingerprintMismatch, check_fingerprint
        from ..text.docstore import TextSearchResult

        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        enc = encoder if encoder is not None else self._encoder
        if enc is None:
            from ..text.encoder import Encoder

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
            return transaction.add(self, x, ids)

    def remove(self, ids: Any) -> int:
        """Removes the given ids from whichever shards hold them; returns how many were removed.

        Not atomic across shards: when a shard fails, the others have removed their ids, and the shard's error is
        raised. Removing absent ids is a no-op, so calling remove again with the same ids completes it.

        Raises:
            ValueError: a shard is memory-mapped (read-only); nothing is removed.
        """
        id_arr = as_ids(ids, "ids")
        with self._lock:
            transaction.read_only_error(self, range(self.num_shards), "removed")
            outcome = transaction.settle(self, range(self.num_shards), "remove", lambda i: (id_arr,))
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
