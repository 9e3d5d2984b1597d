"""A transform in the index file: its sections (`to_sections`, what `Index.save` writes through the core's extra
sections) and the transform rebuilt from them at load (`from_sections`), checked against the stored vectors."""

from __future__ import annotations

import json
from typing import List, Tuple

import numpy as np

from ._core import FormatError
from ._validate import METRICS
from .transform import PCA, RandomProjection, _LinearTransform
from .truncate import Truncate

# A section tuple as _core.FlatIndex.set_extra_sections takes it: (name, dtype, rows, cols, required, bytes).
Section = Tuple[str, str, int, int, bool, bytes]


def to_sections(t: _LinearTransform, index_dim: int, metric: str) -> List[Section]:
    """The transform as index-file sections: parameters (and, once fitted, matrix, mean and variance, except for
    Truncate, which has no matrix).

    index_dim and metric are the index's own (its vectors' dimension before the transform, its metric),
    kept here because the stored vectors have the reduced dimension and are scored by inner product.
    """
    fitted = t.is_fitted
    state = {
        "kind": type(t).__name__,
        "params": t._params(),
        "fitted": fitted,
        "in_dim": index_dim,
        "out_dim": t.out_dim,
        "metric": metric,
        **(t._extra_state() if fitted else {}),
    }
    text = json.dumps(state, sort_keys=True).encode()
    out: List[Section] = [("transform", "bytes", len(text), 1, True, text)]
    if not fitted or not t._has_matrix:
        return out
    comps = np.ascontiguousarray(t.components_, dtype=np.float32)
    mean = np.ascontiguousarray(t.mean_, dtype=np.float64).reshape(1, -1)
    out.append(("transform.mat", "float32", comps.shape[0], comps.shape[1], True, comps.tobytes()))
    out.append(("transform.mean", "float64", 1, mean.shape[1], True, mean.tobytes()))
    var = t._variance()
    if var is not None:
        v = np.ascontiguousarray(var, dtype=np.float64).reshape(1, -1)
        out.append(("transform.var", "float64", 1, v.shape[1], False, v.tobytes()))
    return out


def from_sections(sections: dict, reduced_dim: int, source: str) -> Tuple[_LinearTransform, int, str]:
    """Rebuilds (transform, index dim, index metric) from index-file sections; FormatError if they do not fit
    together or with the stored vectors' dimension."""
    def bad(what: str) -> FormatError:
        return FormatError(f"{source}: transform sections: {what}")

    try:
        state = json.loads(sections["transform"][5].decode())
        kind, params, fitted = state["kind"], dict(state["params"]), bool(state["fitted"])
        in_dim, out_dim, metric = int(state["in_dim"]), int(state["out_dim"]), str(state["metric"])
    except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise bad(f"section 'transform' is not the expected JSON ({type(e).__name__}: {e})") from None
    if metric not in METRICS:
        raise bad(f"unknown metric {metric!r}")
    if out_dim != reduced_dim or not 0 < out_dim <= in_dim:
        raise bad(
            f"the transform maps {in_dim} to {out_dim} dimensions but the stored vectors have {reduced_dim}"
        )
    try:
        if kind == "PCA":
            t: _LinearTransform = PCA(**params)
        elif kind == "RandomProjection":
            t = RandomProjection(**params)
        elif kind == "Truncate":
            t = Truncate(**params)
        else:
            raise bad(f"unknown transform kind {kind!r}")
    except (TypeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise bad(f"bad parameters {params!r} ({e})") from None
    if t.out_dim != out_dim:
        raise bad(f"parameters say out_dim {t.out_dim}, the section says {out_dim}")
    if isinstance(t, Truncate):
        extra = sorted(name for name in sections if name.startswith("transform."))
        if extra:
            raise bad(f"a {kind} transform has no matrix, but the file holds {extra}")
        if fitted:  # nothing stored: fitting only records in_dim
            t._set_in_dim(in_dim)
        return t, in_dim, metric
    if not fitted:
        return t, in_dim, metric

    def array(name: str, dtype: str, shape: Tuple[int, int]) -> np.ndarray:
        if name not in sections:
            raise bad(f"section {name!r} is missing")
        _, got, rows, cols, _, data = sections[name]
        if got != dtype or (rows, cols) != shape:
            raise bad(f"section {name!r} is {rows} x {cols} {got}, expected {shape[0]} x {shape[1]} {dtype}")
        a = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
        if not np.isfinite(a).all():
            raise bad(f"section {name!r} holds NaN or Inf")
        return a

    w = array("transform.mat", "float32", (out_dim, in_dim))
    mean = array("transform.mean", "float64", (1, in_dim))[0]
    try:
        if isinstance(t, PCA):
            variance = array("transform.var", "float64", (1, out_dim))[0]
            t.in_dim = in_dim
            t._set_fitted(
                w, mean, variance, float(state.get("total_variance", 0.0)), int(state.get("n_samples_seen", 0))
            )
        else:
            t._set_matrix(w)
    except (TypeError, ValueError, OverflowError) as e:  # finite parts whose products are not (a huge mean)
        if isinstance(e, FormatError):
            raise
        raise bad(f"the stored matrices do not make a usable transform ({e})") from None
    return t, in_dim, metric
