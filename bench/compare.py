"""Exact-search speed of simdex against NumPy brute force and faiss-cpu IndexFlatIP, as ratios from one run.

    python bench/compare.py                       # 1M x 384 and 100K x 384/768, k = 10
    python bench/compare.py --n 1000000 --d 384 --runs 5

Each engine runs in its own process (so memory and BLAS settings do not leak between them). The NumPy baseline
runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, which is NumPy at its best on this machine; nothing else
changes them. The RAM floor is bytes scanned / read bandwidth measured in the same run with all threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, timings, unit_rows  # noqa: E402

K = 10
N_QUERIES = 1000


def worker(engine: str, n: int, d: int, runs: int) -> dict:
    x = unit_rows(n, d, seed=0)
    q = unit_rows(N_QUERIES, d, seed=1)
    if engine == "simdex":
        import simdex

        index = simdex.Index(d, "ip")
        index.add(x)
        del x
        single = lambda i: index.search(q[i], K)  # noqa: E731
        batch = lambda i: index.search(q, K)  # noqa: E731
    elif engine == "faiss":
        import faiss

        index = faiss.IndexFlatIP(d)
        index.add(x)
        del x
        single = lambda i: index.search(q[i : i + 1], K)  # noqa: E731
        batch = lambda i: index.search(q, K)  # noqa: E731
    elif engine == "numpy":

        def single(i):
            s = x @ q[i]
            top = np.argpartition(-s, K)[:K]
            return top[np.argsort(-s[top])]

        def batch(i):
            # In blocks of 100 queries, so the score matrix stays at 100 x n.
            for j in range(0, N_QUERIES, 100):
                s = q[j : j + 100] @ x.T
                top = np.argpartition(-s, K, axis=1)[:, :K]
                np.take_along_axis(s, top, 1)
    else:
        raise ValueError(engine)
    out = {
        "single_s": median(timings(single, max(9, runs))),
        "batch_s": median(timings(batch, runs, warmup=0 if n * d > 100_000_000 else 1)),
    }
    if engine == "simdex":
        import simdex

        # Top-k share: the heap updates, i.e. the search against the same search where nothing can enter a list
        # (min_score=inf). The compare pass that finds candidates runs in both: one vector compare per 384 FMAs.
        heap = median(timings(lambda i: index.search(q, K), 3, 0)) - median(
            timings(lambda i: index.search(q, K, min_score=np.inf), 3, 0)
        )
        out["topk_share"] = max(0.0, heap) / out["batch_s"]
        out["bandwidth"] = simdex._core.read_bandwidth(1 << 30, 5)
        out["simd"] = simdex.simd_info()["active"]
        out["threads"] = simdex.get_num_threads()
    return out


def run_engine(engine: str, n: int, d: int, runs: int) -> dict:
    env = dict(os.environ)
    if engine == "numpy":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [sys.executable, __file__, "--worker", engine, "--n", str(n), "--d", str(d), "--runs", str(runs)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--d", type=int, action="append")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--engines", default="simdex,numpy,faiss")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n[0], args.d[0], args.runs)))
        return
    configs = list(zip(args.n, args.d)) if args.n else [(1_000_000, 384), (100_000, 384), (100_000, 768), (1_000_000, 768)]
    rows = []
    for n, d in configs:
        res = {e: run_engine(e, n, d, args.runs) for e in args.engines.split(",")}
        rows.append((n, d, res))
        print(json.dumps({"n": n, "d": d, **res}), file=sys.stderr)
    print(table(rows, args.runs))


def table(rows, runs) -> str:
    lines = [
        f"k = {K}, {N_QUERIES}-query batch, medians of >= {runs} runs; ratios are other engine's time / simdex's time.",
        "",
        "| n x d | simdex single (ms) | x RAM floor | vs NumPy | vs faiss | simdex batch (q/s) | vs NumPy | vs faiss "
        "| top-k share | RAM GB/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, d, r in rows:
        s = r["simdex"]
        floor = n * d * 4 / s["bandwidth"]

        def ratio(e, key):
            return f"{r[e][key] / s[key]:.2f}x" if e in r and key in r[e] else "n/a"

        lines.append(
            f"| {n:,} x {d} | {s['single_s'] * 1e3:.1f} | {s['single_s'] / floor:.2f} | {ratio('numpy', 'single_s')} "
            f"| {ratio('faiss', 'single_s')} | {N_QUERIES / s['batch_s']:.0f} | {ratio('numpy', 'batch_s')} "
            f"| {ratio('faiss', 'batch_s')} | {s['topk_share']:.1%} | {s['bandwidth'] / 1e9:.1f} |"
        )
    base = rows[0][2]
    lines += ["", "Absolute: " + "; ".join(
        f"{e} single {v['single_s'] * 1e3:.1f} ms, batch {N_QUERIES / v['batch_s']:.0f} q/s"
        for e, v in base.items() if "single_s" in v) + f" (first row; SIMD {base['simdex']['simd']}, "
        f"{base['simdex']['threads']} threads)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
