"""The texts of an `Index`: its document store, the encoder last used with it, and its keyword index.

`simdex.Index` holds vectors only. The text wing keeps an index's texts in a `Texts` object attached to it as a
companion (``index._companions["docs"]``): `Index.save` asks the companion to write the document store beside the
index file (`simdex.text.persist.docs_path`), and `simdex.load` attaches it again when it finds that file.

    >>> ids = simdex.text.add_texts(index, ["fork a process", "send mail"], encoder=enc)
    >>> hits = simdex.text.search_text(index, "create a child process", k=5)   # index.search_text(...) forwards here
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from typing import Any, Callable, Optional

import numpy as np

from .._fingerprint import FingerprintMismatch, check_fingerprint, guard_fingerprint
from .._index import Index
from .._validate import as_ids, as_k
from .docstore import DocStore, Document, TextSearchResult
from .fusion import RRF_K, as_rrf_k, reciprocal_rank_fusion
from .persist import COMPANION, docs_path

#: The `search_text` modes: "prefilter" (keywords filter the vector search) and "rrf" (reciprocal rank fusion).
MODES = ("prefilter", "rrf")


class Texts:
    """An index's texts, attached to it as its ``"docs"`` companion (see `Index._companions`).

    Attributes:
        store: the `DocStore` (None until a text is added or a store file is found beside the index file).
        encoder: the encoder last used with the index (`add_texts`, `search_text`, `simdex.ingest`), or None.
    """

    def __init__(self, store: Optional[DocStore] = None) -> None:
        self.store = store
        self.encoder: Any = None
        self._keywords: Any = None  # (len(index), KeywordIndex over the stored chunks, its store)

    def prepare_save(self, index: Index, path: str) -> Optional[Callable[[], None]]:
        """`Index.save` to path, before the index file is written: records the store's save number in the index
        metadata and returns what to run once the index file is in place (None: no store to write)."""
        store, target = self.store, docs_path(path)
        if store is None:
            return None  # Index.save then removes a store an older index left beside path
        seq = store.seq + 1
        same = store.path is not None and os.path.abspath(store.path) == os.path.abspath(target)
        index.metadata = {**index.metadata, "docstore": {"seq": seq, "pending": store.pending if same else None}}
        if same:
            return lambda: store.commit(seq)
        store.copy_to(target, seq)

        def switch() -> None:  # "save as": from now on the index uses the store beside path
            self.store = DocStore(target)
            store.close()

        return switch

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def texts_of(index: Index) -> Texts:
    """The index's `Texts`, attached on first use (with the store beside the index's file, if there is one)."""
    texts = index._companions.get(COMPANION)
    if texts is None:
        if index._path is not None and os.path.exists(docs_path(index._path)):
            # An index read without its companions (simdex._load.load_vectors): its texts are beside its file.
            attach(index, index._path)
        texts = index._companions.setdefault(COMPANION, Texts())
    return texts


def docstore(index: Index) -> DocStore:
    """The index's document store, created in memory when it has none (`Index.save` writes it beside the file)."""
    texts = texts_of(index)
    if texts.store is None:
        texts.store = DocStore(None)
    return texts.store


def set_docstore(index: Index, store: Optional[DocStore]) -> None:
    """Makes `store` the index's document store (None: the index has no texts, and `Index.save` removes a stale
    store file beside its path)."""
    texts_of(index).store = store


def documents(index: Index, ids: Any) -> dict:
    """{vector id: `Document`} for the ids among `ids` that have a stored text."""
    store = texts_of(index).store
    return {} if store is None else {cid: doc for cid, (_, doc) in store.get(ids).items()}


