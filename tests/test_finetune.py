"""simdex.finetune on a synthetic task a tiny, randomly initialized BERT cannot solve before training: queries and
their documents share no words, only a hidden word-to-word mapping that the training pairs teach. The held-out
queries combine the same words differently, so a gain on them is learned, not memorized."""

import json
import os

import numpy as np
import pytest

for _module in ("torch", "sentence_transformers", "transformers", "datasets", "accelerate"):
    pytest.importorskip(_module, reason=f"finetune tests need {_module} (pip install simdex[encode])")

import simdex  # noqa: E402
from simdex.quality.finetune import _load, finetune, split_queries  # noqa: E402

CONCEPTS, DOCS, FILLER = 24, 100, 12


def _task(seed: int = 7):
    """(corpus records, query records): each document holds the d-words of 3 concepts plus filler; its query holds
    the q-words of the same 3 concepts in another order."""
    rng = np.random.default_rng(seed)
    corpus, queries, seen = [], [], set()
    while len(corpus) < DOCS:
        concepts = tuple(sorted(rng.choice(CONCEPTS, 3, replace=False).tolist()))
        if concepts in seen:
            continue
        seen.add(concepts)
        words = [f"dw{c}" for c in concepts] + [f"fw{f}" for f in rng.choice(FILLER, 3, replace=False)]
        doc_id = f"d{len(corpus)}"
        corpus.append({"id": doc_id, "text": " ".join(rng.permutation(words))})
        queries.append({"query": " ".join(rng.permutation([f"qw{c}" for c in concepts])), "doc_id": doc_id})
    return corpus, queries


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer BERT with mean pooling, built from a local config and vocabulary: no download."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    import torch

    root = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"{p}{i}" for p in ("qw", "dw") for i in
                                                               range(CONCEPTS)] + [f"fw{i}" for i in range(FILLER)]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    BertModel(config).save_pretrained(root / "bert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # transformers >= 5
    if len(tokenizer) != len(vocab):  # older releases read the vocabulary from a file
        tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    assert tokenizer("qw1 dw2")["input_ids"][1:3] == [vocab.index("qw1"), vocab.index("dw2")]
    tokenizer.save_pretrained(root / "bert")
    transformer = Transformer(str(root / "bert"), max_seq_length=16)
    st = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                             device="cpu")
    st.save(str(root / "st"))
    return str(root / "st")


def _run(tiny_model, out, **kwargs):
    corpus, queries = _task()
    args = dict(corpus=corpus, eval_split=0.3, epochs=3, batch_size=16, learning_rate=1e-2, output_dir=out,
                seed=3, progress=False)
    args.update(kwargs)
    return finetune(tiny_model, queries, **args)


def test_finetune_improves_heldout_recall_deterministically(tiny_model, tmp_path):
    a = _run(tiny_model, tmp_path / "a")
    # the base model ranks at about chance (10 of 100 documents in the top 10); training must lift that far
    assert a.before["recall@10"] < 0.35
    assert a.after["recall@10"] >= a.before["recall@10"] + 0.3, a.table()
    assert a.after["mrr@10"] >= a.before["mrr@10"] + 0.2, a.table()
    assert a.hard_negatives > 0 and a.train_examples == len(a.train_queries)
    # held-out queries never reach the trainer
    assert not set(a.train_queries) & set(a.heldout_queries) and len(a.heldout_queries) == 30
    # the saved model is the best epoch's
    best = max(a.history, key=lambda h: (h["recall@10"], h["mrr@10"]))
    assert a.after["recall@10"] == best["recall@10"] and a.best_epoch == best["epoch"]

    b = _run(tiny_model, tmp_path / "b")
    def metrics(r):
        return [{k: v for k, v in h.items() if k != "eval seconds"} for h in r.history]

    assert metrics(b) == metrics(a)
    assert b.fingerprint["weights_sha256"] == a.fingerprint["weights_sha256"]

    # the folder loads offline through simdex.Encoder with its own fingerprint, and scores as evaluated
    enc = simdex.Encoder(str(tmp_path / "a"), device="cpu")
    base = simdex.Encoder(tiny_model, device="cpu")
    assert enc.fingerprint["weights_sha256"] == a.fingerprint["weights_sha256"]
    assert enc.fingerprint["weights_sha256"] != base.fingerprint["weights_sha256"]
    assert enc.fingerprint["model"] == os.path.abspath(tmp_path / "a")
    corpus, queries = _task()
    held = [q for q in queries if q["query"] in set(a.heldout_queries)]
    row = simdex.evaluate(corpus, held, models=[enc], variants=["float32"]).rows[0]
    assert row["recall@10"] == pytest.approx(a.after["recall@10"], abs=1e-9)


