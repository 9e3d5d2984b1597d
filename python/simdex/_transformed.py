"""`Index`'s pre-transform plumbing (PCA, random projection, Truncate): normalizing before projecting, fitting
the transform on first use, and keeping it in the core's extra sections so save writes it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ._transform_file import to_sections
from .transform import unit_rows


class TransformedMixin:
    """The transform half of `Index` (``_transform`` is None for an index without one)."""

    _core: Any
    _dim: int
    _metric: str
    _transform: Any
    _train_lock: threading.Lock

    def _renormalized(self) -> bool:
        return self._metric == "cosine" and self._transform._renormalize

    def _store_transform(self) -> None:
        """Puts the transform (fitted or not) into the core's extra sections, so save writes it."""
        self._core.set_extra_sections(to_sections(self._transform, self._dim, self._metric))

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self._metric != "cosine":
            return x
        return unit_rows(x)

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
