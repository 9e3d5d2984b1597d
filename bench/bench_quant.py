"""Certified-exact int8 search (`search(..., exact=True)`) against the float32 index it must equal, same run.

    .venv/bin/python bench/bench_quant.py            # real-minilm: 100K x 384, 1,000 queries, k = 10

Reports: whether every query's ids equal the float32 index's (ties within float32 rounding aside, see
docs/int8.md), the largest score difference, rows rescored per query (median / p99 / max), and time per query
(single: one query per call, p50; batch: all queries in one call, median of 5) for float32, int8 and int8 exact.
Binary codes (issue 16 item 1) are not implemented yet.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402
import bench_ivf  # noqa: E402

import simdex  # noqa: E402


def main() -> None:
    simdex.set_num_threads(2)
    x, q = bench_ivf.real_minilm()
    k = 10
    f32 = simdex.Index(384)
    f32.add(x)
    i8 = simdex.Index(384, dtype="int8", keep_originals=True)
    i8.add(x)
    ref = f32.search(q, k)
    got = i8.search(q, k, exact=True)
    rescored = i8.last_exact_rescored
    same = float((got.ids == ref.ids).all(axis=1).mean())
    out = {"cpu": bench_ivf._cpu(), "queries": len(q), "k": k, "ids_equal_share": same,
           "max_score_diff": float(np.abs(got.scores - ref.scores).max()),
           "rescored_median": float(np.median(rescored)), "rescored_p99": float(np.percentile(rescored, 99)),
           "rescored_max": int(rescored.max())}
    variants = {"float32": lambda qq: f32.search(qq, k), "int8": lambda qq: i8.search(qq, k),
                "int8 exact": lambda qq: i8.search(qq, k, exact=True)}
    for name, fn in variants.items():
        single = _common.timings(lambda i: fn(q[i % len(q)][None, :]), 300, warmup=10)
        batch = _common.timings(lambda i: fn(q), 5)
        out[name] = {"single_ms_p50": 1e3 * float(np.median(single)), "batch_ms": 1e3 * _common.median(batch)}
    for name in ("int8", "int8 exact"):
        out[name]["single_vs_float32"] = out[name]["single_ms_p50"] / out["float32"]["single_ms_p50"]
        out[name]["batch_vs_float32"] = out[name]["batch_ms"] / out["float32"]["batch_ms"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
