"""LangChain: `SimdexVectorStore`, a `langchain_core.vectorstores.VectorStore` over a `simdex.Collection`.

    >>> from simdex.integrations.langchain import SimdexVectorStore
    >>> store = SimdexVectorStore(embeddings, "kb")               # a folder; None keeps it in memory
    >>> store.add_documents(docs, ids=["a", "b"])
    >>> store.similarity_search("query", k=4, filter={"lang": "en", "year": {"$gte": 2020}})

Documents keep their ids (a LangChain id is the collection key): adding an id again replaces that document (its
text re-embedded only when it changed). ``filter`` is the collection's filter language (`simdex.text.filters`).
Needs langchain-core (``pip install 'simdex[langchain]'``); nothing else of LangChain.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Optional

import numpy as np

try:
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("simdex.integrations.langchain needs langchain-core: pip install 'simdex[langchain]'") from e

from ..text.collection import Collection


class EmbeddingsEncoder:
    """A LangChain `Embeddings` as the encoder a `simdex.Collection` calls (``dim``, ``fingerprint``,
    ``embed_batch``, ``embed_query``). Its fingerprint names the embeddings class: a collection refuses another
    one, as it refuses another model."""

    def __init__(self, embeddings: Embeddings, name: Optional[str] = None) -> None:
        self.embeddings = embeddings
        self.dim = len(embeddings.embed_query("dimension probe"))
        model = name or f"langchain:{type(embeddings).__module__}.{type(embeddings).__qualname__}"
        self.fingerprint = {"model": model, "weights_sha256": None, "dim": self.dim, "pooling": None,
                            "normalize": None, "max_seq_length": None}

    def embed_batch(self, texts: Sequence[str], *, batch_size: Optional[int] = None, **_: Any) -> np.ndarray:
        return np.asarray(self.embeddings.embed_documents(list(texts)), np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.embeddings.embed_query(text), np.float32)


class SimdexVectorStore(VectorStore):
    """A LangChain vector store kept in a `simdex.Collection`.

    Args:
        embedding: the LangChain `Embeddings`.
        path: the collection's folder (None: in memory).
        collection: an open `simdex.Collection` to use instead of opening one (its encoder must embed like
            `embedding`).
        model_name: the model name recorded in the collection's fingerprint (default: the embeddings class).
        **options: passed to `simdex.Collection` (metric, dtype, chunk_tokens...).
    """

    def __init__(self, embedding: Embeddings, path: Any = None, *, collection: Optional[Collection] = None,
                 model_name: Optional[str] = None, **options: Any) -> None:
        self._embedding = embedding
        self.collection = collection if collection is not None else Collection(
            path, EmbeddingsEncoder(embedding, model_name), **options)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def add_texts(self, texts: Iterable[str], metadatas: Optional[list] = None, *, ids: Optional[list] = None,
                  **kwargs: Any) -> list:
        """Adds (or, for ids already stored, replaces) texts; returns their ids (new uuid4 strings where an id is
        missing or None)."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"metadatas: expected one per text ({len(texts)}), got {len(metadatas)}")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"ids: expected one per text ({len(texts)}), got {len(ids)}")
        keys = [i if i is not None else str(uuid.uuid4()) for i in (ids or [None] * len(texts))]
        metas = metadatas or [None] * len(texts)
        self.collection.upsert([(k, t, dict(m or {})) for k, t, m in zip(keys, texts, metas)])
        return keys

    def delete(self, ids: Optional[list] = None, **kwargs: Any) -> Optional[bool]:
        """Deletes these ids (missing ones are ignored); None deletes everything."""
        if ids is None:
            ids = self.collection.keys()
        self.collection.delete(list(ids))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list:
        """The stored documents among ids, in the order of ids (missing ones left out)."""
        return [_document(d) for d in self.collection.get(list(ids)) if d is not None]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Optional[dict] = None,
                                     **kwargs: Any) -> list:
        """(Document, cosine similarity (or inner product under metric="ip")) of the k nearest, best first;
        ``filter``: the collection's metadata filter."""
        result = self.collection.search(query, k, where=filter, mode="dense")
        return [(_document(hit.document), hit.score) for hit in result]

    def similarity_search(self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any) -> list:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.collection.index.metric == "cosine":
            return lambda score: (1.0 + score) / 2.0  # cosine in [-1, 1] -> relevance in [0, 1]
        return super()._select_relevance_score_fn()

    @classmethod
    def from_texts(cls, texts: list, embedding: Embeddings, metadatas: Optional[list] = None, *,
                   ids: Optional[list] = None, **kwargs: Any) -> "SimdexVectorStore":
        """A new store (``path=``, options as for the constructor) holding texts."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _document(doc: Any) -> LCDocument:
    key = doc.id if isinstance(doc.id, str) else str(doc.id)
    return LCDocument(page_content=doc.text, metadata=dict(doc.metadata), id=key)
