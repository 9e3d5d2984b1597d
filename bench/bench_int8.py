"""int8 scalar quantization against its targets (issue 4), as ratios measured in one run on this machine.

    python bench/bench_int8.py                  # the report: memory, recall, speed vs float32 / faiss SQ8 / RAM floor
    python bench/bench_int8.py --n 200000 --rounds 3   # a smaller speed run
    pytest bench/bench_int8.py                  # the same as pytest-benchmark runs, targets asserted (not --benchmark-only:
                                                # that skips the target checks)

Targets: memory <= 1.05 x n x dim bytes plus ids (no originals); recall@10 against exact float32 search on
real-minilm >= 0.99 without rescoring and >= 0.999 with rescore=4; single query at 1M x 384 >= 3x faster than the
float32 index and within 1.3x of the int8 RAM floor (n x dim bytes / read bandwidth measured in the same run, all
threads); a 1000-query batch >= 2x faster than float32 and >= 7x faster than faiss
IndexScalarQuantizer(d, QT_8bit, METRIC_INNER_PRODUCT). The speed engines share one process and are measured in
interleaved rounds (this machine is shared, so its load changes between runs); each ratio is taken within a round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, timings, unit_rows  # noqa: E402

K = 10
N_QUERIES = 1000
MINILM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "real-minilm")
MINILM = os.environ.get("SIMDEX_MINILM", MINILM)


# -- data -----------------------------------------------------------------------------------------------------


def load_minilm():
    """real-minilm base (100K) and queries (1K), float32, re-normalized; None when the files are not there."""
    base, queries = os.path.join(MINILM, "base_f16.npy"), os.path.join(MINILM, "queries_f16.npy")
    if not (os.path.exists(base) and os.path.exists(queries)):
        return None
    x, q = np.load(base).astype(np.float32), np.load(queries).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def clustered(n: int, d: int, seed: int, clusters: int = 1000, spread: float = 0.6):
    """Unit vectors around random centres, anisotropic (per-dimension scales), as a synthetic stand-in for
    embeddings; base and queries share the centres."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.3, 1.7, d).astype(np.float32)
    centres = rng.standard_normal((clusters, d)).astype(np.float32) * scales

    def draw(m):
        x = centres[rng.integers(0, clusters, m)] + spread * scales * rng.standard_normal((m, d)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(N_QUERIES)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


# -- measurements (each in its own process when the report runs them) ----------------------------------------


def measure_recall(name: str) -> dict:
    import simdex

    data = load_minilm() if name == "real-minilm" else clustered(100_000, 384, seed=3)
    if data is None:
        return {"error": f"real-minilm not found under {MINILM} (set SIMDEX_MINILM)"}
    x, q = data
    exact = simdex.Index(x.shape[1], "ip")
    exact.add(x)
    _, truth = exact.search(q, K)
    index = simdex.Index(x.shape[1], "cosine", dtype="int8", keep_originals=True)
    index.add(x)
    out = {"n": len(x), "d": x.shape[1]}
    for r in (None, 1, 2, 4):
        out[f"recall_rescore_{r or 0}"] = recall_at_k(index.search(q, K, rescore=r).ids, truth)
    try:
        import faiss

        sq = faiss.IndexScalarQuantizer(x.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq.train(x)
        sq.add(x)
        out["recall_faiss_sq8"] = recall_at_k(sq.search(q, K)[1], truth)
    except ImportError:
        pass
    return out


def measure_speed(n: int, d: int, rounds: int) -> dict:
    """The three engines in one process, measured in interleaved rounds so that a change in the machine's load
    hits them alike; every ratio is taken within a round, then the median over rounds is reported."""
    import simdex

    x = unit_rows(n, d, seed=0)
    q = unit_rows(N_QUERIES, d, seed=1)
    i8 = simdex.Index(d, "ip", dtype="int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        i8.add(x)
    f32 = simdex.Index(d, "ip")
    f32.add(x)
    out = {"memory_int8": i8.memory_usage(detail=True), "memory_float32": f32.memory_usage(detail=True),
           "simd": simdex.simd_info(), "threads": simdex.get_num_threads()}
    sq = None
    try:
        import faiss

        sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq.train(x)
        sq.add(x)
        out["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        pass
    del x

    def single(index, count, start):
        return median(timings(lambda i: index.search(q[start + i], K), count, warmup=1))

    keys = ("bandwidth", "single_int8", "single_float32", "floor_ratio", "single_ratio", "batch_int8",
            "batch_float32", "batch_ratio")
    r = {k: [] for k in keys}
    for i in range(rounds):
        # Median against median: three single-pass bandwidth readings, nine single queries.
        bw = median([simdex._core.read_bandwidth(1 << 30, 1) for _ in range(3)])
        s8 = single(i8, 9, 20 * i)
        sf = single(f32, 5, 20 * i + 10)
        b8 = median(timings(lambda _: i8.search(q, K), 1, warmup=1 if i == 0 else 0))
        bf = median(timings(lambda _: f32.search(q, K), 1, warmup=1 if i == 0 else 0))
        for k, v in zip(keys, (bw, s8, sf, s8 / (n * d / bw), sf / s8, b8, bf, bf / b8)):
            r[k].append(v)
    out.update({k: median(v) for k, v in r.items()})
    out["rounds"] = rounds
    if sq is not None:
        # faiss SQ8 scores each query on its own (decoding every code), so its queries/s do not depend on the
        # batch size: 100 of the 1000 queries keep the run to a minute or so at 1M.
        out["single_faiss"] = median(timings(lambda i: sq.search(q[500 + i : 501 + i], K), 5, warmup=1))
        b8 = median(timings(lambda _: i8.search(q, K), 1, warmup=0))
        t = median(timings(lambda _: sq.search(q[:100], K), 1, warmup=0))
        out["batch_faiss_qps"] = 100 / t
        out["faiss_ratio"] = (N_QUERIES / b8) / out["batch_faiss_qps"]
    return out


def run_worker(args: list) -> dict:
    res = subprocess.run([sys.executable, __file__, "--worker", *map(str, args)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- the report -----------------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(n: int, d: int, rounds: int) -> str:
    rec = {name: run_worker(["recall", name]) for name in ("real-minilm", "clustered")}
    sp = run_worker(["speed", n, d, rounds])
    for name, r in {**rec, "speed": sp}.items():
        print(name, json.dumps(r), file=sys.stderr)
    lines = []
    if "memory_int8" in sp:
        mem, f32 = sp["memory_int8"], sp["memory_float32"]
        body = mem["vectors"] + mem["calibration"] + mem["metadata"]
        lines += [f"Memory, n = {n:,}, d = {d} (no originals):", "",
                  "| part | bytes | per n x dim | target | met |", "|---|---|---|---|---|",
                  f"| codes + calibration + metadata | {body:,} | {body / (n * d):.4f} | <= 1.05 | "
                  f"{mark(body <= 1.05 * n * d)} |",
                  f"| ids + id map | {mem['ids']:,} | {mem['ids'] / n:.1f} bytes per vector | | |",
                  f"| float32 index, all parts | {sum(f32.values()):,} | {sum(f32.values()) / sum(mem.values()):.2f}x "
                  "the whole int8 index | | |", ""]
    lines += ["Recall@10 against the exact float32 index, 1,000 queries:", "",
              "| data | int8 | rescore=1 | rescore=2 | rescore=4 | faiss SQ8 | targets met |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rec.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        ok = r["recall_rescore_0"] >= 0.99 and r["recall_rescore_4"] >= 0.999
        lines.append(f"| {name} ({r['n']:,} x {r['d']}) | {r['recall_rescore_0']:.4f} | {r['recall_rescore_1']:.4f} "
                     f"| {r['recall_rescore_2']:.4f} | {r['recall_rescore_4']:.4f} | "
                     f"{r.get('recall_faiss_sq8', float('nan')):.4f} | "
                     f"{mark(ok) if name == 'real-minilm' else '(reported)'} |")
    lines.append("")
    if "single_int8" not in sp:
        lines.append("speed: " + sp.get("error", "not measured"))
        return "\n".join(lines)
    floor_ms = n * d / sp["bandwidth"] * 1e3
    lines += [
        f"Speed, n = {n:,}, d = {d}, k = {K}, {sp['threads']} threads, SIMD {sp['simd']['active']} (int8 kernels: "
        f"{sp['simd']['int8']}); {sp['rounds']} interleaved rounds, each ratio taken within a round, medians "
        f"shown. RAM read bandwidth {sp['bandwidth'] / 1e9:.1f} GB/s (all threads, the median of three readings "
        f"each round), int8 RAM floor {floor_ms:.1f} ms.", "",
        "| measure | int8 | float32 | faiss SQ8 | ratio | target | met |", "|---|---|---|---|---|---|---|",
        f"| single query (ms) | {sp['single_int8'] * 1e3:.1f} | {sp['single_float32'] * 1e3:.1f} | "
        f"{sp.get('single_faiss', float('nan')) * 1e3:.1f} | float32 / int8 = {sp['single_ratio']:.2f} | >= 3 | "
        f"{mark(sp['single_ratio'] >= 3)} |",
        f"| single query / int8 RAM floor | {sp['floor_ratio']:.2f} | | | | <= 1.3 | {mark(sp['floor_ratio'] <= 1.3)} |",
        f"| 1000-query batch (queries/s) | {N_QUERIES / sp['batch_int8']:.0f} | {N_QUERIES / sp['batch_float32']:.0f} | "
        f"{sp.get('batch_faiss_qps', float('nan')):.0f} | float32 / int8 = {sp['batch_ratio']:.2f} | >= 2 | "
        f"{mark(sp['batch_ratio'] >= 2)} |",
    ]
    if "faiss_ratio" in sp:
        lines.append(f"| batch vs faiss SQ8 (queries/s) | | | | int8 / faiss = {sp['faiss_ratio']:.1f} | >= 7 | "
                     f"{mark(sp['faiss_ratio'] >= 7)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs="+")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.worker:
        kind, *rest = args.worker
        res = measure_recall(rest[0]) if kind == "recall" else measure_speed(*map(int, rest))
        print(json.dumps(res))
        return
    print(report(args.n, args.d, args.rounds))


# -- pytest-benchmark -----------------------------------------------------------------------------------------

N_BENCH = int(os.environ.get("SIMDEX_BENCH_N", "1000000"))
D_BENCH = 384
_best: dict = {}  # fastest round of each benchmark: the least disturbed by other jobs on a shared machine


@pytest.fixture(scope="module")
def speed_data():
    import simdex

    x, q = unit_rows(N_BENCH, D_BENCH, 0), unit_rows(N_QUERIES, D_BENCH, 1)
    i8 = simdex.Index(D_BENCH, "ip", dtype="int8")
    i8.add(x)
    f32 = simdex.Index(D_BENCH, "ip")
    f32.add(x)
    return x, q, i8, f32


def _run(benchmark, name, fn, rounds):
    benchmark.group = name.split()[0]
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)
    _best[name] = benchmark.stats.stats.min


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_single_query(benchmark, speed_data, dtype):
    _, q, i8, f32 = speed_data
    index = i8 if dtype == "int8" else f32
    _run(benchmark, f"single {dtype}", lambda: index.search(q[7], K), rounds=25)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_batch(benchmark, speed_data, dtype):
    _, q, i8, f32 = speed_data
    index = i8 if dtype == "int8" else f32
    _run(benchmark, f"batch {dtype}", lambda: index.search(q, K), rounds=3)


def test_batch_faiss_sq8(benchmark, speed_data):
    faiss = pytest.importorskip("faiss")
    x, q, _, _ = speed_data
    sq = faiss.IndexScalarQuantizer(D_BENCH, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(x)
    sq.add(x)
    _run(benchmark, "batch faiss_sq8", lambda: sq.search(q, K), rounds=3)


def test_speed_targets(speed_data):
    import simdex

    need = {"single int8", "single float32", "batch int8", "batch float32"}
    if not need <= set(_best):
        pytest.skip("run the whole file (the speed benchmarks fill in the timings)")
    # Sequential pytest-benchmark runs see the machine's load change between them, so the targets are checked on
    # each benchmark's fastest round; `python bench/bench_int8.py` gives interleaved medians.
    floor = N_BENCH * D_BENCH / simdex._core.read_bandwidth(1 << 30, 5)
    assert _best["single float32"] / _best["single int8"] >= 3
    if N_BENCH * D_BENCH >= 256 << 20:  # smaller codes stay in the last-level cache: no RAM floor to compare with
        assert _best["single int8"] / floor <= 1.3
    assert _best["batch float32"] / _best["batch int8"] >= 2
    if "batch faiss_sq8" in _best:
        assert _best["batch faiss_sq8"] / _best["batch int8"] >= 7


def test_memory_target(speed_data):
    _, _, i8, _ = speed_data
    mem = i8.memory_usage(detail=True)
    assert mem["vectors"] + mem["calibration"] + mem["metadata"] <= 1.05 * N_BENCH * D_BENCH


@pytest.mark.parametrize("name", ["real-minilm", "clustered"])
def test_recall_targets(name):
    r = measure_recall(name)
    if "error" in r:
        pytest.skip(r["error"])
    print(json.dumps(r))
    if name == "real-minilm":
        assert r["recall_rescore_0"] >= 0.99
        assert r["recall_rescore_4"] >= 0.999


if __name__ == "__main__":
    main()
