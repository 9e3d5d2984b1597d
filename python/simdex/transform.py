"""Dimensionality reduction: :class:`PCA`, :class:`RandomProjection` and :class:`Truncate`, alone or as an index
pre-transform.

PCA and RandomProjection are linear maps ``y = x W^T - b`` whose product runs in the C++ core (a blocked SIMD
matrix product on the same micro-kernel as search, all cores, GIL released). PCA accumulates the mean and
scatter of its training data in C++ over any number of batches (``partial_fit``); only the final
``dim x dim`` eigendecomposition uses NumPy. Truncate keeps a prefix of each vector (Matryoshka models).

    >>> pca = simdex.PCA(384).fit(vectors)          # or partial_fit batch by batch
    >>> reduced = pca.transform(vectors)            # (n, 384) float32
    >>> index = simdex.Index(768, transform=simdex.PCA(384))   # trained on the first add
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._validate import as_positive_int

CENTERING = ("database", "both", "none")
PRECISIONS = ("auto", "float32")
PROJECTION_KINDS = ("orthogonal", "gaussian", "sparse")


def _as_out_dim(out_dim: Any) -> int:
    return as_positive_int(out_dim, "out_dim")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row of x scaled to unit length (zero rows stay zero), as float32 C-contiguous. The norms are float64:
    the float32 sum of squares overflows for rows of 1e20s and underflows for rows of 1e-30s."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _as_rows(x: Any, name: str, dim: Optional[int]) -> np.ndarray:
    """x as a C-contiguous float32 (n, d) array; d must equal dim when dim is known."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name}: expected a numeric (float) array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        want = f"(n, {dim})" if dim else "(n, dim)"
        raise ValueError(f"{name}: expected a 2-D array of shape {want}, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{name}: expected {dim} columns (the dimension this transform was fitted on), "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one column, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _eigh(m: np.ndarray) -> tuple:
    """np.linalg.eigh on one BLAS thread when threadpoolctl is installed: a d x d problem (d up to a few
    thousand) gains little from threads, and BLAS threads that spin while LAPACK runs its sequential steps
    make it several times slower on a busy machine (measured 0.5 s on one thread vs 1.5-4.7 s on two,
    d = 768)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return np.linalg.eigh(m)
    with threadpool_limits(1, user_api="blas"):
        return np.linalg.eigh(m)


class _LinearTransform:
    """What PCA and RandomProjection share: a fitted map applied to database rows and to queries.

    Subclasses set ``_db`` (the core projection for stored vectors), ``_query`` (the one for queries, possibly
    the same object), ``in_dim`` and ``components_``/``mean_``.
    """

    out_dim: int
    in_dim: Optional[int]

    def __init__(self, out_dim: int) -> None:
        self.out_dim = _as_out_dim(out_dim)
        self.in_dim = None
        self._db: Any = None
        self._query: Any = None

    # -- API ------------------------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """True once the transform can be applied."""
        self._ready()
        return self._db is not None

    def fit(self, x: Any) -> "_LinearTransform":
        """Fits on x (n, in_dim), discarding anything fitted before; returns self."""
        self._reset()
        return self.partial_fit(x)

    def partial_fit(self, x: Any) -> "_LinearTransform":  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, x: Any) -> np.ndarray:
        """Projects database vectors to float32 (n, out_dim); x is a float array (n, in_dim) or (in_dim,).

        Raises:
            ValueError: not fitted yet, wrong number of columns, NaN or Inf.
        """
        self._require_fitted("transform")
        x = _as_rows(x, "x", self.in_dim)
        return self._apply(self._db, x, "x")

    def transform_query(self, q: Any) -> np.ndarray:
        """Projects queries: float32 (n, out_dim). Same as :meth:`transform` unless the transform centers only
        the database side (see :class:`PCA`)."""
        self._require_fitted("transform_query")
        q = _as_rows(q, "queries", self.in_dim)
        return self._apply(self._query, q, "queries")

    def fit_transform(self, x: Any) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    # -- internals ------------------------------------------------------------------------------------------
    def _ready(self) -> None:
        """Finishes a pending fit (PCA solves its eigenproblem lazily)."""

    def _reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_in_dim(self, in_dim: int) -> None:
        if self.out_dim > in_dim:
            raise ValueError(f"out_dim: expected at most the input dimension {in_dim}, got {self.out_dim}")

    def _require_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise ValueError(
                f"{type(self).__name__}.{what}: not fitted yet; call fit(x) or partial_fit(x) first"
            )

    @staticmethod
    def _apply(proj: Any, x: np.ndarray, name: str) -> np.ndarray:
        try:
            return proj.apply(x)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None

    def _query_offset(self, q: np.ndarray) -> Optional[np.ndarray]:
        """Per-query term the index adds to reduced scores (None: nothing); q is the full-dimension query."""
        return None

    # Scores in the reduced space times this estimate the full-dimension inner product.
    _score_scale = 1.0
    # Whether the fitted transform is a matrix (components_, mean_) that the index file stores.
    _has_matrix = True

    @property
    def _renormalize(self) -> bool:
        """Whether a cosine index renormalizes the reduced vectors (and queries), scoring reduced cosines."""
        return False

    def _params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _variance(self) -> Optional[np.ndarray]:
        return None


class PCA(_LinearTransform):
    """Principal component analysis onto the ``out_dim`` directions of largest variance.

    Args:
        out_dim: dimensions kept (at most the input dimension).
        whiten: divide each output coordinate by its standard deviation, so all have unit variance. This
            changes inner products (it weights weak directions up), so it does not preserve a similarity
            ranking; leave it off for search.
        center: how the mean is handled, which decides whether the inner-product ranking survives:

            - ``"database"`` (default): components from the covariance; database vectors are centered
              (``transform(x) = (x - mean_) @ components_.T``, as scikit-learn's ``PCA.transform``), queries
              are not (``transform_query(q) = q @ components_.T``). The reduced score is then
              ``q . P (x - mean)`` with P the projection onto the kept components. Writing x = mean + r, the
              exact score is ``q . mean + q . r``; the first term is the same for every x, so the ranking is
              that of ``q . r``, and ``q . P r`` is its best approximation from out_dim directions: the
              ranking is preserved as far as the subspace holds r. An index adds ``q . mean`` back, so its
              scores are ``q . (mean + P (x - mean))``, the inner product with x's PCA reconstruction.
            - ``"both"``: the textbook recipe (scikit-learn ``PCA`` or FAISS ``PCAMatrix`` on both sides, then
              normalize): queries are centered too and an index under cosine renormalizes both sides. The
              score ``(q - mean) . P (x - mean)`` carries a ``- mean . P x`` term that changes from one
              database vector to the next, and renormalizing reweights each x by ``1 / |P (x - mean)|``:
              both reorder results that the query never asked to reorder.
            - ``"none"``: the same components, nothing subtracted on either side
              (``transform(x) = x @ components_.T``); an index under cosine renormalizes the reduced vectors,
              so it scores the cosine of the projections.

            Measured recall@10 against exact search (bench/README_pca.md): on real all-mpnet-base-v2
            embeddings (3,031 documents, 909 queries, 768 -> 384) "database" 0.985, "none" 0.985, "both"
            0.835 (task Recall@10 0.894, 0.894, 0.878; 0.895 at 768-d); on 30K all-MiniLM-L6-v2 embeddings
            at 192 of 384 dims, "none" 0.878, "database" 0.871, "both" 0.860. "database" is the default: it
            never reorders by the mean, and its scores keep their meaning (an estimate of the full-dimension
            score).
        precision: how the scatter matrix is accumulated. ``"auto"`` (default): on CPUs with AMX-BF16 (Intel
            Sapphire Rapids and later, Linux) the products take bfloat16 inputs on AMX tiles: exact in fp32,
            summed in fp32 over at most 2048 rows, then in double; the mean stays exact. That is several times
            faster; the scatter's relative error becomes ~1e-4 (each centered input rounded to 8 mantissa
            bits, averaged over rows), which moves the leading subspace far less than sampling noise does (on
            100K real MiniLM embeddings the 192-d subspaces agree to cosine 0.99999). Elsewhere, and with
            ``"float32"``, products are float32 on the SIMD GEMM micro-kernel, summed in double every 2048
            rows.

    Attributes:
        components_: float32 (out_dim, in_dim), orthonormal rows, strongest first; each row's
            largest-magnitude entry is positive (a fixed sign, so repeated fits agree).
        mean_: float64 (in_dim,), the mean of the training data.
        explained_variance_: float64 (out_dim,), variance along each component.
        explained_variance_ratio_: float64 (out_dim,), each component's share of the total.
        n_samples_seen_: rows fitted so far.
    """

    def __init__(
        self, out_dim: int, whiten: bool = False, center: str = "database", precision: str = "auto"
    ) -> None:
        super().__init__(out_dim)
        if center not in CENTERING:
            raise ValueError(f"center: expected one of {CENTERING}, got {center!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self.whiten = bool(whiten)
        self.center = center
        self.precision = precision
        self._reset()

    def __repr__(self) -> str:
        extra = "" if not self.whiten else ", whiten=True"
        if self.center != "database":
            extra += f", center={self.center!r}"
        if self.precision != "auto":
            extra += f", precision={self.precision!r}"
        return f"simdex.PCA({self.out_dim}{extra})"

    @property
    def n_samples_seen_(self) -> int:
        """Rows fitted so far."""
        return int(self._acc.count) if self._acc is not None else self._n_fitted

    def _params(self) -> dict:
        return {
            "out_dim": self.out_dim,
            "whiten": self.whiten,
            "center": self.center,
            "precision": self.precision,
        }

    def _reset(self) -> None:
        self._acc: Any = None
        self._dirty = False
        self.in_dim = None
        self._db = self._query = None
        self._components: Optional[np.ndarray] = None
        self._mean: Optional[np.ndarray] = None
        self._variance_: Optional[np.ndarray] = None
        self._ratio: Optional[np.ndarray] = None
        self._total_variance = 0.0
        self._n_fitted = 0

    # Fitted attributes: the eigenproblem is solved on first access after partial_fit.
    @property
    def components_(self) -> Optional[np.ndarray]:
        self._ready()
        return self._components

    @property
    def mean_(self) -> Optional[np.ndarray]:
        self._ready()
        return self._mean

    @property
    def explained_variance_(self) -> Optional[np.ndarray]:
        self._ready()
        return self._variance_

    @property
    def explained_variance_ratio_(self) -> Optional[np.ndarray]:
        self._ready()
        return self._ratio

    def partial_fit(self, x: Any) -> "PCA":
        """Adds a batch to the running mean and scatter (accumulated in C++, in double) and returns self.

        Batches may have any number of rows; the result equals one ``fit`` on all of them. The eigenproblem is
        solved once, when the components are next needed.

        Raises:
            ValueError: out_dim larger than the input dimension, wrong column count, NaN or Inf (nothing is
                accumulated then).
        """
        x = _as_rows(x, "x", self.in_dim)
        if self._acc is None:
            self._check_in_dim(x.shape[1])
            acc = _core.MomentAccumulator(x.shape[1], self.precision == "auto")
            try:
                acc.add(x)
            except ValueError as e:
                raise ValueError(f"x: {e}") from None
            self._acc, self.in_dim = acc, x.shape[1]
        else:
            try:
                self._acc.add(x)
            except ValueError as e:
                raise ValueError(f"x: {e}") from None
        self._dirty = True
        return self

    def _ready(self) -> None:
        if not self._dirty:
            return
        n = int(self._acc.count)
        if n < 2:
            raise ValueError(f"PCA: needs at least 2 training rows to estimate a covariance, got {n}")
        m = self._acc.scatter()
        denom = float(n - 1)
        values, vectors = _eigh(m)
        order = np.argsort(values)[::-1][: self.out_dim]
        values = np.maximum(values[order], 0.0)
        comps = vectors[:, order].T
        # Fixed signs: the largest-magnitude entry of each component is positive.
        signs = np.sign(comps[np.arange(comps.shape[0]), np.argmax(np.abs(comps), axis=1)])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        total = float(max(np.trace(m), 0.0))
        self._set_fitted(comps, self._acc.mean(), values / denom, total / denom, n)
        self._dirty = False

    def _set_fitted(
        self, comps: np.ndarray, mean: np.ndarray, variance: np.ndarray, total: float, n: int
    ) -> None:
        self._components = np.ascontiguousarray(comps, dtype=np.float32)
        self._mean = np.asarray(mean, dtype=np.float64)
        self._variance_ = np.asarray(variance, dtype=np.float64)
        self._ratio = np.asarray(variance / total if total > 0 else np.zeros_like(variance), dtype=np.float64)
        self._total_variance = total
        self._n_fitted = n
        w = self._components.astype(
            np.float64
        )  # from the stored float32 values, so a loaded copy is identical
        if self.whiten:
            w = w / np.sqrt(np.maximum(variance, np.finfo(np.float64).tiny))[:, None]
        w32 = np.ascontiguousarray(w, dtype=np.float32)
        if self.center == "none":
            self._db = self._query = _core.LinearProjection(w32, None)
            return
        bias = np.ascontiguousarray(w @ mean, dtype=np.float32)  # (x - mean) W^T = x W^T - W mean
        self._db = _core.LinearProjection(w32, bias)
        self._query = self._db if self.center == "both" else _core.LinearProjection(w32, None)

    @property
    def _renormalize(self) -> bool:  # type: ignore[override]
        # "both": the textbook recipe (sklearn PCA / FAISS PCAMatrix, then normalize); "none": reduced cosine
        return self.center != "database"

    def _query_offset(self, q: np.ndarray) -> Optional[np.ndarray]:
        if self.center != "database" or self.whiten:
            return None
        return (q.astype(np.float64) @ self.mean_).astype(np.float32)

    def _extra_state(self) -> dict:
        return {"n_samples_seen": self.n_samples_seen_, "total_variance": self._total_variance}

    def _variance(self) -> Optional[np.ndarray]:
        return self.explained_variance_


class RandomProjection(_LinearTransform):
    """A data-independent random linear map to ``out_dim`` dimensions (Johnson-Lindenstrauss).

    Fitting only reads the input dimension; the matrix is drawn from ``numpy.random.default_rng(seed)``, so
    the same seed and dimensions give the same projection everywhere.

    Args:
        out_dim: output dimension (at most the input dimension).
        kind: ``"orthogonal"`` (default): rows are orthonormal (QR of a Gaussian matrix), a random rotation
            followed by truncation; inner products shrink by about ``out_dim / in_dim``, which an index scales
            back. ``"gaussian"``: i.i.d. N(0, 1/out_dim) entries (scikit-learn ``GaussianRandomProjection``),
            inner products preserved in expectation. ``"sparse"``: entries +-sqrt(1 / (density * out_dim))
            with probability density / 2 each and 0 otherwise, density = 1 / sqrt(in_dim) (Li et al., as
            scikit-learn ``SparseRandomProjection``), preserved in expectation; stored and applied densely.
        seed: random seed.

    Attributes:
        components_: float32 (out_dim, in_dim), the projection matrix.
        mean_: float64 zeros (in_dim,): nothing is subtracted.
    """

    def __init__(self, out_dim: int, kind: str = "orthogonal", seed: int = 0) -> None:
        super().__init__(out_dim)
        if kind not in PROJECTION_KINDS:
            raise ValueError(f"kind: expected one of {PROJECTION_KINDS}, got {kind!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.kind = kind
        self.seed = int(seed)
        self.components_: Optional[np.ndarray] = None
        self.mean_: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return f"simdex.RandomProjection({self.out_dim}, kind={self.kind!r}, seed={self.seed})"

    def _params(self) -> dict:
        return {"out_dim": self.out_dim, "kind": self.kind, "seed": self.seed}

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        raise AttributeError(
            "RandomProjection does not look at the data, so it has no explained_variance_ratio_"
        )

    @property
    def _renormalize(self) -> bool:  # type: ignore[override]
        # A random projection shrinks or stretches each vector's norm by a random factor; the reduced cosine
        # cancels it and ranks better than the reduced inner product (measured in bench/README_pca.md).
        return True

    @property
    def _score_scale(self) -> float:  # type: ignore[override]
        return self.in_dim / self.out_dim if self.kind == "orthogonal" and self.in_dim else 1.0

    def _reset(self) -> None:
        self.in_dim = None
        self._db = self._query = None
        self.components_ = self.mean_ = None

    def partial_fit(self, x: Any) -> "RandomProjection":
        """Draws the matrix on the first call (from x's column count); later calls only check the columns."""
        x = _as_rows(x, "x", self.in_dim)
        if self.in_dim is None:
            self._draw(x.shape[1])
        return self

    def _draw(self, in_dim: int) -> None:
        self._check_in_dim(in_dim)
        rng = np.random.default_rng(self.seed)
        if self.kind == "orthogonal":
            q, r = np.linalg.qr(rng.standard_normal((in_dim, self.out_dim)))
            w = (q * np.sign(np.diag(r))).T  # sign fix makes the draw unique (Haar-distributed)
        elif self.kind == "gaussian":
            w = rng.standard_normal((self.out_dim, in_dim)) / np.sqrt(self.out_dim)
        else:
            density = 1.0 / np.sqrt(in_dim)
            u = rng.random((self.out_dim, in_dim))
            value = np.sqrt(1.0 / (density * self.out_dim))
            w = np.where(u < density / 2, -value, np.where(u < density, value, 0.0))
        self._set_matrix(np.ascontiguousarray(w, dtype=np.float32))

    def _set_matrix(self, w: np.ndarray) -> None:
        self.in_dim = w.shape[1]
        self.components_ = w
        self.mean_ = np.zeros(w.shape[1], dtype=np.float64)
        self._db = self._query = _core.LinearProjection(w, None)
