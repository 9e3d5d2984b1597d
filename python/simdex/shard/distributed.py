"""Distributed ingest on Ray Data: `simdex.distributed_ingest` embeds a corpus into a folder of index shards.

    >>> import ray, simdex
    >>> ray.init()                                            # or ray.init(address="auto") on a cluster
    >>> report = simdex.distributed_ingest("corpus.jsonl", "corpus-shards/", num_shards=4)
    >>> index = simdex.ShardedIndex.open("corpus-shards/", backend="ray")

The pipeline: read (JSONL, Parquet or text lines) -> give each document an id -> repartition into enough blocks
that every encoder actor has work -> ``map_batches`` with a callable class that loads the encoder once per actor
(``ActorPoolStrategy``, a GPU each when asked or when the cluster has them) and routes each vector to its shard
(`simdex.shard.routing.shard_of`, the rule `ShardedIndex.add` uses) -> a two-step shuffle of Ray tasks (split each block
by shard; one writer per shard) -> one index file per shard, with the encoder's fingerprint in its metadata, and
beside it the document store `simdex.ingest` writes (``shard-00000.simdex.docs.sqlite``: each vector's text, so
`Index.search_text` and `ShardedIndex.search_text` return texts) -> ``manifest.json``.

Ray is imported inside the function: ``import simdex`` never loads it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._index import Index
from .manifest import MANIFEST_NAME, write_manifest
from .routing import ROUTING, shard_of

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
FORMATS = ("json", "parquet", "text")
_SUFFIXES = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".jsonl.gz": "json", ".json.gz": "json",
             ".ndjson.gz": "json", ".parquet": "parquet", ".txt": "text", ".txt.gz": "text", ".text": "text"}
#: Blocks per encoder actor after repartitioning: enough that no actor waits while another holds the last block.
BLOCKS_PER_WORKER = 4


@dataclass
class DistributedIngestReport:
    """What `distributed_ingest` wrote.

    Attributes:
        manifest: path of the manifest (open it with `ShardedIndex.open`).
        documents: vectors written, one per document.
        shard_counts: vectors per shard.
        num_workers: encoder actors used; num_gpus_per_worker: GPUs each had.
        seconds: wall time; docs_per_s: documents per second over the whole run (reading and writing included).
        fingerprint: the encoder's fingerprint, stored in every shard.
    """

    manifest: str
    documents: int
    shard_counts: list[int]
    num_workers: int
    num_gpus_per_worker: float
    seconds: float
    docs_per_s: float
    fingerprint: dict | None

    def __str__(self) -> str:
        gpus = f", {self.num_gpus_per_worker:g} GPU each" if self.num_gpus_per_worker else ", CPU"
        return (f"{self.documents} documents in {len(self.shard_counts)} shards {self.shard_counts} by "
                f"{self.num_workers} encoder actor(s){gpus}; {self.seconds:.1f} s, {self.docs_per_s:.1f} docs/s; "
                f"manifest {self.manifest}")


# -- the encoder, made once per actor ---------------------------------------------------------------------

class _NamedEncoder:
    """Builds ``simdex.Encoder(model, device=...)`` where it is called (inside an actor), not where it is named."""

    def __init__(self, model: str, device: str) -> None:
        self.model, self.device = model, device

    def __call__(self) -> Any:
        import simdex

        if not hasattr(simdex, "Encoder"):
            raise ImportError("distributed_ingest with a model name needs simdex.Encoder (pip install simdex[encode]); "
                              "pass an encoder factory instead")
        return simdex.Encoder(self.model, device=self.device)


class _Given:
    """An encoder object the caller made: sent to every actor as it is (pickled)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def __call__(self) -> Any:
        return self.encoder


def _encoder_factory(encoder: Any, use_gpu: bool) -> Callable[[], Any]:
    if encoder is None:
        encoder = DEFAULT_MODEL
    if isinstance(encoder, (str, os.PathLike)):
        return _NamedEncoder(os.fspath(encoder), "cuda" if use_gpu else "cpu")
    if not isinstance(encoder, type) and hasattr(encoder, "embed_batch"):
        return _Given(encoder)
    if callable(encoder):  # a class or a function
        return encoder
    raise TypeError(f"encoder: expected a model name, an encoder factory (a class or function called once per "
                    f"actor) or an object with embed_batch(texts), got {type(encoder).__name__}")


