"""Input checks shared by the Python API: one place that turns array-likes into what the core expects,
or raises an error that says what was expected and what arrived."""

from __future__ import annotations

import math
import numbers
import operator
import reprlib
from typing import Any

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max
METRICS = ("cosine", "ip", "l2")
DTYPES = ("float32", "int8", "binary")


def as_matrix(x: Any, dim: int, name: str = "vectors") -> np.ndarray:
    """Returns x as a C-contiguous float32 (n, dim) array (no copy when it already is one)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: expected a numeric array of shape (n, {dim}); could not convert: {e}") from None
    kind = arr.dtype.kind
    if kind != "f":
        what = {"c": "complex", "b": "bool", "i": "integer", "u": "integer", "O": "object", "U": "string",
                "S": "bytes"}.get(kind, "non-numeric")
        raise TypeError(f"{name}: expected a float32 or float64 array, got {what} dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    elif arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (n, {dim}) or ({dim},), got a {arr.ndim}-D array of shape {arr.shape}")
    if arr.shape[1] != dim:
        raise ValueError(f"{name}: expected {dim} columns (the index dim), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got an empty array of shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_ids(ids: Any, name: str = "ids", n: int | None = None) -> np.ndarray:
    """Returns ids as a C-contiguous int64 1-D array; n, when given, is the required length."""
    if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
        ids = [ids]
    if not isinstance(ids, np.ndarray):
        try:
            ids = list(ids)
        except TypeError:
            raise TypeError(f"{name}: expected a sequence of integer ids, got {type(ids).__name__}") from None
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ids):
            # Python ints: check the range before NumPy silently picks uint64, float64 or object.
            if any(v > _INT64_MAX or v < -_INT64_MAX - 1 for v in ids):
                raise ValueError(f"{name}: ids must fit in int64; got a value outside [-2**63, 2**63)")
            return _finish_ids(np.array(ids, dtype=np.int64).reshape(-1), name, n)
    try:
        arr = np.asarray(ids)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{name}: expected int64 ids; could not convert: {e}") from None
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # np.asarray([]) is float64
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64_MAX:
        raise ValueError(f"{name}: ids must fit in int64; got {arr.max()}")
    return _finish_ids(arr, name, n)


def _finish_ids(arr: np.ndarray, name: str, n: "int | None") -> np.ndarray:
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of ids, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} ids (one per vector), got {arr.shape[0]}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_positive_int(value: Any, name: str) -> int:
    """Returns value as a positive Python int: TypeError for a non-integer (a bool too), ValueError for <= 0."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a positive integer, got a bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected a positive integer, got {type(value).__name__}") from None
    if value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return value


def as_k(k: Any) -> int:
    """Returns k as a positive Python int."""
    return as_positive_int(k, "k")


def as_dim(dim: Any) -> int:
    if isinstance(dim, bool):
        raise TypeError("dim: expected a positive integer, got a bool")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim: expected a positive integer, got {type(dim).__name__}") from None
    if dim <= 0:
        raise ValueError(f"dim: expected a positive integer, got {dim}")
    return dim


def as_min_score(min_score: Any, name: str = "min_score", default: float = float("-inf")) -> float:
    """Returns min_score as a float (default for None). A real number: Python or NumPy int or float (a 0-d NumPy
    array too); strings, bools, complex numbers and arrays of several values are refused, and so is NaN. `name`
    and `default` serve the other thresholds (``max_distance``: +inf)."""
    if min_score is None:
        return default
    if isinstance(min_score, np.ndarray) and min_score.ndim == 0 and min_score.dtype.kind in "iuf":
        min_score = min_score[()]
    if isinstance(min_score, (bool, np.bool_)) or not isinstance(min_score, numbers.Real):
        raise TypeError(f"{name}: expected a real number or None, got {type(min_score).__name__} "
                        f"{reprlib.repr(min_score)}")
    value = float(min_score)
    if math.isnan(value):
        raise ValueError(f"{name}: expected a real number or None, got NaN")
    return value


