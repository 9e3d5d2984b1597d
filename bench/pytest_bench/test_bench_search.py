"""Exact float32 inner-product search, k = 10: simdex (each SIMD level for one query) against NumPy
(``x @ q`` + argpartition) and faiss ``IndexFlatIP``, on the same unit vectors."""

from __future__ import annotations

import numpy as np
import pytest
import simdex
from _bench import K, label, numpy_topk, record

ISAS = simdex.simd_info()["supported"]


@pytest.fixture(scope="session")
def flat(db):
    x, _ = db
    index = simdex.Index(x.shape[1], "ip")
    index.add(x)
    return index


@pytest.fixture(scope="session")
def faiss_flat(db, faiss):
    x, _ = db
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


@pytest.mark.parametrize("isa", ISAS)
def test_single_simdex(benchmark, size, db, flat, isa):
    _, q = db
    record(benchmark, f"exact single {label(size)}", n=size["n"], d=size["d"], k=K, isa=isa)
    with simdex.simd_override(isa):
        ids = benchmark.pedantic(flat.search, args=(q[0], K), rounds=20, warmup_rounds=2)[1]
    assert np.ravel(ids)[0] == np.argmax(db[0] @ q[0])


def test_single_numpy(benchmark, size, db):
    x, q = db
    record(benchmark, f"exact single {label(size)}", n=size["n"], d=size["d"], k=K)
    benchmark.pedantic(numpy_topk, args=(q[0], x), rounds=20, warmup_rounds=2)


def test_single_faiss(benchmark, size, db, faiss_flat):
    _, q = db
    record(benchmark, f"exact single {label(size)}", n=size["n"], d=size["d"], k=K)
    benchmark.pedantic(faiss_flat.search, args=(q[:1], K), rounds=20, warmup_rounds=2)


def test_batch_simdex(benchmark, size, db, flat):
    x, q = db
    record(benchmark, f"exact batch {label(size)} q{len(q)}", n=size["n"], d=size["d"], queries=len(q), k=K)
    _, ids = benchmark.pedantic(flat.search, args=(q, K), rounds=5, warmup_rounds=1)
    assert (np.asarray(ids)[:, 0] == numpy_topk(q, x)[1][:, 0]).mean() > 0.99


def test_batch_numpy(benchmark, size, db):
    x, q = db
    record(benchmark, f"exact batch {label(size)} q{len(q)}", n=size["n"], d=size["d"], queries=len(q), k=K)
    benchmark.pedantic(numpy_topk, args=(q, x), rounds=5, warmup_rounds=1)


def test_batch_faiss(benchmark, size, db, faiss_flat):
    _, q = db
    record(benchmark, f"exact batch {label(size)} q{len(q)}", n=size["n"], d=size["d"], queries=len(q), k=K)
    benchmark.pedantic(faiss_flat.search, args=(q, K), rounds=5, warmup_rounds=1)


def test_add_simdex(benchmark, size, db):
    x, _ = db

    def build():
        index = simdex.Index(x.shape[1], "ip")
        index.add(x)
        return index

    record(benchmark, f"exact add {label(size)}", n=size["n"], d=size["d"])
    benchmark.pedantic(build, rounds=3, warmup_rounds=1)


def test_add_faiss(benchmark, size, db, faiss):
    x, _ = db

    def build():
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        return index

    record(benchmark, f"exact add {label(size)}", n=size["n"], d=size["d"])
    benchmark.pedantic(build, rounds=3, warmup_rounds=1)
