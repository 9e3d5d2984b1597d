"""Writes seed index files for the loader fuzz target into the folder given (default fuzz/corpus): a few of its
own, and every seed of tests/structured_fuzz.py (each kind of file the loader knows)."""

import os
import sys

import numpy as np
import simdex


def main(folder: str = "fuzz/corpus") -> None:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    empty = simdex.Index(3, metric="ip")
    small = simdex.Index(4)
    small.add(rng.standard_normal((5, 4)).astype(np.float32))
    holes = simdex.Index(8, metric="ip")
    holes.add(rng.standard_normal((20, 8)).astype(np.float32), np.arange(20) * 3 + 1)
    holes.remove([4, 7, 58])
    holes.metadata = {"fingerprint": {"model": "m", "dim": 8}, "text": "é"}
    ivf = simdex.Index(6, dtype="int8", keep_originals=True, partitions=4)
    ivf.add(rng.standard_normal((40, 6)).astype(np.float32))
    ivf.remove([3, 9])
    for name, index in [("empty", empty), ("small", small), ("holes", holes), ("ivf", ivf)]:
        index.save(os.path.join(folder, name + ".sdx"))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import structured_fuzz

    for i, data in enumerate(structured_fuzz.seed_files()):
        with open(os.path.join(folder, f"structured_{i}.sdx"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(*sys.argv[1:])
