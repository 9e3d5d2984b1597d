"""L2 search against IP search on the same rows, in one process: `python bench/bench_l2.py [--n N] [--d D]`.

The indexes hold the same float32 rows; their calls alternate (the order rotating every round) so that a noisy
neighbour slows each alike. The figure is the median over rounds of each round's L2 / IP time (the target: at
most 1.05); a second IP index gives the same ratio for two identical indexes, the noise floor. On a shared machine the wall time also
counts the time other processes held the cores, so the CPU time of this process (all its threads) is reported
beside it: it counts only the work done, stalls on memory included. Under l2 the scan is
the inner-product scan plus one subtraction per row (the stored squared norm), and each result's distance is
recomputed from q - x.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time

import numpy as np

import simdex


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def rows(n: int, d: int, seed: int) -> np.ndarray:
    """Normal rows with an offset, so norms vary (chunks bound the temporary memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for i in range(0, n, 100_000):
        out[i : i + 100_000] = rng.standard_normal((min(100_000, n - i), d), dtype=np.float32) + 0.1
    return out


def alternate(fns: dict, runs: int) -> dict:
    """Seconds per call of each fn, interleaved (the order rotates every round), after one warm-up call each:
    name -> (median wall time, median over rounds of its time / the geometric mean of the reference fns' (names
    starting with "IP") in that round, the same ratio of CPU times)."""
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    names = list(fns)
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    refs = [name for name in names if name.startswith("IP")]

    def ratio(t: dict, name: str) -> float:
        base = np.exp(np.mean([np.log(t[r]) for r in refs], axis=0))
        return float(np.median(np.divide(t[name], base)))

    return {name: (float(np.median(wall[name])), ratio(wall, name), ratio(cpu, name)) for name in names}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)

    x = rows(args.n, args.d, 0)
    q = rows(args.batch, args.d, 1)
    # "IP again": a second IP index over the same rows, the noise floor (allocation, huge pages, neighbours).
    indexes = {"IP": simdex.Index(args.d, metric="ip"), "L2": simdex.Index(args.d, metric="l2"),
               "IP again": simdex.Index(args.d, metric="ip")}
    for index in indexes.values():
        index.add(x)
    del x
    info = simdex.simd_info()
    print(f"CPU: {cpu_name()}, {simdex.get_num_threads()} threads, SIMD {info['active']} (int8 {info['int8']})")
    print(f"{args.n:,} x {args.d}, k = {args.k}; medians of {args.runs} rounds")
    print("| query | index | wall (ms) | / IP, wall | / IP, CPU time |  (IP: both IP indexes' geometric mean)")
    print("|---|---|---|---|---|")
    for what, qs in (("single", q[:1]), (f"batch of {args.batch}", q)):
        res = alternate({name: (lambda i=index: i.search(qs, args.k)) for name, index in indexes.items()}, args.runs)
        for name, (ms, ratio, cpu_ratio) in res.items():
            print(f"| {what} | {name} | {1e3 * ms:.1f} | {ratio:.3f} | {cpu_ratio:.3f} |")


if __name__ == "__main__":
    main()
