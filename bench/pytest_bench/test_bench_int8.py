"""int8 scalar quantization, k = 10: the simdex int8 index against the simdex float32 index, NumPy float32
(what int8 replaces) and faiss ``IndexScalarQuantizer(d, QT_8bit, METRIC_INNER_PRODUCT)``, same vectors.
Building (training the ranges and encoding) is its own group."""

from __future__ import annotations

import numpy as np
import pytest
import simdex
from _bench import K, label, numpy_topk, record


def build_simdex(x, dtype):
    index = simdex.Index(x.shape[1], "ip", dtype=dtype)
    index.add(x)
    return index


def build_faiss_sq8(faiss, x):
    index = faiss.IndexScalarQuantizer(x.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    return index


@pytest.fixture(scope="session")
def simdex_indexes(db):
    x, _ = db
    return {"simdex-int8": build_simdex(x, "int8"), "simdex-float32": build_simdex(x, "float32")}


@pytest.fixture(scope="session")
def faiss_sq8(db, faiss):
    return build_faiss_sq8(faiss, db[0])


def engine_index(request, engine):
    """The index an engine searches; faiss's only when faiss is installed (the simdex runs do not need it)."""
    if engine == "faiss-sq8":
        return request.getfixturevalue("faiss_sq8")
    return request.getfixturevalue("simdex_indexes")[engine]


@pytest.mark.parametrize("engine", ["simdex-int8", "simdex-float32", "faiss-sq8", "numpy-float32"])
def test_int8_single(benchmark, request, size, db, engine):
    x, q = db
    record(benchmark, f"int8 single {label(size)}", n=size["n"], d=size["d"], k=K)
    if engine == "numpy-float32":
        benchmark.pedantic(numpy_topk, args=(q[0], x), rounds=20, warmup_rounds=2)
    else:
        one = q[:1] if engine.startswith("faiss") else q[0]
        benchmark.pedantic(engine_index(request, engine).search, args=(one, K), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("engine", ["simdex-int8", "simdex-float32", "faiss-sq8", "numpy-float32"])
def test_int8_batch(benchmark, request, size, db, engine):
    x, q = db
    record(benchmark, f"int8 batch {label(size)} q{len(q)}", n=size["n"], d=size["d"], queries=len(q), k=K)
    if engine == "numpy-float32":
        benchmark.pedantic(numpy_topk, args=(q, x), rounds=5, warmup_rounds=1)
        return
    result = benchmark.pedantic(engine_index(request, engine).search, args=(q, K), rounds=5, warmup_rounds=1)
    ids = np.asarray(result[1])
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, numpy_topk(q, x)[1])])
    benchmark.extra_info["recall_at_10"] = round(float(recall), 4)


@pytest.mark.parametrize("engine", ["simdex-int8", "faiss-sq8"])
def test_int8_build(benchmark, request, size, db, engine):
    x, _ = db
    record(benchmark, f"int8 build {label(size)}", n=size["n"], d=size["d"])
    if engine == "simdex-int8":
        def build():
            return build_simdex(x, "int8")
    else:
        faiss = request.getfixturevalue("faiss")

        def build():
            return build_faiss_sq8(faiss, x)
    benchmark.pedantic(build, rounds=3, warmup_rounds=1)