def _describe_encoder(factory: Callable[[], Any]) -> tuple:
    """Runs where the actors run: builds the encoder once and returns (fingerprint, dim)."""
    enc = factory()
    fp = getattr(enc, "fingerprint", None)
    dim = getattr(enc, "dim", None)
    if dim is None:
        dim = int(np.asarray(enc.embed_batch(["dimension probe"])).shape[1])
    return (dict(fp) if fp else None), int(dim)


def _identity(fp: dict | None) -> dict | None:
    # Library versions and the dtype may differ between nodes without changing the vectors' meaning.
    return None if fp is None else {k: v for k, v in fp.items() if k not in ("versions", "dtype")}


class _Embed:
    """The ``map_batches`` callable class: one encoder per actor, a batch of texts in, ids + vectors + shard out."""

    def __init__(self, factory: Callable[[], Any], text_field: str, num_shards: int, fingerprint: dict | None,
                 dim: int, store_texts: bool = True) -> None:
        self.encoder = factory()
        self.text_field, self.num_shards, self.dim, self.store_texts = text_field, num_shards, dim, store_texts
        fp = getattr(self.encoder, "fingerprint", None)
        if _identity(fp) != _identity(fingerprint):
            # Nodes with different model files would fill one index with incomparable vectors.
            raise ValueError(f"encoder on this worker has fingerprint {fp}, the first one had {fingerprint}")

    def __call__(self, batch: dict) -> dict:
        texts = batch[self.text_field]
        texts = texts.tolist() if isinstance(texts, np.ndarray) else list(texts)
        ids = np.asarray(batch["id"])
        if ids.dtype.kind not in "iu":
            raise TypeError(f"id: expected integer ids, got dtype {ids.dtype} (e.g. {ids[:1].tolist()})")
        ids = ids.astype(np.int64)
        vectors = np.ascontiguousarray(self.encoder.embed_batch(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"encoder.embed_batch: expected shape ({len(texts)}, {self.dim}), got {vectors.shape}")
        out = {"id": ids, "vector": vectors, "shard": shard_of(ids, self.num_shards)}
        if self.store_texts:
            out["text"] = np.asarray(texts, dtype=object)  # travels to the shard writer for its document store
        return out


def _split_block(block: dict, num_shards: int) -> Any:
    """Shuffle, map side: one block of (id, vector, shard) -> one (ids, vectors) piece per shard."""
    shard = np.asarray(block["shard"])
    ids = np.asarray(block["id"], dtype=np.int64)
    vectors = np.asarray(block["vector"], dtype=np.float32)
    texts = np.asarray(block["text"], dtype=object) if "text" in block else None
    pieces = []
    for s in range(num_shards):
        rows = np.flatnonzero(shard == s)
        pieces.append((ids[rows], np.ascontiguousarray(vectors[rows]), None if texts is None else texts[rows].tolist()))
    return pieces[0] if num_shards == 1 else tuple(pieces)


def _write_shard(shard: int, out_dir: str, dim: int, metric: str, fingerprint: dict | None, num_shards: int,
                 keyed: bool, *pieces: tuple) -> int:
    """Shuffle, reduce side: every piece routed to one shard -> one index file, and its texts (when the pieces carry
    them) in the document store beside it, as `simdex.ingest` writes it: one document and one whole-text chunk per
    vector, keyed by the vector's id when the ids came from the data (``keyed``). Returns the vector count."""
    from ..text.docstore import DocStore
    from ..text.texts import set_docstore

    index = Index(dim, metric)
    # In memory, then copied beside the file by Index.save (atomically, replacing a store an earlier run left).
    store = DocStore(None) if any(p[2] is not None for p in pieces) else None
    try:
        for ids, vectors, texts in pieces:
            if len(ids):
                index.add(vectors, ids)
                if store is not None:
                    store.add([(int(i) if keyed else None, t, None, None) for i, t in zip(ids.tolist(), texts)],
                              [(i, d, 0, len(t)) for d, (i, t) in enumerate(zip(ids.tolist(), texts))])
    except ValueError as e:
        raise ValueError(f"shard {shard}: {e} (are the ids unique?)") from None
    index.metadata = _shard_metadata(fingerprint, shard, num_shards)
    if store is not None:
        set_docstore(index, store)  # without one, Index.save removes a stale store an earlier run left
    index.save(os.path.join(out_dir, _shard_file(shard)))
    for companion in index._companions.values():
        companion.close()
    return len(index)


def _shard_file(shard: int) -> str:
    return f"shard-{shard:05d}.simdex"


def _shard_metadata(fingerprint: dict | None, shard: int, num_shards: int) -> dict:
    meta: dict = {"shard": shard, "num_shards": num_shards, "routing": ROUTING}
    if fingerprint:
        meta["fingerprint"] = fingerprint
    return meta


# -- reading ---------------------------------------------------------------------------------------------------

def _format_of(paths: Sequence[str]) -> str:
    found = set()
    for p in paths:
        names = [p]
        if os.path.isdir(p):
            names = [n for n in os.listdir(p) if not n.startswith((".", "_"))]
        for name in names:
            low = name.lower()
            fmt = next((f for suffix, f in sorted(_SUFFIXES.items(), key=lambda kv: -len(kv[0]))
                        if low.endswith(suffix)), None)
            found.add(fmt or "text")
    if len(found) != 1:
        raise ValueError(f"dataset_or_paths: the files mix formats {sorted(found)}; pass format= or one kind of file")
    return found.pop()


def _read(ray: Any, source: Any, fmt: str | None, text_field: str) -> Any:
    import ray.data

    if isinstance(source, ray.data.Dataset):
        return source
    paths = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(p) for p in source]
    if not paths:
        raise ValueError("dataset_or_paths: expected a Ray Dataset, a path or a list of paths, got an empty list")
    for p in paths:
        if "://" not in p and not os.path.exists(p):
            raise FileNotFoundError(2, f"dataset_or_paths: {p} does not exist", p)
    fmt = fmt or _format_of(paths)
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")
    if fmt == "json":
        return ray.data.read_json(paths)  # newline-delimited JSON (pyarrow reader)
    if fmt == "parquet":
        return ray.data.read_parquet(paths)
    ds = ray.data.read_text(paths)  # one document per line, column "text"
    return ds if text_field == "text" else ds.rename_columns({"text": text_field})


