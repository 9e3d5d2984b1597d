"""The index, vectors only: `simdex.Index` (exact, or partitioned: `_partitions.py`). Reading its files is
`_load.py`."""

from __future__ import annotations

import json
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import numpy as np

from . import _core, _partitions
from ._fingerprint import guard_fingerprint
from ._profile import refresh_profile
from ._transform_file import from_sections
from ._transformed import TransformedMixin
from ._validate import (METRICS, as_dim, as_dtype, as_ids, as_k, as_keep_originals, as_matrix, as_rescore,
                        as_thresholds, check_transform)
from .diagnostics import search_diagnostics

if TYPE_CHECKING:  # the text wing sits above Index; only its result type is named here
    from .text.docstore import TextSearchResult

# A first add smaller than this calibrates int8 on too few vectors to know each dimension's range.
MIN_CALIBRATION_VECTORS = 1000
#: Files that live beside an index file and belong to it, by the name of the companion that writes them (see
#: `Index._companions`). `Index.save` removes the ones the saved index does not write, so an index saved over
#: another never inherits that one's texts. Index knows their names, not what they hold.
COMPANION_FILES = {"docs": ".docs.sqlite"}


class SearchResult(NamedTuple):
    """Search output: `scores` float32 (nq, k) best first, `ids` int64 (nq, k); padding is (-inf, -1). Under
    metric ``"l2"`` the scores are squared distances, smallest first, and padding is (+inf, -1)."""

    scores: np.ndarray
    ids: np.ndarray


class DiagnosedResult(NamedTuple):
    """``search(..., diagnostics=True)``: the results plus one :class:`simdex.diagnostics.QueryDiagnostics` per
    query (specificity z-score, gap, flags "tied" / "unspecific")."""

    scores: np.ndarray
    ids: np.ndarray
    diagnostics: list