def attach(index: Index, path: str) -> None:
    """Opens the document store beside path as the index's texts; undoes the ids of a save whose store commit did
    not happen (a crash between the index file and the store)."""
    target = docs_path(path)
    if not os.path.exists(target):
        return
    store = DocStore(target)
    info = index.metadata.get("docstore") or {}
    saved = int(info.get("seq", 0))
    if saved == store.seq + 1:
        if info.get("pending"):
            lo, hi = info["pending"]
            try:
                index.remove(np.arange(lo, hi, dtype=np.int64))
            except ValueError:  # a read-only (memory-mapped) index
                warnings.warn(f"{path}: ids {lo} .. {hi - 1} were saved but their texts were not committed to "
                              f"{target}; load without mmap to repair", RuntimeWarning, stacklevel=3)
        # That save may also have removed the vectors of documents it replaced (an ingest's upsert), which the store
        # still holds: they go too, so every stored chunk has its vector (the resumed ingest stores them again).
        try:
            store.remove_unindexed(index.ids())
        except sqlite3.OperationalError:  # a read-only store file
            warnings.warn(f"{target}: documents whose vectors the last save of {path} replaced are still stored; "
                          "open it writable to repair", RuntimeWarning, stacklevel=3)
    elif saved != store.seq:
        warnings.warn(f"{target} (save {store.seq}) does not match {path} (save {saved}); texts returned by "
                      "search_text may be missing or stale", RuntimeWarning, stacklevel=3)
    texts = index._companions.setdefault(COMPANION, Texts())
    if texts.store is not None:
        texts.store.close()
    texts.store = store


# -- the encoder and the fingerprint -----------------------------------------------------------------------------
def text_encoder(index: Index, encoder: Any = None) -> Any:
    """The encoder to use with the index: the one given, the last one used, or one for the fingerprint's model.
    It becomes the index's last-used encoder."""
    texts = texts_of(index)
    if encoder is None:
        encoder = texts.encoder
    if encoder is None:
        from .encoder import Encoder

        fp = index.fingerprint
        encoder = Encoder(fp["model"]) if fp and fp.get("model") else Encoder()
    if encoder.dim != index.dim:
        if index.fingerprint is not None:
            check_fingerprint(index.fingerprint, encoder.fingerprint, "encoder")
        raise ValueError(f"encoder: its vectors have dim {encoder.dim}, the index expects dim {index.dim}")
    texts.encoder = encoder
    return encoder


# -- adding and searching texts ----------------------------------------------------------------------------------
def add_texts(index: Index, texts: Any, ids: Any = None, *, encoder: Any = None,
              batch_size: Optional[int] = None) -> np.ndarray:
    """Embeds texts, adds their vectors to the index and keeps the texts for `search_text`; returns the ids.

    Args:
        index: the `simdex.Index`.
        texts: a sequence of non-empty str.
        ids: as in `Index.add`.
        encoder: a `simdex.Encoder`; default: the last one used with this index, else one for the model in the
            index fingerprint, else the default model.
        batch_size: texts per model call.

    Raises:
        FingerprintMismatch: (a ValueError) the encoder's model is not the one that filled the index.
        TypeError, ValueError: a text that is not a str, is empty or is not valid UTF-8. Nothing is added.

    For corpora, files, chunking and resumable runs use `simdex.ingest`.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts: expected a sequence of str, got a single " + type(texts).__name__)
    texts = list(texts)
    if not texts:
        raise ValueError("texts: expected at least one text, got none")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"texts[{i}]: expected a non-empty text, got {t!r}")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"texts[{i}]: not valid UTF-8 ({e.reason} at {e.start})") from None
    enc = text_encoder(index, encoder)
    if ids is not None:
        as_ids(ids, "ids", n=len(texts))
    guard_fingerprint(index, enc.fingerprint, "add_texts")
    new_ids = index.add(enc.embed_batch(texts, batch_size=batch_size), ids, fingerprint=enc.fingerprint)
    docstore(index).add([(None, t, None, None) for t in texts],
                        [(i, n, 0, len(t)) for n, (i, t) in enumerate(zip(new_ids.tolist(), texts))])
    return new_ids


def keyword_index(index: Index, needed_by: str = "keywords / where") -> Any:
    """The `KeywordIndex` over the index's stored chunks: the store's own FTS5 table, which every write to the
    store updates (`KeywordIndex.from_store`); never rebuilt. Only a read-only store file from before that table
    gets an in-memory copy, built on first use and again when len(index) changed."""
    texts = texts_of(index)
    store = texts.store
    if store is None:
        raise ValueError(f"{needed_by}: needs the stored texts, and this index has no document store")
    n = len(index)
    cached = texts._keywords  # (len(index) when made, KeywordIndex, the store it reads)
    if cached is not None and cached[2] is store and cached[0] == n:
        return cached[1]
    from .hybrid import KeywordIndex

    if store.has_fts:
        if cached is not None and cached[2] is store and cached[1].conn is store._db:
            kw = cached[1]
            kw.refresh()  # the store changed: where() measures its values again
        else:
            kw = KeywordIndex.from_store(store)
    else:
        rows = store._db.execute(
            "SELECT c.id, substr(d.text, c.start_char + 1, c.end_char - c.start_char), d.source, d.key "
            "FROM chunks c JOIN documents d ON d.id = c.doc").fetchall()
        kw = KeywordIndex.from_records([r[0] for r in rows], [r[1] for r in rows],
                                       [{"source": r[2], "doc": r[3]} for r in rows])
    texts._keywords = (n, kw, store)
    return kw


def metadata_filter(index: Index, where: Any) -> np.ndarray:
    """The chunk ids whose documents' metadata pass a filter dict (`simdex.text.filters`), ascending."""
    from .filters import compile_filter

    condition, params = compile_filter(where)  # checked before the store is needed: a bad filter says so first
    store = texts_of(index).store
    if store is None:
        raise ValueError("where: needs the stored documents' metadata, and this index has no document store")
    return store.chunk_ids_where(condition, params)


