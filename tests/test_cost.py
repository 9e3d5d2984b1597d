import math
import warnings

import numpy as np
import pytest

import simdex
from simdex.quality.cost import BITS_PER_VALUE, DTYPES, layout, parse_price, row_bytes, storage_cost


def test_reproduces_the_reference_figures():
    base = storage_cost(50_000_000, 384, "float32")
    assert base.raw_bytes == 76_800_000_000  # 76.8 GB
    assert storage_cost(50_000_000, 768).raw_bytes == 2 * base.raw_bytes
    assert storage_cost(50_000_000, 1536).raw_bytes == 4 * base.raw_bytes
    assert storage_cost(50_000_000, 384, "int8").raw_bytes * 4 == base.raw_bytes


def test_overhead_replicas_and_price():
    r = storage_cost(1_000_000, 100, "float32", replicas=3, price=(0.1, 0.2))
    assert r.total_bytes > 3 * r.raw_bytes
    assert r.usd_per_month[0] == pytest.approx(r.total_bytes / 1e9 * 0.1)
    assert r.usd_per_year[1] == pytest.approx(12 * r.usd_per_month[1])
    assert "per month" in "\n".join(r.lines())


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0, "dim": 3}, "n"), ({"n": 5, "dim": -1}, "dim"), ({"n": 5, "dim": 3, "dtype": "int4"}, "dtype"),
    ({"n": 5, "dim": 3, "price": (0.3, 0.1)}, "price"), ({"n": 5, "dim": 3, "replicas": 0}, "replicas"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        storage_cost(**kwargs)


def test_parse_price():
    assert parse_price("0.10:0.25") == (0.10, 0.25)
    assert parse_price("0.2") == (0.2, 0.2)
    with pytest.raises(ValueError, match="LOW:HIGH"):
        parse_price("cheap")


# -- the estimate is what the index really holds ------------------------------------------------------------------
def _built(n, dim, dtype, batches=1):
    index = simdex.Index(dim, metric="ip", dtype=dtype)
    rng = np.random.default_rng(n + dim)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small int8 first batches: calibration quality is not the point here
        for part in np.array_split(x, batches):
            index.add(part)
    return index


@pytest.mark.parametrize("n,dim,dtype,batches", [
    (10_000, 16, "float32", 1), (10_000, 384, "float32", 1), (10_000, 16, "int8", 1), (10_000, 384, "int8", 1),
    (10_000, 384, "int8", 7), (1, 16, "float32", 1), (12_288, 16, "float32", 1), (12_289, 16, "float32", 1),
    (30_000, 16, "float32", 3), (49_153, 8, "int8", 1), (400_000, 1, "float32", 4), (10_000, 384, "binary", 1),
    (10_000, 385, "binary", 3), (7, 9, "binary", 1),
])
def test_estimate_equals_memory_usage_of_a_real_index(n, dim, dtype, batches):
    # Exact, not approximate: memory_usage counts rows written (not room reserved for growth), and automatic ids
    # (one ascending run) need no id lookup table; a built index without metadata holds nothing else.
    assert storage_cost(n, dim, dtype).total_bytes == _built(n, dim, dtype, batches).memory_usage()
    assert storage_cost(n, dim, dtype, replicas=3).total_bytes == 3 * storage_cost(n, dim, dtype).index_bytes


def test_per_id_overhead_is_the_id_alone():
    # 50M float32 x 384: 76.8 GB of vectors and 8 bytes of id a row; automatic ids need no lookup table.
    r = storage_cost(50_000_000, 384)
    assert r.total_bytes - r.raw_bytes == 50_000_000 * 8 + layout().empty_bytes


def test_id_table_bytes_are_within_the_documented_band():
    """Ids out of order need the lookup table: 5.3-8 bytes a row beyond the 8-byte id (ID_TABLE_BYTES)."""
    from simdex.quality.cost import ID_TABLE_BYTES

    rng = np.random.default_rng(3)
    for n in (1_000, 10_000, 100_000):
        index = simdex.Index(1, metric="ip")
        index.add(np.ones((n, 1), np.float32), ids=rng.permutation(n * 3)[:n])
        per_row = (index.memory_usage(detail=True)["ids"] - 8 * n) / n
        assert ID_TABLE_BYTES[0] - 0.01 <= per_row <= ID_TABLE_BYTES[1] + 0.01, (n, per_row)


def test_layout_matches_the_index_dtypes():
    from simdex._validate import DTYPES as INDEX_DTYPES

    assert set(DTYPES) == set(INDEX_DTYPES)
    assert BITS_PER_VALUE == {"float32": 32, "int8": 8, "binary": 1}
    assert [row_bytes(d, "binary") for d in (1, 8, 9, 384)] == [1, 1, 2, 48]
    assert layout().id_bytes == 8


@pytest.mark.parametrize("price", [(math.inf, math.inf), (0.1, math.inf), (-0.1, 0.2), (math.nan, 1.0), (True, 1),
                                   ("0.1", "0.2"), (0.1,)])
def test_price_must_be_finite_non_negative_numbers(price):
    with pytest.raises(ValueError, match="price"):
        storage_cost(10, 4, price=price)


@pytest.mark.parametrize("text", ["inf", "0.1:inf", "1e400", "nan", "-1", "0.2:-0.1"])
def test_parse_price_refuses_non_finite_and_negative(text):
    with pytest.raises(ValueError, match="price"):
        parse_price(text)


def test_float16_is_not_offered():
    with pytest.raises(ValueError, match="dtype"):
        storage_cost(10, 4, "float16")
    assert storage_cost(np.int64(10), np.int32(4)).n == 10
    with pytest.raises(TypeError, match="n"):
        storage_cost(True, 4)
