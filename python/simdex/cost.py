"""Storage cost of an index: raw vector bytes, per-id and index overhead, and the monthly bill."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Tuple

BYTES_PER_VALUE = {"float32": 4, "float16": 2, "int8": 1}
# What simdex keeps per vector besides the vector: the int64 id and its slot in the id hash map (bucket pointer
# plus node: next pointer, key, value, cached hash). int8 needs nothing per vector (docs/int8.md: per-dimension
# offsets and steps only, 8 bytes per dimension for the whole index).
ID_BYTES = 8
ID_MAP_BYTES = 8 + 32
INT8_EXTRA_BYTES = 0


@dataclass
class CostReport:
    n: int
    dim: int
    dtype: str
    replicas: int
    raw_bytes: int            # n x dim x bytes per value, one replica
    total_bytes: int          # with ids and index overhead, all replicas
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


def storage_cost(n: int, dim: int, dtype: str = "float32", replicas: int = 1,
                 price: Tuple[float, float] = (0.10, 0.25)) -> CostReport:
    """Bytes and dollars for an index of n vectors of dim dimensions (GB = 10^9 bytes).

    >>> storage_cost(50_000_000, 384).raw_bytes / 1e9
    76.8
    """
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"dtype: expected one of {sorted(BYTES_PER_VALUE)}, got {dtype!r}")
    for name, v in (("n", n), ("dim", dim), ("replicas", replicas)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    lo, hi = price
    if not 0 <= lo <= hi:
        raise ValueError(f"price: expected LOW:HIGH with 0 <= LOW <= HIGH, got {lo}:{hi}")
    raw = n * dim * BYTES_PER_VALUE[dtype]
    per_vector_extra = ID_BYTES + ID_MAP_BYTES + (INT8_EXTRA_BYTES if dtype == "int8" else 0)
    total = (raw + n * per_vector_extra) * replicas
    month = (total / 1e9 * lo, total / 1e9 * hi)
    return CostReport(n, dim, dtype, replicas, raw, total, (lo, hi), month, (month[0] * 12, month[1] * 12))


def parse_price(text: str) -> Tuple[float, float]:
    """'0.10:0.25' -> (0.10, 0.25); a single number is both ends."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"price: expected LOW:HIGH in dollars per GB-month, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise ValueError(f"price: expected LOW:HIGH in dollars per GB-month, got {text!r}")
    return values[0], values[1]
