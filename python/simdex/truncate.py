"""`simdex.Truncate`: the first out_dim dimensions of a Matryoshka-trained model's embeddings, renormalized."""

from __future__ import annotations

from typing import Any

import numpy as np

from .transform import _as_rows, _LinearTransform, unit_rows


class _TruncateMap:
    """Truncate's map: the first out_dim columns, each row rescaled to unit length (zero rows stay zero)."""

    def __init__(self, out_dim: int) -> None:
        self.out_dim = out_dim

    def apply(self, x: np.ndarray) -> np.ndarray:
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
            raise ValueError(f"expected finite values, got NaN or Inf in rows {bad[0]}..{bad[-1]}")
        return unit_rows(x[:, : self.out_dim])


class Truncate(_LinearTransform):
    """Keeps the first ``out_dim`` dimensions and rescales each vector to unit length (zero rows stay zero):
    how to shorten the embeddings of a Matryoshka-trained model, whose every prefix is itself an embedding.

    Fitting only reads the input dimension (an index does it on the first add or train). ``transform`` and
    ``transform_query`` are both ``x[:, :out_dim] / |x[:, :out_dim]|``, so an index scores the cosine of the
    truncated vectors whatever its metric. On other models compare with :class:`PCA` (``reduction_report``).
    """

    _has_matrix = False

    def __repr__(self) -> str:
        return f"simdex.Truncate({self.out_dim})"

    def _params(self) -> dict:
        return {"out_dim": self.out_dim}

    @property
    def _renormalize(self) -> bool:  # type: ignore[override]
        return True

    def _reset(self) -> None:
        self.in_dim = None
        self._db = self._query = None

    def partial_fit(self, x: Any) -> "Truncate":
        """Reads the input dimension on the first call; later calls only check the columns."""
        x = _as_rows(x, "x", self.in_dim)
        if self.in_dim is None:
            self._set_in_dim(x.shape[1])
        return self

    def _set_in_dim(self, in_dim: int) -> None:
        self._check_in_dim(in_dim)
        self.in_dim = int(in_dim)
        self._db = self._query = _TruncateMap(self.out_dim)