def _numbered_blocks(ray: Any, ds: Any, text_field: str, blocks: int) -> tuple:
    """Numbers the rows 0, 1, ... in input order (an "id" column) and cuts them into about `blocks` blocks.

    Returns (dataset, number of rows). One materializing pass over the texts; the numbering and the cutting are
    small tasks on the blocks already in the object store, so no repartition stage is needed afterwards.
    """
    import pyarrow as pa
    import ray.data

    @ray.remote(num_cpus=0.25)
    def rows(table: Any) -> int:
        return table.num_rows

    def number(table: Any, start: int, pieces: int) -> Any:
        table = table.select([text_field]).append_column("id", pa.array(np.arange(start, start + table.num_rows)))
        cuts = np.linspace(0, table.num_rows, pieces + 1).astype(int)
        parts = [table.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]
        return parts[0] if pieces == 1 else tuple(parts)

    refs = ds.to_arrow_refs()
    counts = ray.get([rows.remote(r) for r in refs])
    total = int(sum(counts))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    out = []
    for ref, start, count in zip(refs, starts, counts):
        if count == 0:
            continue
        pieces = max(1, min(count, round(blocks * count / total)))
        made = ray.remote(number).options(num_cpus=0.25, num_returns=pieces).remote(ref, start, pieces)
        out.extend([made] if pieces == 1 else made)
    return ray.data.from_arrow_refs(out), total


# -- the entry point -------------------------------------------------------------------------------------------

