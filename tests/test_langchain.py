"""simdex.integrations.langchain: LangChain's own standard VectorStore suite (langchain-tests), in memory and on
disk, plus filters and reopening. Skipped when langchain-core / langchain-tests are not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")
standard = pytest.importorskip("langchain_tests.integration_tests")

from langchain_core.documents import Document  # noqa: E402
from simdex.integrations.langchain import SimdexVectorStore  # noqa: E402


class TestInMemory(standard.VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self):
        yield SimdexVectorStore(self.get_embeddings())


class TestOnDisk(standard.VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path):
        store = SimdexVectorStore(self.get_embeddings(), tmp_path / "kb")
        yield store
        store.collection.close()


def test_filter_reopen_and_from_texts(tmp_path):
    emb = standard.VectorStoreIntegrationTests.get_embeddings()
    store = SimdexVectorStore.from_texts(["alpha", "beta", "gamma"], emb,
                                         [{"lang": "en"}, {"lang": "de"}, {"lang": "en", "year": 2021}],
                                         ids=["a", "b", "c"], path=tmp_path / "kb")
    got = store.similarity_search("beta", k=3, filter={"lang": "en"})
    assert sorted(d.id for d in got) == ["a", "c"]
    assert [d.id for d in store.similarity_search("x", 3, filter={"year": {"$gte": 2020}})] == ["c"]
    doc, score = store.similarity_search_with_score("gamma", 1)[0]
    assert doc == Document(id="c", page_content="gamma", metadata={"lang": "en", "year": 2021})
    assert score == pytest.approx(1.0, abs=1e-5)
    assert store.similarity_search_with_relevance_scores("gamma", 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    store.collection.close()
    again = SimdexVectorStore(emb, tmp_path / "kb")
    assert [d.id for d in again.get_by_ids(["c", "zz", "a"])] == ["c", "a"]
    again.delete()
    assert again.similarity_search("alpha", 3) == []