def keyword_filter(index: Index, filter: Any, keywords: Optional[str], limit: int, where: Any,
                   where_timeout: Optional[float] = None, unsafe_sql: Optional[str] = None) -> Any:
    """The allow-list for `search_text`: the caller's filter intersected with the keyword, metadata (`where`, a
    filter dict) and raw SQL (`unsafe_sql`) filters."""
    if where == {}:
        where = None  # the empty filter matches everything: no allow-list to build
    if keywords is None and where is None and unsafe_sql is None:
        return filter
    allow = None if filter is None else as_ids(filter, "filter")
    if where is not None:
        matched = metadata_filter(index, where)
        allow = matched if allow is None else np.intersect1d(allow, matched)
    if keywords is None and unsafe_sql is None:
        return allow
    kw = keyword_index(index)
    for part in (kw.allow_list(keywords, limit) if keywords is not None else None,
                 kw.where(unsafe_sql, timeout=where_timeout) if unsafe_sql is not None else None):
        if part is not None:
            allow = part if allow is None else np.intersect1d(allow, part)
    return allow


def search_text(index: Index, query: str, k: int = 10, *, encoder: Any = None, chunks: bool = False,
                filter: Any = None, min_score: Optional[float] = None, keywords: Optional[str] = None,
                keyword_limit: int = 200, where: Any = None, unsafe_sql: Optional[str] = None,
                where_timeout: Optional[float] = None, mode: str = "prefilter",
                rrf_k: Optional[float] = None, rescore: Optional[int] = None) -> TextSearchResult:
    """Embeds a query and returns the k best documents (or chunks) of the index with their texts.

    Args:
        index: the `simdex.Index` (`Index.search_text` calls this).
        query: the query text.
        k: results wanted; fewer come back when fewer qualify (no padding).
        encoder: as in `add_texts`; it must be the model that filled the index.
        chunks: False: one result per document, its best-scoring chunk. True: the k best chunks, several may come
            from one document.
        filter, min_score: as in `Index.search` (filter holds vector ids, i.e. chunk ids).
        keywords: ``mode="prefilter"``: hybrid search: only the ``keyword_limit`` best BM25 matches of these words
            (SQLite FTS5 over the stored texts) are ranked by the vector search; no filter when no text shares a
            word. ``mode="rrf"``: the words BM25 ranks (default: the query text itself).
        keyword_limit: ``mode="prefilter"``: how many BM25 matches pass the filter. ``mode="rrf"``: how many
            chunks each ranking (vector, BM25) brings to the fusion (at least k; more when documents are asked
            for and the best chunks hold fewer than k documents).
        where: a metadata filter dict (`simdex.text.filters`), e.g. ``{"lang": "en", "year": {"$gte": 2020}}``:
            only chunks of matching documents are ranked. Its values are SQL parameters, never SQL text. (A str
            here is read as ``unsafe_sql``, with a DeprecationWarning.)
        unsafe_sql: a raw SQL condition on the stored documents' ``source``, ``doc`` (the document key, JSON) and
            ``metadata`` (JSON text), e.g. ``"source LIKE 'man%'"``; only matching documents are ranked. Never
            build it from user input: it must be one expression, and it runs under a deadline (ValueError past
            it) with a cap on the strings it may build (docs/reliability.md), but it is SQL.
        where_timeout: seconds the unsafe_sql condition may run; default ``simdex.text.hybrid.WHERE_TIMEOUT`` (3).
        mode: ``"prefilter"`` (the default): the vector search ranks; ``keywords``, when given, only filter it.
            ``"rrf"``: reciprocal rank fusion (`simdex.text.fusion`) of the vector ranking and the BM25 ranking of
            ``keywords`` or, without them, of the query's own words: a result scores
            ``1 / (rrf_k + vector rank) + 1 / (rrf_k + BM25 rank)`` (ranks from 1; a ranking that lacks it adds
            nothing), ties to the lower id. filter and where restrict both rankings. With ``chunks=False`` the
            rankings are fused per document (a document's rank is its best chunk's) and the chunk shown is its
            best by the vector search, else by BM25. When no stored text shares a word with the query, the
            result is the vector ranking. Measured on the dev set with all-MiniLM-L6-v2 (bench/README_hybrid.md),
            Recall@10 / MRR@10: rrf 0.870 / 0.646, the vector search alone 0.861 / 0.618, the BM25 pre-filter
            0.854 / 0.624. The default stays "prefilter" because "rrf" changes what ``keywords`` and the
            scores mean.
        rrf_k: the constant of ``mode="rrf"``, a finite number >= 0; default 60. Only with mode="rrf".
        rescore: int8 / binary indexes that keep a rescoring tier: as in `Index.search` (the k * R best by the
            codes, rescored exactly); the vector ranking of every mode uses it.

    Returns:
        TextSearchResult(ids int64 (<= k,), scores float32 (<= k,), documents): ids are vector (chunk) ids;
        documents holds a `simdex.Document` per result, or None for a vector added without text. Iterating it
        gives `simdex.Hit` objects (id, score, document, doc_id, text, chunk). The scores are the vector
        search's (cosine similarity for a cosine index), except with ``mode="rrf"``: there they are RRF scores,
        which only order the results (at most ``2 / (rrf_k + 1)``; not similarities, not comparable across
        queries), and ``min_score`` is refused.

    Raises:
        FingerprintMismatch: (a ValueError) the encoder is another model than the index's, or the index has
            vectors but no fingerprint.
        TypeError, ValueError: a bad mode, rrf_k, or keyword_limit; rrf_k without mode="rrf"; min_score with
            mode="rrf"; keywords, where or mode="rrf" on an index without stored texts.
    """
    if not isinstance(query, str):
        raise TypeError(f"query: expected str, got {type(query).__name__}")
    k = as_k(k)
    if isinstance(where, str):
        if unsafe_sql is not None:
            raise ValueError("where: a SQL string and unsafe_sql both given; pass the SQL once, as unsafe_sql")
        warnings.warn("search_text(where=<SQL str>) is deprecated: pass a filter dict as where= (simdex.text.filters), "
                      "or the raw SQL as unsafe_sql=", DeprecationWarning, stacklevel=3)
        where, unsafe_sql = None, where
    if not isinstance(mode, str):
        raise TypeError(f"mode: expected 'prefilter' or 'rrf', got {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode: expected 'prefilter' or 'rrf', got {mode!r}")
    if mode == "rrf":
        rrf_k = as_rrf_k(RRF_K if rrf_k is None else rrf_k)
        if min_score is not None:
            raise ValueError("min_score: not with mode='rrf' (RRF scores are ranks fused, not similarities); "
                             "use mode='prefilter', or filter the fused hits yourself")
    elif rrf_k is not None:
        raise ValueError(f"rrf_k: only with mode='rrf', got rrf_k={rrf_k!r} with mode={mode!r}")
    keyword_limit = _as_limit(keyword_limit)
    enc = text_encoder(index, encoder)
    if index.fingerprint is not None:
        check_fingerprint(index.fingerprint, enc.fingerprint, "search_text")
    elif len(index):
        raise FingerprintMismatch(
            f"search_text: the index holds {len(index)} vectors but no fingerprint, so nothing says which model "
            "made them; add them with add(..., fingerprint=encoder.fingerprint) or set "
            "index.metadata = {**index.metadata, 'fingerprint': encoder.fingerprint}")
    if mode == "rrf":
        return _search_rrf(index, enc, query, k, chunks, filter, keywords, max(k, keyword_limit), where,
                           where_timeout, rrf_k, unsafe_sql, rescore)
    filter = keyword_filter(index, filter, keywords, keyword_limit, where, where_timeout, unsafe_sql)
    store = texts_of(index).store
    q = enc.embed_query(query)
    n = len(index)
    fetch = k if chunks else max(1, min(n, max(4 * k, k + 16)))
    while True:
        res = index.search(q, fetch, filter=filter, min_score=min_score, rescore=rescore)
        ids, scores = res.ids[0], res.scores[0]
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid]
        found = store.get(ids) if store is not None else {}
        picked: list[tuple[int, Optional[Document]]] = []
        seen = set()
        for pos, cid in enumerate(ids.tolist()):
            row, doc = found.get(cid, (("vector", cid), None))
            if chunks or row not in seen:
                seen.add(row)
                picked.append((pos, doc))
        if chunks or len(picked) >= k or fetch >= n or len(ids) < fetch:
            break
        fetch = min(n, 4 * fetch)
    picked = picked[:k]
    rows = np.array([p for p, _ in picked], dtype=np.int64)
    return TextSearchResult(ids[rows], scores[rows], [d for _, d in picked])


