"""The `simdex` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import simdex

    if args.path:
        index = simdex.load(args.path)
        print(f"{args.path}: {index!r}, {index.memory_usage():,} bytes in memory")
    print(f"simdex {simdex.__version__}, SIMD {simdex.simd_info()}, threads {simdex.get_num_threads()}")
    return 0


def _cmd_example(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    import simdex

    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    queries = data[:100] + 0.1 * rng.standard_normal((100, args.dim), dtype=np.float32)
    index = simdex.Index(args.dim)
    index.add(data)
    t0 = time.perf_counter()
    scores, ids = index.search(queries, k=10)
    dt = time.perf_counter() - t0
    hit = float(np.mean(ids[:, 0] == np.arange(100)))
    print(f"{len(index):,} x {args.dim} vectors; 100 noisy copies of stored vectors searched in {dt * 1e3:.1f} ms; "
          f"top-1 finds the original for {hit:.0%}")
    print("first query:", list(zip(ids[0, :3].tolist(), np.round(scores[0, :3], 3).tolist())))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="simdex", description="Fast exact vector search.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="show the SIMD level in use, or describe an index file")
    p.add_argument("path", nargs="?")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("example", help="build an index of random vectors and search it")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=384)
    p.set_defaults(func=_cmd_example)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
