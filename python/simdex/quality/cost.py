"""Storage cost of an index: raw vector bytes, the bytes simdex really holds for it, and the monthly bill.

The estimate follows the index's own layout (`layout()`), measured once per process from a few tiny real
indexes rather than written down here: the bytes of a stored row, the int8 or binary calibration (per dimension)
and the id of each row. Automatic ids (one ascending run) need no id lookup table; ids given out of order, or removals before
the last row, add a table of 5.3-8 bytes a row (`ID_TABLE_BYTES`). For a freshly built in-memory index with
automatic ids the estimate equals ``index.memory_usage()`` (tests/test_cost.py checks that).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Tuple

from .._validate import as_positive_int

# Raw vector bytes: the figure people quote and compare (50M x 384 float32 = 76.8 GB): a row of dim values takes
# ceil(dim x bits / 8) bytes. `layout()` checks it against real indexes.
BITS_PER_VALUE = {"float32": 32, "int8": 8, "binary": 1}
DTYPES = tuple(BITS_PER_VALUE)
#: Dimensions at which layout() checks the row bytes (odd ones: a binary row rounds up to whole bytes).
PROBE_DIMS = (1, 2, 9, 384, 385)


def row_bytes(dim: int, dtype: str) -> int:
    """Bytes of one stored row of dim values."""
    return -(-dim * BITS_PER_VALUE[dtype] // 8)


#: Bytes a row of the id lookup table costs when ids are not one ascending run: 4-byte slots, between half and
#: three quarters full (the table grows by half).
ID_TABLE_BYTES = (16 / 3, 8)

#: Row counts at which layout() checks that automatic ids need no lookup table.
PROBE_ROWS = (1, 1000, 100_000)


@dataclass(frozen=True)
class Layout:
    """Bytes of an in-memory simdex index, as `layout()` measured them."""

    calibration_bytes: Dict[str, Tuple[int, int]]  # (fixed, per dimension), by dtype
    id_bytes: int                                  # per row: its int64 id (automatic ids need nothing more)
    empty_bytes: int                               # an empty index (its metadata)

    def index_bytes(self, n: int, dim: int, dtype: str) -> int:
        """`Index.memory_usage()` of a freshly built in-memory index of n rows of dim values."""
        fixed, per_dim = self.calibration_bytes[dtype]
        return (n * row_bytes(dim, dtype) + (fixed + per_dim * dim if n else 0)
                + n * self.id_bytes + self.empty_bytes)


def _usage(n: int, dim: int = 1, dtype: str = "float32") -> Dict[str, int]:
    import numpy as np

    from .._index import Index

    index = Index(dim, metric="ip", dtype=dtype)
    if n:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # int8 calibrated on a handful of rows: fine for counting bytes
            index.add(np.arange(n * dim, dtype=np.float32).reshape(n, dim))
    return index.memory_usage(detail=True)


@functools.lru_cache(maxsize=None)
def layout() -> Layout:
    """The index's byte layout, measured from small real indexes (about 50 ms, once per process)."""
    from .._validate import DTYPES as INDEX_DTYPES

    if set(INDEX_DTYPES) != set(DTYPES):
        raise RuntimeError(f"simdex.cost knows dtypes {DTYPES}, the index has {INDEX_DTYPES}")
    id_bytes = _usage(2)["ids"] - _usage(1)["ids"]
    for n in PROBE_ROWS:
        if _usage(n)["ids"] != n * id_bytes:
            raise RuntimeError(f"simdex.cost: {n} automatic ids take {_usage(n)['ids']} bytes, not {n} x {id_bytes}: "
                               "the index's id layout changed")
    calibration = {}
    for dt in DTYPES:
        one, two = _usage(2, 1, dt), _usage(2, 2, dt)
        per_dim = two["calibration"] - one["calibration"]
        calibration[dt] = (one["calibration"] - per_dim, per_dim)
        for dim in PROBE_DIMS:
            got = _usage(2, dim, dt)["vectors"]
            if got != 2 * row_bytes(dim, dt):
                raise RuntimeError(f"simdex.cost: 2 {dt} rows of {dim} values take {got} bytes, not "
                                   f"{2 * row_bytes(dim, dt)}: the index's row layout changed")
    return Layout(calibration, id_bytes, sum(_usage(0).values()))


@dataclass
class CostReport:
    n: int
    dim: int
    dtype: str
    replicas: int
    raw_bytes: int            # n x row_bytes(dim, dtype), one replica
    index_bytes: int          # what the in-memory index holds (vectors, calibration, ids, id table), one replica
    total_bytes: int          # index_bytes x replicas
    price_per_gb_month: Tuple[float, float]
    usd_per_month: Tuple[float, float]
    usd_per_year: Tuple[float, float]

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> List[str]:
        lo, hi = self.price_per_gb_month
        return [
            f"{self.n:,} vectors x {self.dim} dims, {self.dtype}, {self.replicas} replica(s)",
            f"raw vectors      {_gb(self.raw_bytes)}",
            f"with ids + index {_gb(self.total_bytes)} (all replicas)",
            f"at ${lo:.2f}-${hi:.2f} per GB-month: ${self.usd_per_month[0]:,.2f}-${self.usd_per_month[1]:,.2f} "
            f"per month, ${self.usd_per_year[0]:,.2f}-${self.usd_per_year[1]:,.2f} per year",
        ]


def _gb(b: int) -> str:
    return f"{b / 1e9:,.1f} GB ({b:,} bytes)"




def _check_price(price: Any) -> Tuple[float, float]:
    try:
        lo, hi = price
    except (TypeError, ValueError):
        raise ValueError(f"price: expected (LOW, HIGH) dollars per GB-month, got {price!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"price: expected finite, non-negative dollars per GB-month, got {lo!r}:{hi!r}")
    if lo > hi:
        raise ValueError(f"price: expected LOW:HIGH with 0 <= LOW <= HIGH, got {lo}:{hi}")
    return float(lo), float(hi)


def storage_cost(n: int, dim: int, dtype: str = "float32", replicas: int = 1,
                 price: Tuple[float, float] = (0.10, 0.25)) -> CostReport:
    """Bytes and dollars for an index of n vectors of dim dimensions (GB = 10^9 bytes).

    >>> storage_cost(50_000_000, 384).raw_bytes / 1e9
    76.8
    """
    if dtype not in BITS_PER_VALUE:
        raise ValueError(f"dtype: expected one of {sorted(BITS_PER_VALUE)}, got {dtype!r}")
    n, dim, replicas = as_positive_int(n, "n"), as_positive_int(dim, "dim"), as_positive_int(replicas, "replicas")
    lo, hi = _check_price(price)
    raw = n * row_bytes(dim, dtype)
    index = layout().index_bytes(n, dim, dtype)
    total = index * replicas
    month = (total / 1e9 * lo, total / 1e9 * hi)
    return CostReport(n, dim, dtype, replicas, raw, index, total, (lo, hi), month, (month[0] * 12, month[1] * 12))


def parse_price(text: str) -> Tuple[float, float]:
    """'0.10:0.25' -> (0.10, 0.25); a single number is both ends. Finite, non-negative numbers only."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"price: expected LOW:HIGH in dollars per GB-month, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise ValueError(f"price: expected LOW:HIGH in dollars per GB-month, got {text!r}")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"price: expected finite, non-negative dollars per GB-month, got {text!r}")
    return _check_price((values[0], values[1]))
