"""Shared helpers for the benchmarks: seeded data, medians, RAM bandwidth."""

from __future__ import annotations

import time
from typing import Callable, Dict, List

import numpy as np


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    """n x d float32 rows of unit norm, generated in chunks to bound temporary memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for i in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - i), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[i : i + len(block)] = block
    return out


def timings(fn: Callable[[int], object], runs: int, warmup: int = 1) -> List[float]:
    """Seconds per call of fn(i) for i in range(runs), after warmup calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def interleaved_timings(fns: Dict[str, Callable[[int], object]], runs: int, warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds per call of each fn(i), the variants taking turns call by call: on a shared machine whose speed
    drifts, every variant then sees the same conditions (timing one variant after another does not)."""
    for i in range(warmup):
        for fn in fns.values():
            fn(i)
    out: Dict[str, List[float]] = {name: [] for name in fns}
    for i in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(i)
            out[name].append(time.perf_counter() - t0)
    return out


def median(xs: List[float]) -> float:
    return float(np.median(xs))
