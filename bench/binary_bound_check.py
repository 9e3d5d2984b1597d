"""Would a certified-exact search (as int8's exact=True) pay for binary codes? Counts, per real-minilm query, the
rows whose upper bound (binary score + ||q|| * ||x - decoded x||, stored per vector) reaches the exact 10th score:
every one of them would have to be rescored.

    .venv/bin/python bench/binary_bound_check.py
"""
import numpy as np

x = np.load('../shared/data/real-minilm/base_f16.npy').astype(np.float32)
q = np.load('../shared/data/real-minilm/queries_f16.npy').astype(np.float32)[:200]
x /= np.linalg.norm(x, axis=1, keepdims=True)
q /= np.linalg.norm(q, axis=1, keepdims=True)
c = x.mean(0)
a = np.abs(x - c).mean(0)
dec = c + a * np.where(x > c, 1.0, -1.0)  # the binary index's decoded rows (docs/int8.md, "Binary codes")
E = np.linalg.norm(x - dec, axis=1)  # per-vector bound on the decoding error
print(f"||x - decoded x||: median {np.median(E):.3f}, max {E.max():.3f}")
need = []
for qi in q:
    kth = np.sort(x @ qi)[-10]
    need.append(int((dec @ qi + E * np.linalg.norm(qi) >= kth).sum()))
need = np.array(need)
print(f"rows to rescore per query: median {np.median(need):.0f}, p99 {np.percentile(need, 99):.0f} of {len(x)}")