@pytest.mark.parametrize("loss", ["symmetric", "gist"])
def test_the_other_losses_learn_the_task_too(tiny_model, tmp_path, loss):
    r = _run(tiny_model, tmp_path / loss, loss=loss, epochs=2)
    assert r.after["recall@10"] >= r.before["recall@10"] + 0.3, r.table()


def test_cli_without_hard_negatives(tiny_model, tmp_path, capsys):
    from simdex.cli import main

    corpus, queries = _task()
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["finetune", "--corpus", str(tmp_path / "corpus.jsonl"), "--queries", str(tmp_path / "queries.jsonl"),
                 "--model", tiny_model, "--out", str(tmp_path / "m"), "--epochs", "1", "--batch-size", "16",
                 "--lr", "1e-2", "--hard-negatives", "0", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "0 hard negatives" in out and "held-out Recall@10" in out
    assert os.path.isfile(tmp_path / "m" / "modules.json")
    # a bad argument is refused before any model loads
    assert main(["finetune", "--corpus", "c", "--queries", "q", "--out", "o", "--batch-size", "1"]) == 2
    assert main(["finetune", "--corpus", "c", "--queries", "q", "--out", "o", "--loss", "triplet"]) == 2
    with pytest.raises(SystemExit):
        main(["finetune", "--corpus", "c", "--queries", "q", "--out", "o", "--eval-split", "1.5"])


def test_plain_pairs_make_their_own_corpus():
    doc_ids, texts, queries, relevant = _load([("q1", "alpha"), ("q2", "beta"), ("q1", "gamma"), ("q3", "alpha")],
                                              None)
    assert texts == ["alpha", "beta", "gamma"] and queries == ["q1", "q2", "q3"]
    assert relevant == [[doc_ids[0], doc_ids[2]], [doc_ids[1]], [doc_ids[0]]]


def test_split_is_seeded_and_disjoint():
    tr, ho = split_queries(10, 0.3, seed=5)
    assert len(ho) == 3 and len(tr) == 7 and not set(tr) & set(ho)
    assert np.array_equal(split_queries(10, 0.3, seed=5)[1], ho)
    assert len(split_queries(2, 0.01, 0)[1]) == 1  # always at least one query on each side


@pytest.mark.parametrize("kwargs,match", [
    (dict(eval_split=0), "eval_split"), (dict(eval_split=1.0), "eval_split"), (dict(epochs=0), "epochs"),
    (dict(batch_size=1), "batch_size"), (dict(hard_negatives=-1), "hard_negatives"),
    (dict(learning_rate=0), "learning_rate"), (dict(loss="triplet"), "loss"),
])
def test_bad_arguments_fail_before_loading_a_model(kwargs, match, tmp_path):
    corpus, queries = _task()
    with pytest.raises(ValueError, match=match):
        finetune("no-such-model", queries, corpus=corpus, output_dir=tmp_path, **kwargs)


def test_bad_pairs(tmp_path):
    corpus, queries = _task()
    with pytest.raises(ValueError, match="not in the corpus"):
        finetune("x", [{"query": "q", "doc_id": "nope"}, *queries], corpus=corpus, output_dir=tmp_path)
    with pytest.raises(ValueError, match="needs corpus"):
        path = tmp_path / "q.jsonl"
        path.write_text("\n".join(json.dumps(q) for q in queries))
        finetune("x", str(path), output_dir=tmp_path)
    with pytest.raises(ValueError, match="pair"):
        finetune("x", [("only one",)], output_dir=tmp_path)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        finetune("x", [("q", "t")], output_dir=tmp_path)
