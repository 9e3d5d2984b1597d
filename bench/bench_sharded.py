"""Sharded search (threads and Ray backends) against one in-process index, in the same run; optionally
distributed ingest against simdex.ingest.

    python bench/bench_sharded.py                          # 4 shards, 1M x 384 total, 100-query batches, k = 10
    python bench/bench_sharded.py --n 200000 --runs 5      # smaller
    python bench/bench_sharded.py --ingest 4000            # also ingest 4,000 documents both ways (needs the encoder)

Memory: the single index holds the 1M x 384 float32 vectors (1.5 GB); the shards are built next to it, saved, freed,
and opened memory-mapped by both backends, so they share one copy in the page cache. Peak about 3 GB while
building, then 1.5 GB + the page cache.

Timing: every run times each engine once on the same query batch, in rotation, so a machine whose load changes
during the run slows them alike; the table reports medians and the ratio to the single index. The ids (and scores)
of every engine are checked equal to the single index's on every batch. A local Ray is started on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keeps Ray's node address on 127.0.0.1

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simdex
from _common import median
from simdex.shard import shard_of

K = 10


def build(n: int, d: int, shards: int, folder: str) -> simdex.Index:
    """The single index in memory, and the same vectors as `shards` files routed by id (then freed)."""
    rng = np.random.default_rng(0)
    single = simdex.Index(d)
    parts = [simdex.Index(d) for _ in range(shards)]
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), d), dtype=np.float32)
        ids = np.arange(start, start + len(block), dtype=np.int64)
        single.add(block, ids)
        route = shard_of(ids, shards)
        for s, part in enumerate(parts):
            part.add(block[route == s], ids[route == s])
    simdex.ShardedIndex(parts).save(folder)
    del parts
    return single


def _start_ray() -> str:
    """A local Ray on 127.0.0.1 with a small object store; returns its temp folder (removed by the caller)."""
    import ray

    tmp = tempfile.mkdtemp(prefix="simdex-bench-ray-", dir="/tmp")
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=200 * 1024**2,
             _node_ip_address="127.0.0.1", _temp_dir=tmp, log_to_driver=False, configure_logging=False)
    return tmp


def search_table(args: argparse.Namespace, folder: str, single: simdex.Index) -> dict:
    import ray

    engines = {"single": single}
    engines["threads"] = simdex.ShardedIndex.open(folder, "threads", mmap=True, check_ids=False)
    engines["threads-par"] = simdex.ShardedIndex.open(folder, "threads", mmap=True, check_ids=False,
                                                      max_workers=args.shards)
    ray_tmp = _start_ray()
    engines["ray"] = simdex.ShardedIndex.open(folder, "ray", mmap=True, check_ids=False)
    rng = np.random.default_rng(1)
    times: dict = {name: [] for name in engines}
    for run in range(args.warmup + args.runs):
        q = rng.standard_normal((args.batch, args.d), dtype=np.float32)
        want = None
        for name, engine in engines.items():
            t0 = time.perf_counter()
            got = engine.search(q, K)
            dt = time.perf_counter() - t0
            if want is None:
                want = got
            elif not (np.array_equal(got.ids, want.ids) and np.array_equal(got.scores, want.scores)):
                raise AssertionError(f"{name}: results differ from the single index on batch {run}")
            if run >= args.warmup:
                times[name].append(dt)
    for name in ("threads", "threads-par", "ray"):
        engines[name].close()
    ray.shutdown()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    base = median(times["single"])
    return {name: {"median_s": median(t), "ratio": median(t) / base, "runs": len(t)} for name, t in times.items()}


def overhead_table(args: argparse.Namespace) -> dict:
    """Per-batch cost of the protocol itself: 4 tiny shards, where the scan is negligible."""
    import ray

    d, n = args.d, 4000
    tmp = tempfile.mkdtemp(prefix="simdex-bench-overhead-")
    try:
        single = build(n, d, args.shards, tmp)
        ray_tmp = _start_ray()
        engines = {"single": single, "threads": simdex.ShardedIndex.open(tmp, "threads"),
                   "ray": simdex.ShardedIndex.open(tmp, "ray")}
        rng = np.random.default_rng(2)
        times: dict = {name: [] for name in engines}
        for run in range(60):
            q = rng.standard_normal((args.batch, d), dtype=np.float32)
            for name, engine in engines.items():
                t0 = time.perf_counter()
                engine.search(q, K)
                if run >= 10:
                    times[name].append(time.perf_counter() - t0)
        engines["threads"].close()
        engines["ray"].close()
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = median(times["single"])
    return {name: {"median_ms": 1e3 * median(t), "overhead_ms": 1e3 * (median(t) - base)} for name, t in times.items()}


def ingest_table(args: argparse.Namespace) -> dict:
    """Documents per second: simdex.ingest (one process) against distributed_ingest (local Ray), same corpus."""
    if not hasattr(simdex, "Encoder") or not hasattr(simdex, "ingest"):
        return {"skipped": "simdex.Encoder / simdex.ingest are not in this build"}
    import ray

    tmp = tempfile.mkdtemp(prefix="simdex-bench-ingest-")
    try:
        corpus = os.path.join(tmp, "corpus.jsonl")
        rng = np.random.default_rng(3)
        words = [f"w{i}" for i in range(5000)]
        with open(corpus, "w") as f:
            f.writelines(json.dumps({"id": i, "text": " ".join(rng.choice(words, 30))}) + "\n"
                         for i in range(args.ingest))
        enc = simdex.Encoder(device="cpu")
        t0 = time.perf_counter()
        simdex.ingest(corpus, os.path.join(tmp, "one.simdex"), encoder=enc)
        single_s = time.perf_counter() - t0
        del enc
        ray_tmp = _start_ray()
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        cpus = os.cpu_count() or 1
        runs = {}
        # One actor with every core, like simdex.ingest's one process; then one single-core actor per core.
        for label, workers, per in (("1 actor x all cores", 1, cpus), (f"{cpus} actors x 1 core", cpus, 1)):
            report = simdex.distributed_ingest(corpus, os.path.join(tmp, "dist"), encoder="all-MiniLM-L6-v2",
                                               num_shards=args.shards, id_field="id", num_workers=workers,
                                               num_cpus_per_worker=per, overwrite=True)
            runs[label] = {"docs_per_s": report.docs_per_s, "seconds": report.seconds,
                           "time_ratio": report.seconds / single_s}
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"documents": args.ingest, "simdex.ingest": {"docs_per_s": args.ingest / single_s, "seconds": single_s},
            "distributed_ingest": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in all shards (0: skip the search part)")
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--ingest", type=int, default=0, help="documents for the ingest comparison (0: skip it)")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args(argv)

    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "simd": simdex.simd_info()["active"], "load_avg": os.getloadavg()},
                 "config": {"n": args.n, "d": args.d, "shards": args.shards, "batch": args.batch, "k": K}}
    if args.n:
        tmp = tempfile.mkdtemp(prefix="simdex-bench-shards-")
        try:
            t0 = time.perf_counter()
            single = build(args.n, args.d, args.shards, tmp)
            print(f"built {args.n:,} x {args.d} (single + {args.shards} shard files) in {time.perf_counter() - t0:.1f} s")
            out["search"] = search_table(args, tmp, single)
            del single
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"\nsearch, {args.batch} queries x k={K}, {args.n:,} x {args.d} in {args.shards} shards "
              f"(median of {args.runs}; ids identical on every batch):")
        for name, row in out["search"].items():
            print(f"  {name:<12} {row['median_s'] * 1e3:9.1f} ms   {row['ratio']:.3f}x single")
        out["overhead"] = overhead_table(args)
        print(f"\nprotocol overhead per {args.batch}-query batch (4 x 1,000 vectors):")
        for name, row in out["overhead"].items():
            print(f"  {name:<12} {row['median_ms']:7.2f} ms   +{row['overhead_ms']:.2f} ms")
    if args.ingest:
        out["ingest"] = ingest_table(args)
        print(f"\ningest: {out['ingest']}")
    out["machine"]["load_avg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