def distributed_ingest(dataset_or_paths: Any, out_dir: str | os.PathLike[str], encoder: Any = DEFAULT_MODEL,
                       num_shards: int | None = None, num_gpus_per_worker: float | None = None, *,
                       text_field: str = "text", id_field: str | None = None, format: str | None = None,
                       num_workers: int | None = None, num_cpus_per_worker: float = 1, batch_size: int = 256,
                       metric: str = "cosine", overwrite: bool = False,
                       store_texts: bool = True) -> DistributedIngestReport:
    """Embeds a corpus on a Ray cluster into ``num_shards`` index files plus a manifest.

    Args:
        dataset_or_paths: a ``ray.data.Dataset`` with a text column, or files: a path, a folder or a list of
            them, read as JSON lines (``.jsonl``, ``.json``, ``.ndjson``, optionally ``.gz``), Parquet
            (``.parquet``) or text (anything else; one document per line). On a cluster the files must be
            readable from every node (shared storage or an object-store URL).
        out_dir: folder for ``shard-00000.simdex``, ... and ``manifest.json``; on a cluster, storage every node
            can write.
        encoder: a model name for `simdex.Encoder` (built in each actor, on its GPU when it has one); a factory
            (a class or zero-argument function) called once per actor, e.g.
            ``functools.partial(simdex.Encoder, "all-MiniLM-L6-v2", device="cuda")``; or an encoder object
            (pickled to every actor: fine for small ones). It needs ``embed_batch(texts) -> (n, dim) float32``,
            and ``fingerprint`` and ``dim`` when it has them.
        num_shards: index files to write; default: one per node of the cluster.
        num_gpus_per_worker: GPUs per encoder actor; default: 1 when the cluster has GPUs, else 0.
        text_field: the column (JSON/Parquet field) holding the text.
        id_field: a column of non-negative integer document ids to use as vector ids; default: the row number in
            input order (0, 1, ...; this costs one extra pass that holds the texts in Ray's object store).
        format: ``"json"``, ``"parquet"`` or ``"text"`` instead of guessing from the file names.
        num_workers: encoder actors; default: one per GPU (GPU) or per ``num_cpus_per_worker`` CPUs.
        num_cpus_per_worker: CPUs each encoder actor reserves (Ray sets its torch/OpenMP threads to this).
        batch_size: texts per ``map_batches`` call.
        metric: the shards' metric.
        overwrite: replace an existing manifest in out_dir.
        store_texts: also write each shard's texts to the document store beside it
            (``shard-00000.simdex.docs.sqlite``, the store `simdex.ingest` writes), so that `Index.search_text` and
            `ShardedIndex.search_text` return them. Each document's `simdex.Document.id` is its ``id_field`` value
            (None without id_field); its other fields are not kept. False: vectors and ids only.

    Returns:
        A `DistributedIngestReport`.

    Raises:
        ImportError: Ray (``pip install simdex[ray]``) or, for a model name, the encoder extra is missing.
        FileExistsError: out_dir holds a manifest and overwrite is False.
        FileNotFoundError: an input path does not exist.
        ValueError, TypeError: bad arguments, a missing text or id column, non-integer or duplicate ids, an
            encoder whose output has the wrong shape.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImportError("distributed_ingest needs Ray Data: pip install 'simdex[ray]'") from None
    start = time.perf_counter()
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(os.path.join(out_dir, MANIFEST_NAME)) and not overwrite:
        raise FileExistsError(17, f"{out_dir} already holds a sharded index (manifest.json); pass overwrite=True "
                                  "to replace it", out_dir)
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS or a running local cluster when there is one, else a new local Ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if num_gpus_per_worker is None:
        num_gpus_per_worker = 1.0 if gpus > 0 else 0.0
    if num_gpus_per_worker < 0:
        raise ValueError(f"num_gpus_per_worker: expected >= 0, got {num_gpus_per_worker}")
    if num_gpus_per_worker and gpus < num_gpus_per_worker:
        raise ValueError(f"num_gpus_per_worker={num_gpus_per_worker:g} but the Ray cluster has {gpus:g} GPU(s)")
    if num_workers is None:
        if num_gpus_per_worker:
            num_workers = max(1, int(gpus // num_gpus_per_worker))
        else:
            num_workers = max(1, int(float(resources.get("CPU", 1)) // num_cpus_per_worker))
    if num_shards is None:
        num_shards = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    if num_shards <= 0 or num_workers <= 0:
        raise ValueError(f"num_shards and num_workers: expected positive integers, got {num_shards}, {num_workers}")

    factory = _encoder_factory(encoder, bool(num_gpus_per_worker))
    # Build the encoder once where the actors will run, while the input is read: a bad model or factory fails
    # before any encoding starts, and the fingerprint and dim are known for the shard files and the manifest.
    probe = ray.remote(_describe_encoder).options(num_cpus=num_cpus_per_worker, num_gpus=num_gpus_per_worker)
    probed = probe.remote(factory)

    ctx = ray.data.DataContext.get_current()
    saved_order = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # row numbers follow the input order
    try:
        ds = _read(ray, dataset_or_paths, format, text_field)
        columns = ds.columns()
        if text_field not in columns:
            raise ValueError(f"text_field: no column {text_field!r} in the input; it has {columns}")
        # A file is often one block: spread the rows so that every actor gets several blocks of work. Both paths
        # materialize, so this shuffle is over before the actor pool starts and takes the CPUs.
        blocks = num_workers * BLOCKS_PER_WORKER
        if id_field is not None:
            if id_field not in columns:
                raise ValueError(f"id_field: no column {id_field!r} in the input; it has {columns}")
            ds = ds.select_columns([text_field, id_field])
            if id_field != "id":
                ds = ds.rename_columns({id_field: "id"})
            ds = ds.repartition(blocks).materialize()
            documents = ds.count()
        else:
            ds, documents = _numbered_blocks(ray, ds.select_columns([text_field]).materialize(), text_field, blocks)
        if documents == 0:
            raise ValueError("dataset_or_paths: the input holds no documents")
    except BaseException:
        ray.cancel(probed)
        raise
    finally:
        ctx.execution_options.preserve_order = saved_order

    fingerprint, dim = ray.get(probed)
    log.info("distributed_ingest: %d documents read in %.1f s, %d blocks for %d encoder actor(s)", documents,
             time.perf_counter() - start, blocks, num_workers)
    embedded = ds.map_batches(
        _Embed, fn_constructor_args=(factory, text_field, num_shards, fingerprint, dim, store_texts),
        batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=num_cpus_per_worker,
        num_gpus=num_gpus_per_worker or None)
    # Finish encoding before the shuffle: the actor pool may hold every CPU, and the group-by's own workers would
    # wait for CPUs forever while the pool waits for them to take its output.
    embedded = embedded.materialize()
    log.info("distributed_ingest: encoded after %.1f s", time.perf_counter() - start)
    os.makedirs(out_dir, exist_ok=True)
    # Group the vectors by shard with a two-step shuffle of plain tasks (split each block, then one writer per
    # shard): each vector moves once, and it starts faster than a Dataset group-by.
    split = ray.remote(_split_block).options(num_returns=num_shards)
    pieces = [split.remote(block, num_shards) for block in embedded.to_numpy_refs()]
    if num_shards == 1:
        pieces = [[p] for p in pieces]
    write = ray.remote(_write_shard)
    counts = ray.get([write.remote(s, out_dir, dim, metric, fingerprint, num_shards, id_field is not None,
                                   *[p[s] for p in pieces]) for s in range(num_shards)])
    seconds = time.perf_counter() - start
    manifest = write_manifest(out_dir, [_shard_file(s) for s in range(num_shards)], counts, dim, metric, fingerprint,
                              extra={"ingest": {"documents": documents, "num_workers": num_workers,
                                                "num_gpus_per_worker": num_gpus_per_worker, "seconds": round(seconds, 3)}})
    return DistributedIngestReport(manifest=manifest, documents=documents, shard_counts=counts,
                                   num_workers=num_workers, num_gpus_per_worker=float(num_gpus_per_worker),
                                   seconds=seconds, docs_per_s=documents / seconds if seconds > 0 else 0.0,
                                   fingerprint=fingerprint)


__all__ = ["DistributedIngestReport", "distributed_ingest"]
