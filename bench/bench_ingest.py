"""Ingest benchmarks (CPU targets of the encoder/ingest issue).

1. Throughput, same process and model: `simdex.ingest` of a JSONL corpus (reading, chunk-free embedding, SQLite
   document store, index file) vs one `SentenceTransformer.encode` call on the same texts (batch 32, normalized).
   Runs alternate (encode first, then ingest first) to cancel drift on a shared machine; per wall second and per
   CPU second of the process (less sensitive to other processes on a shared machine). Target: ratio >= 0.95.
2. Peak RSS of a fresh process ingesting N documents into an index file: with the tiny stand-in encoder (no model;
   dim 384 so the index is as big as MiniLM's), and optionally with MiniLM itself. Target: peak growth over the
   process before ingest <= index bytes + 300 MB.

    python bench/bench_ingest.py                               # both parts, full dev corpus, 200K for RSS
    python bench/bench_ingest.py --limit 500 --repeats 3       # quicker throughput check
    python bench/bench_ingest.py --skip-throughput --rss-model-docs 20000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CORPUS = DATA / "dev-pydocs-linuxman" / "corpus.jsonl"
SENTENCES = DATA / "real-minilm" / "base_texts.jsonl.gz"


def throughput(corpus: Path, limit: int | None, repeats: int, batch_size: int, trim_heap: bool) -> dict:
    import simdex

    lines = corpus.read_text().splitlines()[:limit]
    texts = [json.loads(line)["text"] for line in lines]
    encoder = simdex.Encoder(device="cpu", batch_size=batch_size, trim_heap=trim_heap)
    model = encoder._model  # the SentenceTransformer itself
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "corpus.jsonl"
        source.write_text("\n".join(lines) + "\n")

        def timed(run) -> tuple:
            """(docs per wall second, docs per CPU second of this process, all threads)."""
            t, c = time.perf_counter(), time.process_time()
            run()
            return len(texts) / (time.perf_counter() - t), len(texts) / (time.process_time() - c)

        def run_encode() -> tuple:
            return timed(lambda: model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True))

        def run_ingest(r: int) -> tuple:
            def go() -> None:
                report = simdex.ingest(source, Path(tmp) / f"i{r}.simdex", encoder=encoder, batch_size=batch_size)
                assert report.documents == len(texts), report

            return timed(go)

        model.encode(texts[:64], batch_size=batch_size)  # warm-up (first-call allocations)
        for r in range(repeats):
            if r % 2 == 0:
                enc, ing = run_encode(), run_ingest(r)
            else:
                ing, enc = run_ingest(r), run_encode()
            runs.append({"encode_docs_per_s": round(enc[0], 2), "ingest_docs_per_s": round(ing[0], 2),
                         "ratio": round(ing[0] / enc[0], 3), "encode_docs_per_cpu_s": round(enc[1], 2),
                         "ingest_docs_per_cpu_s": round(ing[1], 2), "cpu_ratio": round(ing[1] / enc[1], 3)})
            print(json.dumps(runs[-1]), flush=True)
    # pooled: all ingest runs against all encode runs (time-weighted), robust to load drifting between runs
    def pooled(enc: str, ing: str) -> float:
        return round(sum(1 / r[enc] for r in runs) / sum(1 / r[ing] for r in runs), 3)

    return {"docs": len(texts), "batch_size": batch_size, "heap_trims": encoder._heap and encoder._heap.trims,
            "runs": runs,
            "median_ratio": round(statistics.median(r["ratio"] for r in runs), 3),
            "pooled_ratio": pooled("encode_docs_per_s", "ingest_docs_per_s"),
            "median_cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in runs), 3),
            "pooled_cpu_ratio": pooled("encode_docs_per_cpu_s", "ingest_docs_per_cpu_s")}


_RSS_CHILD = """
import gzip, itertools, json, sys, time
sys.path.insert(0, {tests!r})
import simdex

def status(field):  # VmRSS now, VmHWM peak (Linux); ru_maxrss would count the forking parent's pages
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

if {model!r}:
    encoder = simdex.Encoder(device="cpu", trim_heap={trim_heap!r})
    encoder.embed_batch(["warm up"] * 64)
else:
    from standin_encoder import TinyStandInEncoder
    encoder = TinyStandInEncoder(dim=384)
with gzip.open({sentences!r}, "rt") as f:
    sentences = [json.loads(line)["text"] for line in itertools.islice(f, 50_000)]

def docs():
    for i in range({n}):
        yield (f"doc-{{i}}", f"{{sentences[i % len(sentences)]}} ({{i}})")

before = status("VmRSS:")
t = time.perf_counter()
report = simdex.ingest(docs(), {path!r}, encoder=encoder)
seconds = time.perf_counter() - t
peak = status("VmHWM:")
print(json.dumps({{"docs": report.documents, "rss_before_ingest": before, "peak_rss": peak,
                  "growth": peak - before, "index_bytes": report.index.memory_usage(),
                  "heap_trims": getattr(getattr(encoder, "_heap", None), "trims", None),
                  "docs_per_s": round(report.documents / seconds, 1)}}))
"""


def peak_rss(n: int, model: bool, trim_heap: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = _RSS_CHILD.format(tests=str(ROOT / "tests"), model=model, sentences=str(SENTENCES), n=n,
                                 path=str(Path(tmp) / "rss.simdex"), trim_heap=trim_heap)
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr)
        out = json.loads(done.stdout.strip().splitlines()[-1])
    mb = 2 ** 20
    out["budget"] = out["index_bytes"] + 300 * mb
    out["within_target"] = out["growth"] <= out["budget"]
    print(json.dumps({"encoder": "MiniLM" if model else "stand-in (dim 384)", **out}), flush=True)
    return out


def main(argv: list | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--limit", type=int, default=None, help="first N documents of the corpus")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rss-docs", type=int, default=200_000)
    p.add_argument("--rss-model-docs", type=int, default=0, help="also measure RSS with MiniLM on N documents")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--no-trim-heap", dest="trim_heap", action="store_false",
                   help="Encoder(trim_heap=False): leave glibc's heap as it fragments")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import platform

    import sentence_transformers
    import torch

    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "load_avg": os.getloadavg(), "torch": torch.__version__,
                      "sentence_transformers": sentence_transformers.__version__}), flush=True)
    if not args.skip_throughput:
        print(json.dumps(throughput(args.corpus, args.limit, args.repeats, args.batch_size, args.trim_heap)), flush=True)
    if args.rss_docs:
        peak_rss(args.rss_docs, model=False, trim_heap=args.trim_heap)
    if args.rss_model_docs:
        peak_rss(args.rss_model_docs, model=True, trim_heap=args.trim_heap)
    print(json.dumps({"load_avg_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
