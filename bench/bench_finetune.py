"""Fine-tuning all-MiniLM-L6-v2 on a labeled set: simdex.finetune against a plain sentence-transformers MNRL run,
both scored on the same held-out queries (never trained on) with simdex.evaluate.

    python bench/bench_finetune.py --data ../shared/data/dev-pydocs-linuxman --out /tmp/ft-bench --run both
    python bench/bench_finetune.py --data ... --out /tmp/ft-bench --run simdex   # or plain; then --run report

The plain recipe: MultipleNegativesRankingLoss on (query, document) pairs, the same epochs (default 2), batch 32,
lr 5e-5, the trainer's defaults otherwise (no warmup, no hard negatives, no early stopping, the last epoch's
weights). simdex's recipe: `simdex.finetune` (one hard negative per query mined with the base model over the corpus,
the loss both ways (`--simdex-loss`, default symmetric), no duplicate texts in a batch, 10% warmup, per-epoch
held-out evaluation keeping the best epoch).
Each run writes <out>/<run>.json; `--run report` prints the comparison from them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

EPOCHS, BATCH, LR, HELD_OUT, SEED = 2, 32, 5e-5, 0.4, 0
METRICS = ("recall@1", "recall@10", "mrr@10", "ndcg@10")


def run_simdex(corpus: str, queries: str, out: str, lr: float = LR, epochs: int = EPOCHS,
               loss: str = "symmetric", seed: int = SEED) -> dict:
    import simdex

    t = time.perf_counter()
    r = simdex.finetune("all-MiniLM-L6-v2", queries, corpus=corpus, eval_split=HELD_OUT, epochs=epochs,
                        batch_size=BATCH, learning_rate=lr, hard_negatives=True, loss=loss,
                        output_dir=os.path.join(out, "simdex"),
                        seed=seed)
    print(r.table(), flush=True)
    return {"before": r.before, "after": r.after, "history": r.history, "best_epoch": r.best_epoch,
            "train_seconds": r.train_seconds, "wall_seconds": time.perf_counter() - t,
            "train_queries": len(r.train_queries), "heldout_queries": len(r.heldout_queries),
            "hard_negatives": r.hard_negatives, "weights_sha256": r.fingerprint["weights_sha256"], "epochs": epochs,
            "loss": loss, "cpu": cpu_name()}


def cpu_name() -> str:
    import subprocess

    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line), "?")


def run_plain(corpus: str, queries: str, out: str, epochs: int = EPOCHS, seed: int = SEED) -> dict:
    import simdex
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from simdex.quality.evaluate import load_corpus, load_queries
    from simdex.quality.finetune import split_queries
    from simdex.text.encoder import _resolve_model

    doc_ids, texts, _ = load_corpus(corpus)
    q_texts, relevant = load_queries(queries)
    train_at, held_at = split_queries(len(q_texts), HELD_OUT, seed)  # the split simdex.finetune makes
    text_of = dict(zip(doc_ids, texts))
    pairs = {"anchor": [], "positive": []}
    for i in train_at:
        for d in relevant[i]:
            pairs["anchor"].append(q_texts[i])
            pairs["positive"].append(text_of[d])
    st = SentenceTransformer(_resolve_model("all-MiniLM-L6-v2")[1], device="cpu")
    folder = os.path.join(out, "plain")
    args = SentenceTransformerTrainingArguments(output_dir=os.path.join(out, "plain-scratch"), num_train_epochs=epochs,
                                                per_device_train_batch_size=BATCH, learning_rate=LR, seed=seed,
                                                save_strategy="no", report_to="none", use_cpu=True)
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=Dataset.from_dict(pairs),
                                         loss=MultipleNegativesRankingLoss(st))
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    st.save(folder)
    held = [{"query": q_texts[i], "doc_ids": relevant[i]} for i in held_at]
    enc = simdex.Encoder(folder, device="cpu")
    row = simdex.evaluate(list(zip(doc_ids, texts)), held, models=[enc], variants=["float32"], progress=True).rows[0]
    after = {m: float(row[m]) for m in METRICS}
    print(f"plain MNRL: {after}, {train_s:.0f} s training", flush=True)
    return {"after": after, "train_seconds": train_s, "train_queries": len(train_at), "heldout_queries": len(held),
            "epochs": epochs, "cpu": cpu_name()}


def sample(corpus: str, queries: str, n_queries: int, n_docs: int) -> tuple:
    """(corpus records, query records): `n_queries` queries drawn with the seed, their documents, and other
    documents drawn with the seed up to `n_docs` in all."""
    import numpy as np
    from simdex.quality.evaluate import _read_jsonl

    docs, qs = _read_jsonl(corpus), _read_jsonl(queries)
    rng = np.random.default_rng(SEED)
    qs = [qs[i] for i in sorted(rng.choice(len(qs), min(n_queries, len(qs)), replace=False))]
    labeled = {d for q in qs for d in q.get("doc_ids", [q.get("doc_id")])}
    others = [d for d in docs if d["id"] not in labeled]
    extra = max(0, n_docs - len(labeled))
    keep = labeled | {others[i]["id"] for i in rng.choice(len(others), min(extra, len(others)), replace=False)}
    return [d for d in docs if d["id"] in keep], qs


def report(out: str) -> int:
    runs = {}
    for name in ("simdex", "plain"):
        path = os.path.join(out, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[name] = json.load(f)
    if "simdex" not in runs:
        print("no simdex.json yet", file=sys.stderr)
        return 1
    s = runs["simdex"]
    rows = [("base all-MiniLM-L6-v2", s["before"], None)]
    if "plain" in runs:
        rows.append((f"plain MNRL ({runs['plain'].get('epochs', EPOCHS)} ep)", runs["plain"]["after"],
                     runs["plain"]["train_seconds"]))
    rows.append((f"simdex.finetune (ep {s['best_epoch']})", s["after"], s["train_seconds"]))
    if s["history"] and s["history"][-1]["epoch"] != s["best_epoch"]:
        rows.append((f"  its last epoch ({s['history'][-1]['epoch']})", s["history"][-1], None))
    print(f"held-out queries: {s['heldout_queries']}, training queries: {s['train_queries']}; epochs: simdex "
          f"{s.get('epochs', EPOCHS)}; CPU: {s.get('cpu', '?')}")
    print("model".ljust(30) + "".join(m.rjust(10) for m in METRICS) + "  train min")
    for name, m, secs in rows:
        tail = f"{secs / 60:10.1f}" if secs is not None else "         -"
        print(name.ljust(30) + "".join(f"{m[k]:10.3f}" for k in METRICS) + tail)
    for name, m, _ in rows[1:]:
        print(f"{name.strip()}: Recall@10 {100 * (m['recall@10'] - s['before']['recall@10']):+.1f} points, "
              f"MRR@10 {100 * (m['mrr@10'] - s['before']['mrr@10']):+.1f} points over the base model")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                  "dev-pydocs-linuxman"))
    p.add_argument("--out", default="bench-finetune")
    p.add_argument("--run", choices=["simdex", "plain", "both", "report"], default="both")
    p.add_argument("--simdex-lr", type=float, default=LR, help=f"learning rate of the simdex run (default {LR})")
    p.add_argument("--simdex-loss", default="symmetric", help="the simdex run's loss: symmetric, mnrl or gist")
    p.add_argument("--seed", type=int, default=SEED, help="the held-out split's and the training's seed")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs of both runs (default {EPOCHS})")
    p.add_argument("--sample-queries", type=int, default=0,
                   help="a seeded sample of this many queries (0: all), for a smaller, quicker run")
    p.add_argument("--sample-docs", type=int, default=0,
                   help="with --sample-queries: the sampled queries' documents plus distractors up to this many")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    corpus, queries = os.path.join(args.data, "corpus.jsonl"), os.path.join(args.data, "queries.jsonl")
    if args.sample_queries:
        corpus, queries = sample(corpus, queries, args.sample_queries, args.sample_docs)
    for name, fn in (("simdex", lambda c, q, o: run_simdex(c, q, o, args.simdex_lr, args.epochs,
                                                                            args.simdex_loss, args.seed)),
                     ("plain", lambda c, q, o: run_plain(c, q, o, args.epochs, args.seed))):
        if args.run in (name, "both"):
            result = fn(corpus, queries, args.out)
            with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                json.dump(result, f, indent=2)
    return report(args.out)


if __name__ == "__main__":
    sys.exit(main())