def _as_limit(limit: Any) -> int:
    """keyword_limit as a positive int."""
    try:
        return as_k(limit)
    except (TypeError, ValueError) as e:
        raise type(e)(str(e).replace("k:", "keyword_limit:", 1)) from None


def _search_rrf(index: Index, enc: Any, query: str, k: int, chunks: bool, filter: Any, keywords: Optional[str],
                depth: int, where: Any, where_timeout: Optional[float], rrf_k: float,
                unsafe_sql: Optional[str] = None, rescore: Optional[int] = None) -> TextSearchResult:
    """`search_text` with mode="rrf": the vector ranking and the BM25 ranking, `depth` chunks each, fused."""
    kw = keyword_index(index, "mode='rrf'")
    # filter, where and unsafe_sql, no keywords
    allow = keyword_filter(index, filter, None, depth, where, where_timeout, unsafe_sql)
    allow = None if allow is None else as_ids(allow, "filter")
    store = texts_of(index).store
    q = enc.embed_query(query)
    words = query if keywords is None else keywords
    while True:
        dense = index.search(q, depth, filter=allow, rescore=rescore).ids[0]
        dense = dense[dense >= 0]
        bm25 = kw.bm25(words, depth, allow=allow)[0]
        full = len(dense) == depth or len(bm25) == depth  # a deeper look could find more
        # The keyword index can hold chunks whose vectors were removed since it was built: they cannot be results.
        bm25 = np.array([i for i in bm25.tolist() if i in index], np.int64)
        found = store.get(np.union1d(dense, bm25)) if store is not None else {}
        if chunks:
            ids, scores = reciprocal_rank_fusion([dense, bm25], k, rrf_k)
            break
        best: dict = {}  # document -> its best chunk: by the vector ranking, else by BM25
        ids, scores = reciprocal_rank_fusion([_per_document(dense, found, best), _per_document(bm25, found, best)],
                                             k, rrf_k)
        if len(ids) >= k or not full or depth >= len(index):
            break
        depth = min(len(index), 4 * depth)
    documents = [found.get(cid, (None, None))[1] for cid in ids.tolist()]
    return TextSearchResult(ids, scores.astype(np.float32), documents)


def _per_document(ranking: np.ndarray, found: dict, best: dict) -> np.ndarray:
    """A chunk ranking as a document ranking (a document ranks where its best chunk does), each document named by
    its entry in `best` (document -> chunk id; set here by the first ranking that holds the document)."""
    out, seen = [], set()
    for cid in ranking.tolist():
        row = found.get(cid, (("vector", cid), None))[0]
        if row not in seen:
            seen.add(row)
            out.append(best.setdefault(row, cid))
    return np.array(out, np.int64)