def as_thresholds(metric: str, min_score: Any, max_distance: Any) -> "tuple[float, float]":
    """`Index.search`'s (min_score, max_distance) for the core. Under l2 results are distances, smallest first, so
    the cut is ``max_distance`` (results farther away are dropped) and min_score is refused; under cosine and
    ip it is min_score, and max_distance is refused."""
    if metric == "l2" and min_score is not None:
        raise ValueError("min_score does not apply under metric 'l2' (scores are squared distances, smallest "
                         "first): pass max_distance=<largest squared distance to keep>")
    if metric != "l2" and max_distance is not None:
        raise ValueError(f"max_distance applies to metric 'l2'; under {metric!r} pass min_score")
    return as_min_score(min_score), as_min_score(max_distance, "max_distance", float("inf"))


def as_dtype(dtype: Any) -> str:
    """The index dtype named by `dtype` (a name, np.float32 or np.int8), one of `DTYPES`."""
    if isinstance(dtype, (type, np.dtype)):
        try:
            dtype = np.dtype(dtype).name  # np.float32 / np.int8 are accepted too
        except TypeError:
            pass
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return str(dtype)


def as_keep_originals(keep: Any, dtype: str) -> "tuple[bool, bool]":
    """`Index`'s keep_originals: (keep the float rows, keep int8 codes); "int8" only for dtype="binary"."""
    if isinstance(keep, str):
        if keep not in ("float32", "int8"):
            raise TypeError(f"keep_originals: expected a bool, 'float32' or 'int8', got {keep!r}")
        if keep == "int8" and dtype != "binary":
            raise ValueError("keep_originals='int8' applies to dtype='binary' (int8 codes kept for rescoring)")
        return keep == "float32", keep == "int8"
    if not isinstance(keep, (bool, np.bool_)):
        raise TypeError(f"keep_originals: expected a bool, got {type(keep).__name__}")
    return bool(keep), False


def as_rescore(rescore: Any, index: Any) -> int:
    """`Index.search`'s rescore factor: 0 for None, else a positive integer the index can use."""
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
    if index.dtype not in ("int8", "binary"):
        raise ValueError("rescore applies to dtype='int8' and 'binary' indexes; float32 scores are already exact")
    if not index.keep_originals:
        raise ValueError(
            f"rescore needs the original float vectors, which this {index.dtype} index does not keep: create it "
            f"with Index(..., dtype={index.dtype!r}, keep_originals=True), or search without rescore"
        )
    return r


def check_transform(transform: Any, dim: int, metric: str = "cosine") -> Any:
    """`transform` when it is None or a transform an index of dimension dim and this metric can use, else raises.
    Under l2 both sides must go through the same map, so that the reduced distance estimates the full one: PCA
    with center "both" or "none", or a random projection; not PCA(center="database") (queries uncentered) nor
    Truncate (it renormalizes)."""
    if transform is None:
        return None
    from .transform import PCA, RandomProjection, _LinearTransform  # inside: transform.py imports the core extension

    if not isinstance(transform, _LinearTransform):
        raise TypeError(
            f"transform: expected simdex.PCA, simdex.RandomProjection or simdex.Truncate, got {type(transform).__name__}"
        )
    if transform.out_dim > dim:
        raise ValueError(f"transform: out_dim {transform.out_dim} is larger than the index dim {dim}")
    if transform.is_fitted and transform.in_dim != dim:
        raise ValueError(
            f"transform: fitted on {transform.in_dim}-dimensional vectors, the index dim is {dim}"
        )
    same_map = isinstance(transform, RandomProjection) or (isinstance(transform, PCA) and transform.center != "database")
    if metric == "l2" and not same_map:
        raise ValueError(f"transform: {transform!r} does not map queries and vectors alike, so it cannot estimate "
                         "l2 distances; use simdex.PCA(out_dim, center='both') or simdex.RandomProjection")
    return transform
