"""Helpers of the pytest-benchmark suite (bench/pytest_bench): sizes, labels, NumPy top-k, texts."""

from __future__ import annotations

import os
import sys

import numpy as np

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, BENCH)  # bench/_common.py
sys.path.insert(1, os.path.join(os.path.dirname(BENCH), "tests"))  # tests/standin_encoder.py
from _common import unit_rows  # noqa: E402,F401

K = 10

# n x d: the database; q: queries in a batch; fit: PCA training rows x input dim -> out dim;
# texts: texts through a real model (MiniLM); standin_texts: texts through the hash stand-in (no model).
SIZES = {
    "small": dict(n=20_000, d=384, q=100, fit=(20_000, 384, 128), texts=64, standin_texts=5_000),
    "medium": dict(n=200_000, d=384, q=1000, fit=(100_000, 768, 384), texts=1_000, standin_texts=50_000),
    "large": dict(n=1_000_000, d=384, q=1000, fit=(200_000, 768, 384), texts=5_000, standin_texts=200_000),
}


def label(size) -> str:
    return f"{size['n']}x{size['d']}"


def record(benchmark, group: str, **info) -> None:
    """Sets the group and the facts a saved run should carry (threads, SIMD level, sizes)."""
    import simdex

    benchmark.group = group
    benchmark.extra_info.update(info, threads=simdex.get_num_threads(), simd=simdex.simd_info()["active"])


def numpy_topk(q: np.ndarray, x: np.ndarray, k: int = K, chunk: int = 256):
    """Exact inner-product top-k with NumPy: BLAS scores, argpartition, then the k sorted (as engines do)."""
    q = np.atleast_2d(q)
    scores = np.empty((len(q), k), np.float32)
    ids = np.empty((len(q), k), np.int64)
    for i in range(0, len(q), chunk):
        s = q[i : i + chunk] @ x.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids[i : i + chunk] = np.take_along_axis(part, order, axis=1)
        scores[i : i + chunk] = np.take_along_axis(top, order, axis=1)
    return scores, ids


def words(n: int, seed: int) -> list:
    """n sentence-like texts of 6-40 words from a fixed vocabulary (seeded), unique by their number."""
    rng = np.random.default_rng(seed)
    vocab = ("index vector search query memory thread kernel model token batch file page cache score quick "
             "brown fox river stone light paper engine signal market garden window music letter number "
             "system network server client python compiler pointer matrix random stable").split()
    lengths = rng.integers(6, 41, n)
    picks = rng.integers(0, len(vocab), int(lengths.sum()))
    out, at = [], 0
    for i, m in enumerate(lengths):
        out.append(f"{i}: " + " ".join(vocab[j] for j in picks[at : at + m]))
        at += m
    return out
