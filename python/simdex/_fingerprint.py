"""The embedding model's fingerprint: which model made a set of vectors, and the check that keeps models apart.

An index records the fingerprint of the model that filled it (``index.metadata["fingerprint"]``, written by
``Index.add(..., fingerprint=...)``); `simdex.Encoder.fingerprint` makes one (simdex.text.encoder). Vectors are
comparable only when the entries in `IDENTITY_KEYS` agree.
"""

from __future__ import annotations

from typing import Any

#: Fingerprint entries that identify the vectors a model makes. The model name (a folder can be moved), dtype and
#: library versions are recorded but not compared.
IDENTITY_KEYS = ("weights_sha256", "dim", "pooling", "normalize", "max_seq_length")


class FingerprintMismatch(ValueError):
    """Vectors or queries from one embedding model met an index filled by another."""


def fingerprint_difference(expected: dict | None, got: dict | None) -> list:
    """The identity entries (see `IDENTITY_KEYS`) on which two fingerprints differ, as readable strings."""
    expected, got = expected or {}, got or {}
    return [f"{key}: {expected.get(key)!r} vs {got.get(key)!r}" for key in IDENTITY_KEYS
            if expected.get(key) != got.get(key)]


def check_fingerprint(index_fp: dict | None, encoder_fp: dict | None, what: str) -> None:
    """Raises FingerprintMismatch when `encoder_fp` does not describe the model that made `index_fp`."""
    diff = fingerprint_difference(index_fp, encoder_fp)
    if diff:
        name = (index_fp or {}).get("model")
        other = (encoder_fp or {}).get("model")
        raise FingerprintMismatch(
            f"{what}: the index was filled by model {name!r} but this encoder is {other!r}; mixing embedding "
            f"models gives meaningless scores. Differences (index vs encoder): {'; '.join(diff)}")


def guard_fingerprint(index: Any, fingerprint: dict | None, what: str) -> None:
    """Checks vectors from `fingerprint` may join the index (`Index.add`'s ``fingerprint=``); an empty index takes
    the fingerprint."""
    if fingerprint is None:
        return
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint: expected a dict (Encoder.fingerprint), got {type(fingerprint).__name__}")
    own = index.fingerprint
    if len(index) == 0:
        if own != fingerprint:
            index.metadata = {**index.metadata, "fingerprint": fingerprint}
    elif own is None:
        raise FingerprintMismatch(
            f"{what}: the index holds {len(index)} vectors of unknown origin (no fingerprint); adding vectors of "
            f"model {fingerprint.get('model')!r} would mix models")
    else:
        check_fingerprint(own, fingerprint, what)