class Index(_partitions.PartitionedMixin, TransformedMixin):
    """Exact nearest-neighbour index over float32 vectors (or their int8 codes), scored by inner product.

    Args:
        dim: vector dimension.
        metric: ``"cosine"`` normalizes vectors to unit length on add and on query, so the score is the cosine
            similarity (zero vectors stay zero and score 0); ``"ip"`` scores the raw inner product; ``"l2"``
            returns squared distances ``||q - x||^2``, smallest first, unnormalized (each recomputed from q - x).
        dtype: ``"float32"`` stores the vectors and scores them exactly. ``"int8"`` stores one byte per
            dimension (4x less memory) and scores with integer SIMD kernels (``docs/int8.md``): each dimension's
            range is calibrated once, by :meth:`train` or automatically from the first :meth:`add`, then fixed,
            so every later batch is encoded the same way. Scores are then approximate (recall@10 about 0.99 on
            sentence embeddings); ``search(..., rescore=R)`` makes them exact. ``"binary"``: one bit per dimension
            (32x less; cosine and ip only), the sign around a centre learned like the int8 calibration, scored
            with the float query (docs/int8.md, "Binary codes"); use it with ``keep_originals`` and ``rescore``.
        keep_originals: int8 / binary only: True (or ``"float32"``) also keeps the float vectors (in RAM, or
            memory-mapped with ``simdex.load(path, mmap=True)``), which ``search(..., rescore=R)`` needs; binary
            also takes ``"int8"``: int8 codes (a quarter of the float bytes) that rescore scores instead.

    Every stored vector has a non-negative int64 id that stays the same across removals and save/load.
    Search scans everything with SIMD kernels chosen at run time (see :func:`simdex.simd_info`), keeps a
    per-query top-k while it scans, uses all cores (:func:`simdex.set_num_threads`) and releases the GIL.
    Ties in score go to the lower id.

    Thread safety: any number of threads may search at once; ``add``, ``remove`` and ``reset`` each take
    the index exclusively (a search sees a whole batch or none of it), and ``save`` excludes them while it
    writes. Waiting writers are let in ahead of newly arriving searches, so a busy server cannot starve them.
    After ``fork()`` the child can use the index (with its own thread pool), unless another thread of the
    parent was changing it at that instant: then every call in the child raises RuntimeError rather than
    read half-changed data. Ctrl-C interrupts a long search with KeyboardInterrupt; the index stays intact.

    Dimensionality reduction: with ``transform=simdex.PCA(384)`` (or :class:`simdex.RandomProjection`) the
    index stores ``out_dim``-dimensional vectors. Vectors and queries keep arriving at ``dim``; under cosine
    they are normalized at full dimension first, then projected (database rows with ``transform``, queries
    with ``transform_query``). The transform is trained on the first ``add`` if it is not fitted yet (or
    explicitly with :meth:`train`) and is saved in the index file. Scores estimate the full-dimension score:
    for ``PCA`` (its default ``center="database"``) the inner product of the query with each vector's PCA
    reconstruction; for random projections and ``PCA(center="both" or "none")`` under cosine, the cosine of
    the reduced vectors (they are renormalized); for an orthogonal random projection under ``"ip"``, the reduced
    inner product scaled by ``dim / out_dim``. ``reconstruct`` returns the stored (reduced) vectors.

    Texts: the index holds vectors only. The text wing (`simdex.text`) keeps texts for it in a companion object
    (``index._companions["docs"]``) that `save` asks to write its file beside the index file; `add_texts` and
    `search_text` forward to `simdex.text`.
    """

    #: Objects the upper wings attach to this index, by name (a key of `COMPANION_FILES`). Each has
    #: ``prepare_save(index, path)``, called before the index file is written, which returns None (nothing to write:
    #: `save` removes a stale file of that name) or a function `save` calls once the index file is in place; and
    #: ``close()``. The index knows nothing else of them.
    _companions: dict
    #: The file this index was loaded from or last saved to; None for an index only in memory.
    _path: Optional[str]

    def __init__(self, dim: int, metric: str = "cosine", dtype: str = "float32", keep_originals: bool = False,
                 transform: Any = None, partitions: Optional[int] = None) -> None:
        dim = as_dim(dim)
        parts = _partitions.as_partitions(partitions) or 0
        if metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
        dtype = as_dtype(dtype)
        keep_originals, keep_int8 = as_keep_originals(keep_originals, dtype)
        if keep_originals and dtype == "float32":
            raise ValueError("keep_originals=True applies to dtype='int8' or 'binary'; a float32 index stores the "
                             "vectors themselves")
        self._dim, self._metric = dim, metric
        self._transform = check_transform(transform, dim, metric)
        self._train_lock = threading.Lock()
        self._companions, self._path = {}, None
        if self._transform is None:
            self._core = _core.FlatIndex(dim, metric, dtype, keep_originals, parts, keep_int8)
        else:
            # Normalization (cosine) happens before projecting; the reduced vectors are renormalized only for the
            # transforms whose ranking gains from it (see _renormalize), else scored by inner product.
            core_metric = "l2" if metric == "l2" else "cosine" if self._renormalized() else "ip"
            self._core = _core.FlatIndex(self._transform.out_dim, core_metric, dtype, keep_originals, parts, keep_int8)
            self._store_transform()

    @classmethod
    def _from_core(cls, core: Any, source: str = "<index>") -> "Index":
        self = cls.__new__(cls)
        self._core = core
        self._train_lock = threading.Lock()
        self._companions, self._path = {}, None
        sections = {t[0]: t for t in core.extra_sections()}
        if "transform" in sections:
            self._transform, self._dim, self._metric = from_sections(sections, core.dim, source)
        else:
            self._transform, self._dim, self._metric = None, core.dim, core.metric
        return self

    # -- properties -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension (of the vectors given to add and search, before any transform)."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"``, ``"ip"`` or ``"l2"``."""
        return self._metric

    @property
    def transform(self) -> Any:
        """The dimensionality-reduction pre-transform, or None."""
        return self._transform

    @property
    def dtype(self) -> str:
        """``"float32"``, ``"int8"`` or ``"binary"``."""
        return self._core.dtype

    @property
    def keep_originals(self) -> "bool | str":
        """True when an int8 or binary index also keeps the float vectors (always True for float32); ``"int8"``
        when a binary index keeps int8 codes for rescoring instead."""
        return "int8" if self._core.keeps_int8 else bool(self._core.keeps_originals)

    @property
    def is_trained(self) -> bool:
        """False only for an int8 index whose calibration is not learned yet (no :meth:`train`, no add)."""
        return bool(self._core.trained)

    @property
    def calibration(self) -> np.ndarray:
        """int8 calibration, float32 (2, dim): per-dimension offsets, then steps (0 on a dimension with no
        range). A vector x is stored as ``clip(rint((x - offset) / step), -127, 127)``. Binary: the centre,
        then the scale; x is stored as the bits ``x > centre``.

        Raises:
            ValueError: a float32 index, or an int8 index not calibrated yet.
        """
        return self._core.calibration()

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        mapped = ", mmap=True" if self._core.mapped else ""
        extra = ""
        if self.dtype != "float32":
            kept = self.keep_originals
            extra = f", dtype={self.dtype!r}" + (f", keep_originals={kept!r}" if kept else "")
        extra += f", transform={self._transform!r}" if self._transform is not None else ""
        extra += f", partitions={self.partitions}" if self.partitions else ""
        return f"simdex.Index(dim={self.dim}, metric={self.metric!r}{extra}, size={len(self)}{mapped})"

    def ids(self) -> np.ndarray:
        """The stored ids (int64), in storage order."""
        return self._core.ids()

    def __contains__(self, id_: int) -> bool:
        return bool(self._core.contains(int(id_)))

    def memory_usage(self, detail: bool = False) -> "int | dict":
        """Bytes held by the index: vectors (or int8 codes and kept originals), calibration, ids and the id
        lookup table. ``detail=True`` returns them by part (``vectors``, ``calibration``, ``ids``, ``metadata``,
        ``file_image``). The vectors of a memory-mapped index are not counted: they are the file's pages in the page
        cache, shared and reclaimable. Nor is room reserved for later adds: until written it takes address space,
        not memory."""
        if detail:
            return {k: int(v) for k, v in self._core.memory_breakdown().items()}
        return int(self._core.memory_usage())

    @property
    def metadata(self) -> dict:
        """JSON-serialisable facts saved with the index (a copy; assign to change)."""
        text = self._core.metadata
        return json.loads(text) if text else {}

    @metadata.setter
    def metadata(self, value: dict) -> None:
        self._core.metadata = json.dumps(value, sort_keys=True)

    @property
    def fingerprint(self) -> Optional[dict]:
        """The embedding model's fingerprint this index was filled with, or None."""
        return self.metadata.get("fingerprint")

    def monitor(self, **options: Any) -> Any:
        """``simdex.quality.monitor.SearchMonitor(self, **options)``: searches with rolling latency, top-1 score and
        flagged-query rates (and Prometheus export)."""
        from .quality.monitor import SearchMonitor

        return SearchMonitor(self, **options)

    # -- mutation ---------------------------------------------------------------------------------------
    def add(self, vectors: Any, ids: Any = None, *, fingerprint: Optional[dict] = None) -> np.ndarray:
        """Adds vectors and returns their ids.

        Args:
            vectors: float32 or float64 array of shape (n, dim) or (dim,), any memory order. A C-contiguous
                float32 array is passed to the core without a copy; anything else is converted once.
            ids: int64 ids, one per vector (non-negative, not already present). Default: consecutive ids
                from the largest id ever added + 1.
            fingerprint: the `simdex.Encoder.fingerprint` of the model that made the vectors. An empty index
                records it; a non-empty one checks it.

        Raises:
            TypeError: non-floating vectors or non-integer ids.
            ValueError: wrong shape or dim, NaN or Inf, a duplicate or negative id, or an index opened with
                ``simdex.load(path, mmap=True)`` (read-only). Nothing is added then.
            FingerprintMismatch: (a ValueError) the fingerprint is not the index's.
        """
        x = as_matrix(vectors, self.dim, "vectors")
        guard_fingerprint(self, fingerprint, "add")
        if self.dtype != "float32" and x.shape[0] < MIN_CALIBRATION_VECTORS and not self._core.trained:
            warnings.warn(
                f"this first add calibrates the {self.dtype} index on {x.shape[0]} vectors (fewer than "
                f"{MIN_CALIBRATION_VECTORS}); the calibration is fixed afterwards, so call index.train(sample) with "
                "a larger representative sample first for better recall",
                UserWarning,
                stacklevel=2,
            )
        if self._transform is not None:
            x = self._project(self._normalized(x), train=True)
        if self.partitions and not self._core.partitions_trained:
            with self._train_lock:  # the first add trains the partitions on its own vectors (as int8 calibrates)
                if not self._core.partitions_trained:
                    _partitions.train_partitions(self, x)
        if ids is None:
            start = self._core.add(x, None)  # chosen under the index lock, so concurrent adds get distinct ids
            return np.arange(start, start + x.shape[0], dtype=np.int64)
        id_arr = as_ids(ids, "ids", n=x.shape[0])
        self._core.add(x, id_arr)
        return id_arr

    def train(self, sample: Any) -> None:
        """Learns what the index needs from data before its first add, from a representative sample (a few
        thousand of the vectors to come): the transform (e.g. the PCA fit), then the int8 calibration on the
        sample as the index stores it (normalized under cosine, projected by the transform).

        int8 calibration: each dimension's range is the sample's minimum..maximum, with outliers beyond 8 (robust)
        standard deviations from the mean clipped, and widened a little when the sample is small (its extremes
        fall short of a large collection's); values outside the range are clipped to it. It is then fixed and
        saved with the index. Without ``train``, the first :meth:`add` trains on its own batch.

        Partitions (``partitions=N``): k-means centroids from the sample as the index stores it (docs/ivf.md); at
        least N vectors, 39 or more per partition for stable centroids. Training again later moves every stored
        vector to its nearest new centroid (as :meth:`rebalance` does from the stored vectors).

        Raises:
            ValueError: nothing to train (a float32 index without transform), an index already holding
                vectors or already calibrated, or an unusable sample (wrong dim, NaN, too few rows).
            TypeError: non-floating vectors.
        """
        if self._transform is None and self.dtype == "float32" and not self.partitions:
            raise ValueError("train: this float32 index has no transform, so it needs no training (pass "
                             "transform=simdex.PCA(...), dtype='int8' or partitions=N)")
        x = as_matrix(sample, self.dim, "sample")
        if self._transform is not None:
            with self._train_lock:
                if len(self._core):
                    raise ValueError(
                        f"train: the index already holds {len(self._core)} vectors projected with the current "
                        "transform; train before the first add, or build a new index"
                    )
                self._fit_transform(self._normalized(x))
            x = self._project(self._normalized(x))
        if self.dtype == "int8":
            if x.shape[0] < MIN_CALIBRATION_VECTORS:
                warnings.warn(
                    f"int8 calibration from {x.shape[0]} vectors (fewer than {MIN_CALIBRATION_VECTORS}): dimension "
                    "ranges may be too narrow, and values outside them are clipped; train on a larger sample for "
                    "better recall",
                    UserWarning,
                    stacklevel=2,
                )
            self._core.train(x)
        if self.dtype == "binary":  # the centre and scale: per-dimension mean and mean absolute deviation
            self._core.train(x)
        if self.partitions:
            _partitions.train_partitions(self, x)

    def remove(self, ids: Any) -> int:
        """Removes the given ids (absent ones are ignored) and returns how many were removed.

        Raises:
            ValueError: the index is memory-mapped (read-only).
        """
        return int(self._core.remove(as_ids(ids, "ids")))

    def reset(self) -> None:
        """Removes every vector; ids start again from 0 (an int8 index keeps its calibration). ValueError on a
        memory-mapped index."""
        self._core.reset()

    def reconstruct(self, ids: Any) -> np.ndarray:
        """The stored vectors (normalized under cosine) for the given ids, float32 (n, dim); with a transform,
        the reduced vectors (n, transform.out_dim) as stored. An int8 index returns the kept originals, or else the
        decoded codes ``offset + step * code`` (binary: ``centre + scale * (bit ? 1 : -1)``)."""
        return self._core.reconstruct(as_ids(ids, "ids"))

    def codes(self, ids: Any) -> np.ndarray:
        """The codes stored for the given ids: int8 (n, dim), or for a binary index the bits as uint8
        (n, ceil(dim / 8)), dimension d in bit d % 8 of byte d // 8. ValueError on a float32 index."""
        return self._core.codes(as_ids(ids, "ids"))

    # -- search -----------------------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Any = None,
        min_score: Optional[float] = None,
        rescore: Optional[int] = None,
        diagnostics: bool = False,
        max_distance: Optional[float] = None,
        nprobe: Optional[int] = None,
        exact: bool = False,
    ) -> SearchResult:
        """Finds the k best-scoring vectors for each query.

        Args:
            queries: float array of shape (nq, dim) or (dim,).
            k: results per query. When fewer than k vectors qualify, the rest is padded with id -1 and
                score -inf (so ``k > len(index)`` is fine).
            filter: optional allow-list of ids; only those can be returned. It is applied inside the scan, so
                each query still gets up to k allowed results.
            min_score: optional floor; results scoring below it are dropped (padded as above). Not under
                ``"l2"`` (ValueError): there use max_distance.
            max_distance: ``"l2"`` only: results farther (squared distance) are dropped, padded with (+inf, -1).
            rescore: int8 / binary only. ``None``: the codes' scores (int8: exact integer dot products; binary:
                ``<q, centre> + <q - centre, decoded - centre>``). An integer
                R >= 1: the k * R best by code score are rescored with the kept float vectors (the index needs
                ``keep_originals=True``) and the k best of them returned with exact float scores.
            nprobe: partitioned index only: how many partitions each query scans (default: :attr:`nprobe`).
                ``nprobe=partitions`` scans everything and returns the exact result.
            exact: int8 with ``keep_originals=True``: exactly the float32 top-k (ids and exact scores), read mostly
                from the int8 codes; a bound on the int8 score's error decides which rows to rescore
                (docs/int8.md). ``index.last_exact_rescored`` then holds how many rows each query rescored.

            diagnostics: also say how specific each query is (see :mod:`simdex.diagnostics`): returns a
                :class:`DiagnosedResult` with a third field.

        Returns:
            SearchResult(scores float32 (nq, k), ids int64 (nq, k)), best first, ties to the lower id. Under
            ``"l2"``: squared distances, nearest first.
        """
        if diagnostics:
            res = self.search(queries, k, filter=filter, min_score=min_score, rescore=rescore,
                              max_distance=max_distance, nprobe=nprobe, exact=exact)
            return DiagnosedResult(res.scores, res.ids, search_diagnostics(self, queries, res))
        q = as_matrix(queries, self.dim, "queries")
        k = as_k(k)
        floor, radius = as_thresholds(self._metric, min_score, max_distance)
        allow = None if filter is None else as_ids(filter, "filter")
        r = as_rescore(rescore, self)
        npb = _partitions.as_nprobe(nprobe)
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"exact: expected a bool, got {type(exact).__name__}")

        def core_search(x: np.ndarray, floor: float, radius: float = float("inf")) -> tuple:
            out = self._core.search(x, k, floor, allow, r, radius, npb, bool(exact))
            if exact:
                self.last_exact_rescored = out[2]
            return out[0], out[1]

        if self._transform is None:
            scores, ids = core_search(q, floor, radius)
            return SearchResult(scores, ids)
        if self._metric == "l2":  # the reduced distance times the transform's scale estimates the full one
            scale = np.float32(self._transform._score_scale)
            scores, ids = core_search(self._project(q, query=True), floor, radius / scale)
            return SearchResult((scores * scale).astype(np.float32), ids)
        qn = self._normalized(q)
        reduced = self._project(qn, query=True)
        if self._renormalized():  # scores are cosines in the reduced space
            offset, scale = None, 1.0
        else:
            offset, scale = self._transform._query_offset(qn), self._transform._score_scale
        if offset is None and scale == 1.0:
            scores, ids = core_search(reduced, floor)
            return SearchResult(scores, ids)
        # Adding a per-query constant and scaling by a positive factor keep each row's order, so the floor can
        # be applied afterwards: what falls below it is a tail of the row.
        scores, ids = core_search(reduced, float("-inf"))
        found = ids >= 0
        scores = scores * np.float32(scale)
        if offset is not None:
            scores = scores + offset[:, None]
        scores[~found] = -np.inf
        if min_score is not None:
            drop = found & (scores < floor)
            scores[drop], ids[drop] = -np.inf, -1
        return SearchResult(scores.astype(np.float32, copy=False), ids)

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: "str | os.PathLike[str]") -> None:
        """Writes the index to path atomically and durably.

        The file (format: ``docs/format.md``) is written to a temp file in the same folder, fsynced, renamed
        over path, and the folder is fsynced: a crash at any moment leaves the old file or the new one, never a
        mix. Saving over the file a mapped index was loaded from is safe. Searches continue during the save;
        ``add``/``remove`` wait for it. Texts kept by `add_texts` or `simdex.ingest` go to a SQLite file beside
        it (path + ".docs.sqlite", written by the text wing's companion), committed right after the index file
        is in place; saving an index without texts removes such a file left by the index it replaces.

        Raises:
            OSError: the file cannot be written (disk full, quota, permissions); path is left as it was and
                the temp file is removed.
        """
        path = os.fspath(path)
        refresh_profile(self)  # the reference `simdex.drift_report` compares later vectors to
        written = {}
        for name, companion in list(self._companions.items()):
            done = companion.prepare_save(self, path)
            if done is not None:
                written[name] = done
        self._core.save(path)
        own = self._path is not None and os.path.abspath(self._path) == os.path.abspath(path)
        for name, suffix in COMPANION_FILES.items():
            # A companion file this index does not write is another index's, unless it lies beside this index's
            # own file and the index never opened it (then it is still this index's: keep it).
            if name not in written and not (own and name not in self._companions) and os.path.exists(path + suffix):
                os.remove(path + suffix)
        for done in written.values():
            done()
        self._path = path

    # -- texts: forwarded to the text wing (simdex.text), which keeps them in a companion -----------------
    def add_texts(self, texts: Any, ids: Any = None, *, encoder: Any = None,
                  batch_size: Optional[int] = None) -> np.ndarray:
        """Embeds texts, adds their vectors and keeps the texts for `search_text`; returns the ids.

        The same as ``simdex.text.add_texts(index, texts, ...)``: see there. For corpora, files, chunking and
        resumable runs use `simdex.ingest`.
        """
        from .text.texts import add_texts

        return add_texts(self, texts, ids, encoder=encoder, batch_size=batch_size)

    def search_text(self, query: str, k: int = 10, **options: Any) -> TextSearchResult:
        """Embeds a query and returns the k best documents (or chunks) with their texts.

        The same as ``simdex.text.search_text(index, query, k, ...)``, whose keyword options (encoder, chunks,
        filter, min_score, keywords, keyword_limit, mode, rrf_k, where, unsafe_sql, where_timeout, rescore) it takes: see
        there. Returns a `simdex.TextSearchResult`. For documents to update, delete and filter: `simdex.Collection`.
        """
        from .text.texts import search_text

        return search_text(self, query, k, **options)
