"""Does `Index.tune` keep its promise on queries it did not see? real-minilm, 1,024 partitions (float32 and int8):
tune on the first half of the 1,000 queries for each target, then measure recall@10 of the chosen nprobe on the
other half against the same index searched exhaustively (nprobe=partitions), as tune measures it.

    .venv/bin/python bench/bench_ivf_tune.py
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(__file__))
import bench_ivf  # noqa: E402

import simdex  # noqa: E402


def main() -> None:
    x, q = bench_ivf.real_minilm()
    tune_q, held = q[:500], q[500:]
    print(f"cpu: {bench_ivf._cpu()}")
    for dtype in ("float32", "int8"):
        ix = simdex.Index(384, dtype=dtype, partitions=1024)
        ix.add(x)
        truth = ix.search(held, 10, nprobe=1024).ids
        for target in (0.9, 0.95, 0.99):
            curve = ix.tune(tune_q, target_recall=target, k=10)
            got = bench_ivf.recall(ix.search(held, 10).ids, truth)
            print(f"{dtype:8s} target {target:.2f}: nprobe {ix.nprobe:4d} ({len(curve)} settings measured), "
                  f"recall on the held-out half {got:.4f} (off by {got - target:+.4f})")


if __name__ == "__main__":
    main()
