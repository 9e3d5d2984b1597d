import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def minilm():
    """The shipped all-MiniLM-L6-v2 encoder, loaded once per test session."""
    pytest.importorskip("sentence_transformers", reason="the encode extra is not installed")
    import simdex

    if not hasattr(simdex, "Encoder"):
        pytest.skip("simdex.Encoder is not available in this build")
    return simdex.Encoder("all-MiniLM-L6-v2", device="cpu")
