import pytest

from simdex.cost import parse_price, storage_cost


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
