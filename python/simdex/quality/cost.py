"""Storage cost of an index: raw vector bytes, the bytes simdex really holds for it, and the monthly bill.

The estimate follows the index's own layout (`layout()`), measured once per process from a few tiny real
indexes rather than written down here: bytes per stored value, the int8 calibration (per dimension), the id of
each row, and the id lookup table, which grows in steps (it doubles when it would get too full). For a freshly
built in-memory index it equals ``index.memory_usage()`` (tests/test_cost.py checks that).
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Tuple

# Raw vector bytes: the figure people quote and compare (50M x 384 float32 = 76.8 GB). `layout()` checks it.
BYTES_PER_VALUE = {"float32": 4, "int8": 1}
DTYPES = tuple(BYTES_PER_VALUE)


#: layout() measures the id table's real size up to this many bytes; past it each step is `table_growth` times
#: the last (the core rounds buffers of 1 MiB and more up to whole 2 MiB huge pages; past 2 MiB the steps are
#: whole multiples of that, so the rounding no longer shows).
PROBE_TABLE_BYTES = 8 << 20


@dataclass(frozen=True)
class Layout:
    """Bytes of an in-memory simdex index, as `layout()` measured them."""

    value_bytes: Dict[str, int]                    # per stored value (vector component), by dtype
    calibration_bytes: Dict[str, Tuple[int, int]]  # (fixed, per dimension), by dtype
    id_bytes: int                                  # per row: its int64 id
    table_steps: Tuple[Tuple[int, int], ...]       # the id lookup table: (most rows, bytes) of each size it takes
    table_growth: int                              # the factor it grows by
    empty_bytes: int                               # an empty index (its metadata)

    def id_table_bytes(self, n: int) -> int:
        """Bytes of the id lookup table holding n rows."""
        if n <= 0:
            return 0
        for rows, size in self.table_steps:
            if n <= rows:
                return size
        rows, size = self.table_steps[-1]
        while n > rows:
            rows, size = rows * self.table_growth, size * self.table_growth
        return size

    def index_bytes(self, n: int, dim: int, dtype: str) -> int:
        """`Index.memory_usage()` of a freshly built in-memory index of n rows of dim values."""
        fixed, per_dim = self.calibration_bytes[dtype]
        return (n * dim * self.value_bytes[dtype] + (fixed + per_dim * dim if n else 0)
                + n * self.id_bytes + self.id_table_bytes(n) + self.empty_bytes)


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
    ids = functools.lru_cache(maxsize=None)(lambda n: _usage(n)["ids"])
    id_bytes = ids(2) - ids(1)
    table = lambda n: ids(n) - n * id_bytes  # noqa: E731
    first = table(1)
    hi = 2
    while table(hi) == first:  # gallop to a size that made the table grow, then bisect for the first one
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if table(mid) == first else (lo, mid)
    growth, rest = divmod(table(hi), first)
    if rest or growth < 2:
        raise RuntimeError(f"simdex.cost: the id table grew from {first} to {table(hi)} bytes, not by a whole factor")
    steps = [(lo, first)]
    while steps[-1][1] < PROBE_TABLE_BYTES:  # the most rows of each next size, and what the table then holds
        rows = steps[-1][0] * growth
        steps.append((rows, table(rows)))
    values, calibration = {}, {}
    for dt in DTYPES:
        one, two = _usage(2, 1, dt), _usage(2, 2, dt)
        values[dt] = (two["vectors"] - one["vectors"]) // 2
        per_dim = two["calibration"] - one["calibration"]
        calibration[dt] = (one["calibration"] - per_dim, per_dim)
        if values[dt] != BYTES_PER_VALUE[dt]:
            raise RuntimeError(f"simdex.cost: {dt} stores {values[dt]} bytes a value, not {BYTES_PER_VALUE[dt]}")
    return Layout(values, calibration, id_bytes, tuple(steps), growth, sum(_usage(0).values()))


@dataclass
class CostReport:
    n: int
    dim: int
    dtype: str
    replicas: int
    raw_bytes: int            # n x dim x bytes per value, one replica
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


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


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
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype: expected one of {sorted(BYTES_PER_VALUE)}, got {dtype!r}")
    n, dim, replicas = _positive_int("n", n), _positive_int("dim", dim), _positive_int("replicas", replicas)
    lo, hi = _check_price(price)
    raw = n * dim * BYTES_PER_VALUE[dtype]
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
