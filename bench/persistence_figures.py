"""Open time and memory of a saved index: full load versus memory-mapped, each in a fresh process.

    python bench/persistence_figures.py [--n 1000000] [--dim 384] [--path /tmp/simdex-1m.sdx]

Builds the index file once (kept for later runs), then for each mode starts a new interpreter that loads it,
reports the load time and the process's resident memory (anonymous = private heap, file = mapped pages of the
index file, which are page cache shared with other processes), runs one query and reports them again. The file
is in the page cache (just written or read), so these are warm-cache figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

PROBE = r"""
import json, sys, time
import numpy as np
import simdex

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024  # MiB
    return out

path, mode = sys.argv[1], sys.argv[2]
before = status()
t0 = time.perf_counter()
index = simdex.load(path, mmap=(mode == "mmap"))
t_load = time.perf_counter() - t0
after_load = status()
q = np.random.default_rng(0).standard_normal(index.dim).astype(np.float32)
t0 = time.perf_counter()
index.search(q, 10)
t_first = time.perf_counter() - t0
t0 = time.perf_counter()
index.search(q, 10)
t_second = time.perf_counter() - t0
print(json.dumps(dict(mode=mode, size=len(index), load_s=round(t_load, 4), first_search_s=round(t_first, 4),
                      second_search_s=round(t_second, 4), rss_before_mib=before, rss_after_load_mib=after_load,
                      rss_after_search_mib=status())))
"""


def build(path: str, n: int, dim: int) -> float:
    import simdex

    rng = np.random.default_rng(0)
    index = simdex.Index(dim)
    for start in range(0, n, 100_000):
        index.add(rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32))
    t0 = time.perf_counter()
    index.save(path)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--path", default="/tmp/simdex-1m-384.sdx")
    args = ap.parse_args()
    if not os.path.exists(args.path):
        print(json.dumps({"save_s": round(build(args.path, args.n, args.dim), 3)}))
    print(json.dumps({"file_mib": os.path.getsize(args.path) // 2**20}))
    for mode in ("full", "mmap", "full", "mmap"):  # twice each: the first full load also warms the page cache
        out = subprocess.run([sys.executable, "-c", PROBE, args.path, mode], capture_output=True, text=True,
                             check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
