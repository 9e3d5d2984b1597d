"""pytest-benchmark throughput runs (not part of the default test run):

    pytest bench/test_search.py --benchmark-only --benchmark-group-by=param:n

NumPy here runs with this process's BLAS settings; bench/compare.py gives the fair ratio table.
"""

import os
import sys

import numpy as np
import pytest

import simdex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import unit_rows  # noqa: E402

K = 10
SIZES = [(100_000, 384), (100_000, 768), (1_000_000, 384)]


@pytest.fixture(scope="module", params=SIZES, ids=lambda p: f"{p[0]}x{p[1]}")
def data(request):
    n, d = request.param
    x, q = unit_rows(n, d, 0), unit_rows(1000, d, 1)
    index = simdex.Index(d, "ip")
    index.add(x)
    return x, q, index


@pytest.mark.parametrize("isa", simdex.simd_info()["supported"])
def test_single_query(benchmark, data, isa):
    x, q, index = data
    benchmark.group = f"single {x.shape}"
    with simdex.simd_override(isa):
        benchmark.pedantic(index.search, args=(q[0], K), rounds=10, warmup_rounds=2)


def test_batch(benchmark, data):
    x, q, index = data
    benchmark.group = f"batch {x.shape}"
    benchmark.pedantic(index.search, args=(q, K), rounds=3, warmup_rounds=1)


def test_numpy_single(benchmark, data):
    x, q, _ = data
    benchmark.group = f"single {x.shape}"

    def run():
        s = x @ q[0]
        return np.argpartition(-s, K)[:K]

    benchmark.pedantic(run, rounds=10, warmup_rounds=2)


def test_faiss_batch(benchmark, data):
    faiss = pytest.importorskip("faiss")
    x, q, _ = data
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    benchmark.group = f"batch {x.shape}"
    benchmark.pedantic(index.search, args=(q, K), rounds=3, warmup_rounds=1)
