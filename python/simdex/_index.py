"""The exact-search index: `simdex.Index`, `simdex.load`, `simdex.load_bytes`."""

from __future__ import annotations

import json
import operator
import os
import threading
import warnings
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from . import _core
from ._core import FormatError
from ._validate import as_dim, as_ids, as_k, as_matrix, as_min_score
from .docstore import DocStore, TextSearchResult, docs_path
from .encoder import FingerprintMismatch, check_fingerprint

METRICS = ("cosine", "ip")
DTYPES = ("float32", "int8")
# A first add smaller than this calibrates int8 on too few vectors to know each dimension's range.
MIN_CALIBRATION_VECTORS = 1000


class SearchResult(NamedTuple):
    """Search output: `scores` float32 (nq, k) best first, `ids` int64 (nq, k); padding is (-inf, -1)."""

    scores: np.ndarray
    ids: np.ndarray


class DiagnosedResult(NamedTuple):
    """``search(..., diagnostics=True)``: the results plus one :class:`simdex.diagnostics.QueryDiagnostics` per
    query (specificity z-score, gap, flags "tied" / "unspecific")."""

    scores: np.ndarray
    ids: np.ndarray
    diagnostics: list


class Index:
    """Exact nearest-neighbour index over float32 vectors (or their int8 codes), scored by inner product.

    Args:
        dim: vector dimension.
        metric: ``"cosine"`` normalizes vectors to unit length on add and on query, so the score is the cosine
            similarity (zero vectors stay zero and score 0); ``"ip"`` scores the raw inner product.
        dtype: ``"float32"`` stores the vectors and scores them exactly. ``"int8"`` stores one byte per
            dimension (4x less memory) and scores with integer SIMD kernels (``docs/int8.md``): each dimension's
            range is calibrated once, by :meth:`train` or automatically from the first :meth:`add`, then fixed,
            so every later batch is encoded the same way. Scores are then approximate (recall@10 about 0.99 on
            sentence embeddings); ``search(..., rescore=R)`` makes them exact.
        keep_originals: int8 only: also keep the float vectors (in RAM, or memory-mapped with
            ``simdex.load(path, mmap=True)``), which ``search(..., rescore=R)`` needs.

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
    """

    def __init__(self, dim: int, metric: str = "cosine", dtype: str = "float32", keep_originals: bool = False,
                 transform: Any = None) -> None:
        dim = as_dim(dim)
        if metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
        dtype = _as_dtype(dtype)
        if not isinstance(keep_originals, (bool, np.bool_)):
            raise TypeError(f"keep_originals: expected a bool, got {type(keep_originals).__name__}")
        if keep_originals and dtype == "float32":
            raise ValueError("keep_originals=True applies to dtype='int8'; a float32 index stores the vectors themselves")
        self._dim, self._metric = dim, metric
        self._transform = _check_transform(transform, dim)
        self._train_lock = threading.Lock()
        if self._transform is None:
            self._core = _core.FlatIndex(dim, metric, dtype, bool(keep_originals))
        else:
            # Normalization (cosine) happens before projecting; the reduced vectors are renormalized only for the
            # transforms whose ranking gains from it (see _renormalize), else scored by inner product.
            self._core = _core.FlatIndex(self._transform.out_dim, "cosine" if self._renormalized() else "ip", dtype,
                                         bool(keep_originals))
            self._store_transform()

    @classmethod
    def _from_core(cls, core: Any, source: str = "<index>") -> "Index":
        self = cls.__new__(cls)
        self._core = core
        self._train_lock = threading.Lock()
        sections = {t[0]: t for t in core.extra_sections()}
        if "transform" in sections:
            from .transform import _from_sections

            self._transform, self._dim, self._metric = _from_sections(sections, core.dim, source)
        else:
            self._transform, self._dim, self._metric = None, core.dim, core.metric
        return self

    def _renormalized(self) -> bool:
        return self._metric == "cosine" and self._transform._renormalize

    def _store_transform(self) -> None:
        """Puts the transform (fitted or not) into the core's extra sections, so save writes it."""
        self._core.set_extra_sections(self._transform._sections(self._dim, self._metric))

    # -- properties -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension (of the vectors given to add and search, before any transform)."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"`` or ``"ip"``."""
        return self._metric

    @property
    def transform(self) -> Any:
        """The dimensionality-reduction pre-transform, or None."""
        return self._transform

    @property
    def dtype(self) -> str:
        """``"float32"`` or ``"int8"``."""
        return self._core.dtype

    @property
    def keep_originals(self) -> bool:
        """True when an int8 index also keeps the float vectors (always True for float32)."""
        return bool(self._core.keeps_originals)

    @property
    def is_trained(self) -> bool:
        """False only for an int8 index whose calibration is not learned yet (no :meth:`train`, no add)."""
        return bool(self._core.trained)

    @property
    def calibration(self) -> np.ndarray:
        """int8 calibration, float32 (2, dim): per-dimension offsets, then steps (0 on a dimension with no
        range). A vector x is stored as ``clip(rint((x - offset) / step), -127, 127)``.

        Raises:
            ValueError: a float32 index, or an int8 index not calibrated yet.
        """
        return self._core.calibration()

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        mapped = ", mmap=True" if self._core.mapped else ""
        extra = ""
        if self.dtype == "int8":
            extra = ", dtype='int8'" + (", keep_originals=True" if self.keep_originals else "")
        extra += f", transform={self._transform!r}" if self._transform is not None else ""
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
        self._guard_fingerprint(fingerprint, "add")
        if self.dtype == "int8" and x.shape[0] < MIN_CALIBRATION_VECTORS and not self._core.trained:
            warnings.warn(
                f"this first add calibrates the int8 index on {x.shape[0]} vectors (fewer than "
                f"{MIN_CALIBRATION_VECTORS}); the calibration is fixed afterwards, so call index.train(sample) with "
                "a larger representative sample first for better recall",
                UserWarning,
                stacklevel=2,
            )
        if self._transform is not None:
            x = self._project(self._normalized(x), train=True)
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

        Raises:
            ValueError: nothing to train (a float32 index without transform), an index already holding
                vectors or already calibrated, or an unusable sample (wrong dim, NaN, too few rows).
            TypeError: non-floating vectors.
        """
        if self._transform is None and self.dtype != "int8":
            raise ValueError("train: this float32 index has no transform, so it needs no training (pass "
                             "transform=simdex.PCA(...) or dtype='int8')")
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

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self._metric != "cosine":
            return x
        # float64: the float32 sum of squares overflows for rows of 1e20s and underflows for rows of 1e-30s.
        norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        return (x / np.where(norms > 0, norms, 1)).astype(np.float32)

    def _fit_transform(self, x: np.ndarray) -> None:
        from .transform import PCA

        t = self._transform
        if isinstance(t, PCA) and x.shape[0] < t.out_dim:
            raise ValueError(f"training {t!r} needs at least {t.out_dim} vectors, got {x.shape[0]}; call "
                             "index.train(sample) with a larger sample, or add a larger first batch")
        t.fit(x)
        self._store_transform()

    def _project(self, x: np.ndarray, train: bool = False, query: bool = False) -> np.ndarray:
        """Projects x (already normalized under cosine); trains the transform first if asked and needed."""
        t = self._transform
        if not t.is_fitted:
            if not train:
                raise ValueError(f"{t!r} is not trained yet: add vectors or call index.train(sample) first")
            with self._train_lock:
                if not t.is_fitted:
                    self._fit_transform(x)
        return t.transform_query(x) if query else t.transform(x)

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
        decoded codes ``offset + step * code``."""
        return self._core.reconstruct(as_ids(ids, "ids"))

    def codes(self, ids: Any) -> np.ndarray:
        """The int8 codes stored for the given ids, int8 (n, dim). ValueError on a float32 index."""
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
    ) -> SearchResult:
        """Finds the k best-scoring vectors for each query.

        Args:
            queries: float array of shape (nq, dim) or (dim,).
            k: results per query. When fewer than k vectors qualify, the rest is padded with id -1 and
                score -inf (so ``k > len(index)`` is fine).
            filter: optional allow-list of ids; only those can be returned. It is applied inside the scan, so
                each query still gets up to k allowed results.
            min_score: optional floor; results scoring below it are dropped (padded as above).
            rescore: int8 only. ``None``: int8 scores, ranked exactly by the integer dot products. An integer
                R >= 1: the k * R best by int8 score are rescored with the kept float vectors (the index needs
                ``keep_originals=True``) and the k best of them returned with exact float scores.

            diagnostics: also say how specific each query is (see :mod:`simdex.diagnostics`): returns a
                :class:`DiagnosedResult` with a third field.

        Returns:
            SearchResult(scores float32 (nq, k), ids int64 (nq, k)), best first, ties to the lower id.
        """
        if diagnostics:
            res = self.search(queries, k, filter=filter, min_score=min_score, rescore=rescore)
            return DiagnosedResult(res.scores, res.ids, self._diagnose(queries, res))
        q = as_matrix(queries, self.dim, "queries")
        k = as_k(k)
        floor = as_min_score(min_score)
        allow = None if filter is None else as_ids(filter, "filter")
        r = _as_rescore(rescore, self)
        if self._transform is None:
            scores, ids = self._core.search(q, k, floor, allow, r)
            return SearchResult(scores, ids)
        qn = self._normalized(q)
        reduced = self._project(qn, query=True)
        if self._renormalized():  # scores are cosines in the reduced space
            offset, scale = None, 1.0
        else:
            offset, scale = self._transform._query_offset(qn), self._transform._score_scale
        if offset is None and scale == 1.0:
            scores, ids = self._core.search(reduced, k, floor, allow, r)
            return SearchResult(scores, ids)
        # Adding a per-query constant and scaling by a positive factor keep each row's order, so the floor can
        # be applied afterwards: what falls below it is a tail of the row.
        scores, ids = self._core.search(reduced, k, float("-inf"), allow, r)
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
        it (path + ".docs.sqlite"), committed right after the index file is in place.

        Raises:
            OSError: the file cannot be written (disk full, quota, permissions); path is left as it was and
                the temp file is removed.
        """
        after = self._save_docs(os.fspath(path))
        self._core.save(os.fspath(path))
        after()

    # -- texts: simdex.Encoder, the document store, the fingerprint guard ----------------------------------
    _docstore: Optional[DocStore] = None
    _encoder: Any = None

    def add_texts(self, texts: Any, ids: Any = None, *, encoder: Any = None,
                  batch_size: Optional[int] = None) -> np.ndarray:
        """Embeds texts, adds their vectors and keeps the texts for `search_text`; returns the ids.

        Args:
            texts: a sequence of non-empty str.
            ids: as in `add`.
            encoder: a `simdex.Encoder`; default: the last one used with this index, else one for the model in
                the index fingerprint, else the default model.
            batch_size: texts per model call.

        Raises:
            FingerprintMismatch: (a ValueError) the encoder's model is not the one that filled the index.
            TypeError, ValueError: a text that is not a str, is empty or is not valid UTF-8. Nothing is added.

        For corpora, files, chunking and resumable runs use `simdex.ingest`.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("texts: expected a sequence of str, got a single " + type(texts).__name__)
        texts = list(texts)
        if not texts:
            raise ValueError("texts: expected at least one text, got none")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"texts[{i}]: expected a non-empty text, got {t!r}")
            if not t.isascii():
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(f"texts[{i}]: not valid UTF-8 ({e.reason} at {e.start})") from None
        enc = self._text_encoder(encoder)
        if ids is not None:
            as_ids(ids, "ids", n=len(texts))
        self._guard_fingerprint(enc.fingerprint, "add_texts")
        new_ids = self.add(enc.embed_batch(texts, batch_size=batch_size), ids, fingerprint=enc.fingerprint)
        self._docs().add([(None, t, None, None) for t in texts],
                         [(i, n, 0, len(t)) for n, (i, t) in enumerate(zip(new_ids.tolist(), texts))])
        return new_ids

    def _diagnose(self, queries: Any, res: SearchResult) -> list:
        """Per-query diagnostics, with the corpus statistics taken (and cached) from up to 10,000 stored rows."""
        from .diagnostics import CorpusStats, diagnose

        q = as_matrix(queries, self.dim, "queries")
        qs = self._normalized(q) if self._transform is None else self._project(self._normalized(q), query=True)
        n = len(self)
        cached = getattr(self, "_diag_cache", None)
        if cached is None or cached[0] != n:
            ids = self.ids()
            sample = self._core.reconstruct(ids[:: max(1, len(ids) // 10_000)]) if len(ids) >= 2 else None
            cached = (n, CorpusStats(sample) if sample is not None else None)
            self._diag_cache = cached
        stats = cached[1]
        best = res.ids[:, 0]
        z = np.full(len(q), np.nan)
        if stats is not None and (best >= 0).any():
            found = best >= 0
            rows = self._core.reconstruct(best[found])  # the stored row: its score in the space the stats describe
            z[found] = stats.z_scores(qs[found], np.einsum("qd,qd->q", qs[found].astype(np.float64), rows))
        return diagnose(res.scores, z)

    def _text_filter(self, filter: Any, keywords: Optional[str], limit: int, where: Optional[str],
                     where_timeout: Optional[float] = None) -> Any:
        """The allow-list for search_text: the caller's filter intersected with the keyword and where filters."""
        if keywords is None and where is None:
            return filter
        if self._docstore is None:
            raise ValueError("keywords / where need the texts: this index has no document store")
        n = len(self)
        cached = getattr(self, "_keyword_cache", None)
        if cached is None or cached[0] != n:
            from .hybrid import KeywordIndex

            rows = self._docstore._db.execute(
                "SELECT c.id, substr(d.text, c.start_char + 1, c.end_char - c.start_char), d.source, d.key "
                "FROM chunks c JOIN documents d ON d.id = c.doc").fetchall()
            cached = (n, KeywordIndex.from_records([r[0] for r in rows], [r[1] for r in rows],
                                                   [{"source": r[2], "doc": r[3]} for r in rows]))
            self._keyword_cache = cached
        allow = None if filter is None else as_ids(filter, "filter")
        for part in (cached[1].allow_list(keywords, limit) if keywords is not None else None,
                     cached[1].where(where, timeout=where_timeout) if where is not None else None):
            if part is not None:
                allow = part if allow is None else np.intersect1d(allow, part)
        return allow

    def search_text(self, query: str, k: int = 10, *, encoder: Any = None, chunks: bool = False,
                    filter: Any = None, min_score: Optional[float] = None, keywords: Optional[str] = None,
                    keyword_limit: int = 200, where: Optional[str] = None,
                    where_timeout: Optional[float] = None) -> TextSearchResult:
        """Embeds a query and returns the k best documents (or chunks) with their texts.

        Args:
            query: the query text.
            k: results wanted; fewer come back when fewer qualify (no padding).
            encoder: as in `add_texts`; it must be the model that filled the index.
            chunks: False: one result per document, its best-scoring chunk. True: the k best chunks, several may
                come from one document.
            filter, min_score: as in `search` (filter holds vector ids, i.e. chunk ids).
            keywords: hybrid search: only the ``keyword_limit`` best BM25 matches of these words (SQLite FTS5
                over the stored texts) are ranked by the vector search; no filter when no text shares a word.
            where: a SQL condition on the stored documents' ``source`` and ``doc`` (the document key), e.g.
                ``"source LIKE 'man%'"``; only matching documents are ranked. It must be one expression, and
                it runs under a deadline (ValueError past it) with a cap on the strings it may build
                (docs/reliability.md).
            where_timeout: seconds the where condition may run; default ``simdex.hybrid.WHERE_TIMEOUT`` (3).

        Returns:
            TextSearchResult(ids int64 (<= k,), scores float32 (<= k,), documents): ids are vector (chunk) ids;
            documents holds a `simdex.Document` per result, or None for a vector added without text. Iterating
            it gives `simdex.Hit` objects (id, score, document, doc_id, text, chunk).

        Raises:
            FingerprintMismatch: (a ValueError) the encoder is another model than the index's, or the index has
                vectors but no fingerprint.
        """
        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        k = as_k(k)
        enc = self._text_encoder(encoder)
        if self.fingerprint is not None:
            check_fingerprint(self.fingerprint, enc.fingerprint, "search_text")
        elif len(self):
            raise FingerprintMismatch(
                f"search_text: the index holds {len(self)} vectors but no fingerprint, so nothing says which model "
                "made them; add them with add(..., fingerprint=encoder.fingerprint) or set "
                "index.metadata = {**index.metadata, 'fingerprint': encoder.fingerprint}")
        filter = self._text_filter(filter, keywords, keyword_limit, where, where_timeout)
        q = enc.embed_query(query)
        n = len(self)
        fetch = k if chunks else max(1, min(n, max(4 * k, k + 16)))
        while True:
            res = self.search(q, fetch, filter=filter, min_score=min_score)
            ids, scores = res.ids[0], res.scores[0]
            valid = ids >= 0
            ids, scores = ids[valid], scores[valid]
            found = self._docstore.get(ids) if self._docstore is not None else {}
            picked, seen = [], set()
            for pos, cid in enumerate(ids.tolist()):
                row, doc = found.get(cid, (("vector", cid), None))
                if chunks or row not in seen:
                    seen.add(row)
                    picked.append((pos, doc))
            if chunks or len(picked) >= k or fetch >= n or len(ids) < fetch:
                break
            fetch = min(n, 4 * fetch)
        picked = picked[:k]
        rows = np.array([p for p, _ in picked], dtype=np.int64)
        return TextSearchResult(ids[rows], scores[rows], [d for _, d in picked])

    def _text_encoder(self, encoder: Any) -> Any:
        """The encoder to use: the one given, the last one used, or one for the fingerprint's model."""
        if encoder is None:
            encoder = self._encoder
        if encoder is None:
            from .encoder import Encoder

            fp = self.fingerprint
            encoder = Encoder(fp["model"]) if fp and fp.get("model") else Encoder()
        if encoder.dim != self.dim:
            if self.fingerprint is not None:
                check_fingerprint(self.fingerprint, encoder.fingerprint, "encoder")
            raise ValueError(f"encoder: its vectors have dim {encoder.dim}, the index expects dim {self.dim}")
        self._encoder = encoder
        return encoder

    def _guard_fingerprint(self, fingerprint: Optional[dict], what: str) -> None:
        """Checks vectors from `fingerprint` may join this index; an empty index takes the fingerprint."""
        if fingerprint is None:
            return
        if not isinstance(fingerprint, dict):
            raise TypeError(f"fingerprint: expected a dict (Encoder.fingerprint), got {type(fingerprint).__name__}")
        own = self.fingerprint
        if len(self) == 0:
            if own != fingerprint:
                self.metadata = {**self.metadata, "fingerprint": fingerprint}
        elif own is None:
            raise FingerprintMismatch(
                f"{what}: the index holds {len(self)} vectors of unknown origin (no fingerprint); adding vectors of "
                f"model {fingerprint.get('model')!r} would mix models")
        else:
            check_fingerprint(own, fingerprint, what)

    def _docs(self) -> DocStore:
        """The document store, created in memory when the index has none."""
        if self._docstore is None:
            self._docstore = DocStore(None)
        return self._docstore

    def _save_docs(self, path: str) -> Callable[[], None]:
        """Prepares the document store for `save` to path; returns what to run once the index file is written."""
        store, target = self._docstore, docs_path(path)
        if store is None:
            def drop_stale() -> None:  # the store of an index file this save replaces
                if os.path.exists(target):
                    os.remove(target)

            return drop_stale
        seq = store.seq + 1
        same = store.path is not None and os.path.abspath(store.path) == os.path.abspath(target)
        self.metadata = {**self.metadata, "docstore": {"seq": seq, "pending": store.pending if same else None}}
        if same:
            return lambda: store.commit(seq)
        store.copy_to(target, seq)

        def switch() -> None:  # "save as": from now on the index uses the store beside path
            self._docstore = DocStore(target)
            store.close()

        return switch

    def _attach_docs(self, path: str) -> None:
        """Opens the document store beside path; undoes the ids of a save whose store commit did not happen."""
        target = docs_path(path)
        if not os.path.exists(target):
            return
        store = DocStore(target)
        info = self.metadata.get("docstore") or {}
        saved = int(info.get("seq", 0))
        if saved == store.seq + 1:
            if info.get("pending"):
                lo, hi = info["pending"]
                try:
                    self.remove(np.arange(lo, hi, dtype=np.int64))
                except ValueError:  # a read-only (memory-mapped) index
                    warnings.warn(f"{path}: ids {lo} .. {hi - 1} were saved but their texts were not committed to "
                                  f"{target}; load without mmap to repair", RuntimeWarning, stacklevel=3)
        elif saved != store.seq:
            warnings.warn(f"{target} (save {store.seq}) does not match {path} (save {saved}); texts returned by "
                          "search_text may be missing or stale", RuntimeWarning, stacklevel=3)
        self._docstore = store


def _as_dtype(dtype: Any) -> str:
    if isinstance(dtype, (type, np.dtype)):
        try:
            dtype = np.dtype(dtype).name  # np.float32 / np.int8 are accepted too
        except TypeError:
            pass
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return str(dtype)


def _as_rescore(rescore: Any, index: Index) -> int:
    if rescore is None:
        return 0
    if isinstance(rescore, bool):
        raise TypeError("rescore: expected None or a positive integer, got a bool")
    try:
        r = operator.index(rescore)
    except TypeError:
        raise TypeError(f"rescore: expected None or a positive integer, got {type(rescore).__name__}") from None
    if r < 1:
        raise ValueError(f"rescore: expected None or a positive integer, got {r}")
    if index.dtype != "int8":
        raise ValueError("rescore applies to dtype='int8' indexes; float32 scores are already exact")
    if not index.keep_originals:
        raise ValueError(
            "rescore needs the original float vectors, which this int8 index does not keep: create it with "
            "Index(..., dtype='int8', keep_originals=True), or search without rescore"
        )
    return r


def _check_transform(transform: Any, dim: int) -> Any:
    if transform is None:
        return None
    from .transform import _LinearTransform

    if not isinstance(transform, _LinearTransform):
        raise TypeError(
            f"transform: expected simdex.PCA or simdex.RandomProjection, got {type(transform).__name__}"
        )
    if transform.out_dim > dim:
        raise ValueError(f"transform: out_dim {transform.out_dim} is larger than the index dim {dim}")
    if transform.is_fitted and transform.in_dim != dim:
        raise ValueError(
            f"transform: fitted on {transform.in_dim}-dimensional vectors, the index dim is {dim}"
        )
    return transform


def _checked(core: Any, source: str) -> Index:
    # The core checked that metadata is UTF-8; whether it is a JSON object is the Python layer's business.
    text = core.metadata
    if text:
        try:
            value = json.loads(text)
        except ValueError as e:
            raise FormatError(f"{source}: section 'metadata' is not valid JSON ({e})") from None
        if not isinstance(value, dict):
            raise FormatError(f"{source}: section 'metadata' holds a JSON {type(value).__name__}, expected an object")
    return Index._from_core(core, source)


def load(path: "str | os.PathLike[str]", mmap: bool = False) -> Index:
    """Reads an index written by :meth:`Index.save`.

    Everything is validated before it is used: the header, the section table, every size and offset against
    the file size (before anything is allocated), the checksum of every section, ids and metadata.

    Args:
        path: the index file.
        mmap: map the file instead of reading it. Opening is then instant and the vectors are searched in
            place from the page cache, so the process's memory holds only ids and their lookup table. The
            index is read-only (``add``/``remove``/``reset`` raise ValueError; load with ``mmap=False`` to
            change it). The vectors' checksum is not computed up front (that would read the whole file); their
            sizes and bounds are checked like everything else, and all other sections are checksummed. The
            file must not be truncated in place while mapped (``save`` never does that: it replaces the file).

    Returns:
        The index.

    Raises:
        simdex.FormatError: (a ValueError) the file is damaged, truncated, empty, a directory, not a simdex
            index (random bytes, a pickle, a .npy), or from a newer format version.
        OSError: the file cannot be opened or read (FileNotFoundError, PermissionError, ...).
    """
    path = os.fspath(path)
    index = _checked(_core.FlatIndex.load(path, bool(mmap)), path)
    index._attach_docs(path)
    return index


def load_bytes(buffer: Any) -> Index:
    """Reads an index from the bytes of an index file, with the same checks as :func:`load`.

    Args:
        buffer: any bytes-like object (``bytes``, ``bytearray``, ``memoryview``, ``mmap``); it is copied.

    Returns:
        The index.

    Raises:
        simdex.FormatError: the bytes are not a valid simdex index file.
        TypeError: buffer is not a bytes-like object.
    """
    return _checked(_core.FlatIndex.load_bytes(buffer), "<bytes>")
