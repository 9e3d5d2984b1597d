"""The `simdex` command line: ingest, search, eval, finetune, drift, cost, info, demo.

Heavy imports (torch, matplotlib) happen inside the subcommands that need them, so `simdex cost` and
`simdex info` start instantly.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Callable, Optional, Sequence

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEMO_VARIANTS = ["float32", "int8", "int8+rescore", "pca192", "pca192+int8", "float32+bm25"]


def _number(cast: type, ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: the text as `cast`, refused (before any file is opened or model loaded) unless ok."""

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
_fraction = _number(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1")
_holdout = _number(float, lambda v: 0 <= v < 1, "a share in [0, 1)")


def _snippet_width(text: str) -> int:
    value = _positive_int(text)
    if value < 10:  # textwrap.shorten needs room for the " ..." placeholder and a word
        raise argparse.ArgumentTypeError(f"expected at least 10 characters, got {text!r}")
    return value


def _data_file(name: str) -> str:
    from importlib.resources import files

    return str(files("simdex") / "data" / name)


def _cmd_info(args: argparse.Namespace) -> int:
    import simdex

    print(f"simdex {simdex.__version__}; SIMD {simdex.simd_info()}; threads {simdex.get_num_threads()}")
    if args.path:
        index = simdex.load(args.path, mmap=True)
        size = os.path.getsize(args.path)
        print(f"{args.path}: {index!r}")
        print(f"  file {size:,} bytes")
        fp = index.fingerprint
        if isinstance(fp, dict) and fp:
            print("  fingerprint:")
            for key, value in sorted(fp.items(), key=lambda kv: str(kv[0])):
                print(f"    {key}: {value}")
        elif fp:
            print(f"  fingerprint: not a mapping ({type(fp).__name__}): {str(fp)[:200]}")
        else:
            print("  fingerprint: none (vectors not added through an encoder)")
    return 0


def _cmd_cost(args: argparse.Namespace) -> int:
    from .quality.cost import parse_price, storage_cost

    report = storage_cost(args.n, args.dim, args.dtype, args.replicas, parse_price(args.price))
    if args.json:
        import json

        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0


def _encoder(model: str, device: str):
    import simdex

    return simdex.Encoder(model, device=device)


def _cmd_ingest(args: argparse.Namespace) -> int:
    import simdex

    report = simdex.ingest(args.source, args.index, encoder=_encoder(args.model, args.device),
                           batch_size=args.batch_size, chunk_tokens=args.chunk_tokens, overlap=args.overlap)
    print(report)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    import simdex

    index = simdex.load(args.index)
    fp = index.fingerprint
    model = args.model or (fp.get("model") if isinstance(fp, dict) else None)
    if not isinstance(model, str) or not model:
        raise ValueError(f"{args.index} has no model fingerprint (its vectors were not added through an encoder), "
                         "so nothing says which model embeds the query; pass --model NAME")
    hits = index.search_text(args.query, args.k, encoder=_encoder(model, args.device))
    for rank, hit in enumerate(hits, start=1):
        text = "(no stored text)" if hit.text is None else " ".join(hit.text.split())
        snippet = textwrap.shorten(text, width=args.width, placeholder=" ...")
        print(f"{rank:>2}. {hit.score:.3f}  [{hit.doc_id}]  {snippet}")
    if not hits:
        print("no results")
    return 0


def _run_eval(corpus: str, queries: str, models: Sequence[str], variants: Sequence[str], k: int,
              json_path: Optional[str], plot_path: Optional[str], chunk_tokens: Optional[list] = None,
              overlap: int = 0, calibrate: Optional[tuple] = None, holdout: float = 0.3) -> int:
    from .quality.evaluate import evaluate

    result = evaluate(corpus, queries, models=models, variants=variants, k=k, progress=True,
                      chunk_tokens=chunk_tokens, overlap=overlap)
    print(result.table())
    min_score = None
    if calibrate is not None:
        from .quality.calibrate import calibrate as fit

        target, value = calibrate
        for row, hits in enumerate(result.hits):
            if hits is None:
                continue
            try:
                cal = fit(result, row=row, holdout=holdout, **{f"target_{target}": value})
            except ValueError as e:  # one row missing the target does not hide the others
                print(f"\ncalibration row {row}: {e}")
                continue
            print()
            print(cal)
            min_score = cal.min_score if min_score is None else min_score
    if json_path:
        result.to_json(json_path)
        print(f"JSON: {json_path}")
    if plot_path:
        print(f"plot: {result.plot(plot_path, min_score=min_score)}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    variants = [v for v in args.variants.split(",") if v]
    return _run_eval(args.corpus, args.queries, args.model or [DEFAULT_MODEL], variants, args.k, args.json, args.plot,
                     args.chunk_tokens, args.overlap, args.calibrate, args.holdout)


def _chunk_sizes(text: str) -> list:
    """argparse type: "64,128,256" (and "full" for whole documents)."""
    out: list = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() in ("full", "none"):
            out.append(None)
        elif part:
            out.append(_positive_int(part))
    if not out:
        raise argparse.ArgumentTypeError(f"expected chunk sizes like 64,128,256, got {text!r}")
    return out


def _calibration_target(text: str) -> tuple:
    """argparse type: "precision=0.9", "recall=0.8", or a bare number (a precision)."""
    name, _, value = text.rpartition("=")
    name = name.strip().lower() or "precision"
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if name not in ("precision", "recall") or not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"expected precision=P or recall=R with 0 < P, R <= 1, got {text!r}")
    return name, number


def _cmd_drift(args: argparse.Namespace) -> int:
    import simdex
    from .quality.drift import drift_report

    index = simdex.load(args.index)
    if args.new.endswith(".npy"):
        import numpy as np

        new = np.load(args.new)
        encoder = None
    else:
        from .quality.evaluate import _read_jsonl

        if args.new.endswith((".jsonl", ".jsonl.gz")):
            new = [str(r[args.text_field]) for r in _read_jsonl(args.new) if args.text_field in r]
        else:
            with open(args.new, encoding="utf-8") as f:
                new = [line.strip() for line in f if line.strip()]
        model = args.model or (index.fingerprint or {}).get("model")
        if not model:
            raise ValueError(f"{args.index} records no model; pass --model to embed {args.new}")
        encoder = _encoder(model, args.device)
    report = drift_report(index, new, encoder=encoder)
    if args.json:
        import json

        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report)
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .quality.finetune import finetune

    result = finetune(args.model, args.queries, corpus=args.corpus, eval_split=args.eval_split,
                      epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                      hard_negatives=args.hard_negatives, patience=args.patience, output_dir=args.out,
                      loss=args.loss, seed=args.seed, device=args.device)
    print(result.table())
    print(f"held-out Recall@10 {result.gain('recall@10') * 100:+.1f} points, "
          f"MRR@10 {result.gain('mrr@10') * 100:+.1f} points; model saved to {result.output_dir} "
          f"(load it with simdex.Encoder({result.output_dir!r}))")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    print("simdex demo: 1,989 Python documentation sections and 409 labeled queries (shipped with simdex),\n"
          f"model {args.model}, index variants {', '.join(DEMO_VARIANTS)}.\n")
    return _run_eval(_data_file("pydocs_corpus.jsonl.gz"), _data_file("pydocs_queries.jsonl.gz"), [args.model],
                     DEMO_VARIANTS, 10, os.path.join(args.out, "demo.json"), os.path.join(args.out, "demo.png"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simdex", description="Fast exact vector search, from text to measured results.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="embed the shipped Python-docs set, build float32/int8/PCA indexes, evaluate")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", default="simdex-demo", help="folder for demo.json and demo.png")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("ingest", help="embed documents into an index file (resumable)")
    p.add_argument("source", help="JSONL file, text file (one document per line), or folder of .txt/.md files")
    p.add_argument("index", help="index file to create or extend")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--chunk-tokens", type=_positive_int, default=None)
    p.add_argument("--overlap", type=_nonnegative_int, default=0)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("search", help="search an index built by `simdex ingest` with a text query")
    p.add_argument("index")
    p.add_argument("query")
    p.add_argument("-k", type=_positive_int, default=5)
    p.add_argument("--model", default=None, help="default: the model recorded in the index")
    p.add_argument("--device", default="auto")
    p.add_argument("--width", type=_snippet_width, default=100, help="snippet width in characters (at least 10)")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("eval", help="evaluate models x index variants on a labeled set")
    p.add_argument("--corpus", required=True, help='JSONL of {"id", "text"}')
    p.add_argument("--queries", required=True, help='JSONL of {"query", "doc_id"}')
    p.add_argument("--model", action="append", help=f"repeatable; default {DEFAULT_MODEL}")
    p.add_argument("--variants", default="float32,int8,int8+rescore",
                   help="comma-separated: float32, int8, int8+rescore[N], pcaD, rpD, ...+int8, then "
                        "...+bm25[N] (BM25 top-N pre-filter) or ...+rrf[K] (RRF fusion with BM25, rrf_k=K)")
    p.add_argument("-k", type=_positive_int, default=10)
    p.add_argument("--json", help="write the result rows as JSON here")
    p.add_argument("--plot", help="write a PNG of recall@10 against latency and bytes per vector (and chunk size), "
                                  "score distributions and recall by length here")
    p.add_argument("--chunk-tokens", type=_chunk_sizes, default=None,
                   help="sweep chunk sizes, e.g. 64,128,256 (full: whole documents); document-level recall")
    p.add_argument("--overlap", type=_nonnegative_int, default=0, help="tokens shared by neighbouring chunks")
    p.add_argument("--calibrate", type=_calibration_target, nargs="?", const=("precision", 0.5), default=None,
                   metavar="TARGET", help="print the min_score reaching precision=P or recall=R among the top-k hits "
                                          "(default precision=0.5), measured on held-out queries")
    p.add_argument("--holdout", type=_holdout, default=0.3, help="share of queries held out of the calibration")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("drift", help="compare new documents or queries with an index's reference profile")
    p.add_argument("index")
    p.add_argument("new", help="JSONL with a text field, a text file (one per line), or a .npy of vectors")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text (e.g. query)")
    p.add_argument("--model", default=None, help="default: the model recorded in the index")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_drift)

    p = sub.add_parser("finetune", help="fine-tune a sentence-transformers model on a labeled set; held-out "
                                        "queries scored before and after")
    p.add_argument("--corpus", required=True, help='JSONL of {"id", "text"}')
    p.add_argument("--queries", required=True, help='JSONL of {"query", "doc_id"}')
    p.add_argument("--model", default=DEFAULT_MODEL, help="a sentence-transformers name or folder")
    p.add_argument("--out", required=True, help="folder the fine-tuned model is saved to")
    p.add_argument("--eval-split", type=_fraction, default=0.3, help="share of queries held out (default 0.3)")
    p.add_argument("--epochs", type=_positive_int, default=2)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--lr", type=_positive_float, default=5e-5)
    p.add_argument("--hard-negatives", type=_nonnegative_int, default=1,
                   help="hard negatives per query mined with the base model (0: in-batch negatives only)")
    p.add_argument("--patience", type=_positive_int, default=1,
                   help="epochs without a better held-out Recall@10 (then MRR@10) before stopping")
    p.add_argument("--loss", default="symmetric",
                   help="symmetric (default): queries against the batch's documents and documents against its "
                        "queries; mnrl: the first only; gist: negatives the frozen base model scores above the "
                        "positive are dropped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("cost", help="storage bytes and monthly cost of an index")
    p.add_argument("--n", type=_positive_int, required=True, help="number of vectors")
    p.add_argument("--dim", type=_positive_int, required=True)
    p.add_argument("--dtype", default="float32", choices=["float32", "int8", "binary"])
    p.add_argument("--replicas", type=_positive_int, default=1)
    p.add_argument("--price", default="0.10:0.25",
                   help="dollars per GB-month, LOW:HIGH (finite, >= 0; write --price=LOW:HIGH if LOW starts with -)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_cost)

    p = sub.add_parser("info", help="SIMD level and threads; with a path, the index file's header and fingerprint")
    p.add_argument("path", nargs="?")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"simdex {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"simdex {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
