"""Arguments that are the wrong kind of thing: each is refused with an error that names the argument, never
coerced (``"0.5"`` is not a score) and never a traceback from deep inside."""

import fractions
import math

import numpy as np
import pytest

import simdex
from simdex._validate import as_min_score


@pytest.fixture
def index(rng):
    ix = simdex.Index(8, metric="ip")
    ix.add(rng.standard_normal((20, 8)).astype(np.float32))
    return ix


@pytest.mark.parametrize("bad,error", [
    ("0.5", TypeError), (b"0.5", TypeError), (True, TypeError), (False, TypeError), (np.True_, TypeError),
    ([0.5], TypeError), (np.array([0.5]), TypeError), (1 + 0j, TypeError), (np.complex64(1), TypeError),
    (object(), TypeError), (float("nan"), ValueError), (np.float32("nan"), ValueError), (np.array(np.nan), ValueError),
])
def test_min_score_must_be_a_real_number(index, bad, error):
    with pytest.raises(error, match="min_score"):
        as_min_score(bad)
    with pytest.raises(error, match="min_score"):
        index.search(np.ones(8, np.float32), 3, min_score=bad)


@pytest.mark.parametrize("good,value", [
    (None, -math.inf), (0.5, 0.5), (-1, -1.0), (np.float32(0.25), 0.25), (np.float64(-2.5), -2.5),
    (np.int64(3), 3.0), (np.uint8(1), 1.0), (np.array(0.75), 0.75), (fractions.Fraction(1, 4), 0.25),
    (math.inf, math.inf), (-math.inf, -math.inf),
])
def test_min_score_accepts_python_and_numpy_reals(index, good, value):
    assert as_min_score(good) == value
    res = index.search(np.ones(8, np.float32), 20, min_score=good)
    assert (res.scores[res.ids >= 0] >= value).all()
