"""Id map cost: memory per row and the time of filtered search and remove (run under two builds, alternating).
Filtered search and `in`: medians of 5 and 3 calls; remove: the median of five removals of 10,000 ids each."""
import json
import time

import numpy as np
import simdex

def med(f, r=5):
    ts = []
    for _ in range(r):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))

rng = np.random.default_rng(0)
n, d = 1_000_000, 16
x = rng.standard_normal((n, d)).astype(np.float32)
out = {}
for kind in ("auto", "random"):
    index = simdex.Index(d)
    ids = None if kind == "auto" else rng.choice(2**40, n, replace=False)
    index.add(x, ids=ids)
    all_ids = index.ids()
    out[kind + "_id_bytes_per_row"] = index.memory_usage(detail=True)["ids"] / n
    flt = rng.choice(all_ids, n // 10, replace=False)
    q = rng.standard_normal((1, d)).astype(np.float32)
    out[kind + "_filtered_search_ms"] = 1e3 * med(lambda: index.search(q, 10, filter=flt))
    out[kind + "_contains_1e5_ms"] = 1e3 * med(lambda: sum(int(i) in index for i in flt[:100000]), 3)
    gone = rng.choice(all_ids, 50_000, replace=False).reshape(5, 10_000)  # five removals of 10,000: the median
    out[kind + "_remove_10k_ms"] = 1e3 * med(lambda it=iter(gone): index.remove(next(it)))
    out[kind + "_id_bytes_after_remove"] = index.memory_usage(detail=True)["ids"] / len(index)
print(json.dumps({k: round(v, 3) for k, v in out.items()}))
