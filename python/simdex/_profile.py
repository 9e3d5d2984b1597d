"""The reference profile an index keeps of its own vectors, for drift reports (`simdex.drift_report`).

``index.metadata["drift_profile"]``, recorded by `Index.save` once the index holds `PROFILE_MIN_VECTORS` vectors
(and again whenever it has doubled or halved since), so it travels in the index file: the mean vector, the top
principal directions and the eigenvalue spectrum of a sample of the stored vectors, and the top-1 score of a probe
sample of stored vectors against the rest of the index (its nearest other neighbour). Later vectors are compared to
it by `simdex.quality.drift`. In an index with a transform (PCA, ...) everything is in the reduced space and the
top-1 probe is not recorded (stored rows there are not queries).
"""

from __future__ import annotations

import base64
from typing import Any, Dict, Optional

import numpy as np

PROFILE_KEY = "drift_profile"
PROFILE_MIN_VECTORS = 1000
SAMPLE = 4096        # stored vectors for the mean and the covariance
PROBES = 256         # stored vectors whose nearest other neighbour gives the top-1 distribution
COMPONENTS = 16      # principal directions kept (float16) to tell a different model's vectors
SPECTRUM = 32        # leading eigenvalues kept
MIN_Z = 3.0          # as simdex.diagnostics: a top-1 fewer standard deviations above the query's mean is "unspecific"


def pack(a: np.ndarray, dtype: str = "<f4") -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype).tobytes()).decode("ascii")


def unpack(text: str, dtype: str = "<f4", shape: Optional[tuple] = None) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(text), dtype).astype(np.float64)
    return a.reshape(shape) if shape is not None else a


def stored_space(index: Any, vectors: np.ndarray) -> np.ndarray:
    """Vectors as the index stores them: unit rows under cosine, then projected by its transform if it has one."""
    x = np.asarray(vectors, np.float64)
    if index.metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    if index.transform is not None:
        x = np.asarray(index.transform.transform(x.astype(np.float32)), np.float64)
    return x


def spread(x: np.ndarray, directions: bool = False) -> Dict[str, Any]:
    """Mean and covariance eigenvalues (descending) of the rows of x, and the eigenvectors (rows) if asked. The
    smaller of the covariance (dim x dim) and the Gram matrix (rows x rows) is decomposed."""
    n, d = x.shape
    mean = x.mean(axis=0)
    c = x - mean
    scale = 1.0 / max(1, n - 1)
    if d <= n:
        cov = (c.T @ c) * scale
        if not directions:  # eigenvalues alone cost a fraction of the full decomposition
            return {"mean": mean, "eigenvalues": np.maximum(np.linalg.eigvalsh(cov)[::-1], 0.0)}
        w, v = np.linalg.eigh(cov)
        return {"mean": mean, "eigenvalues": np.maximum(w[::-1], 0.0), "components": v[:, ::-1].T}
    w, u = np.linalg.eigh((c @ c.T) * scale)
    w, u = np.maximum(w[::-1], 0.0), u[:, ::-1]
    if not directions:
        return {"mean": mean, "eigenvalues": w}
    comps = u.T @ c
    norms = np.linalg.norm(comps, axis=1, keepdims=True)
    return {"mean": mean, "eigenvalues": w, "components": comps / np.where(norms > 0, norms, 1.0)}


def z_scores(vectors: np.ndarray, best: np.ndarray, mean: np.ndarray, comps: np.ndarray, eig: np.ndarray,
             residual: float) -> np.ndarray:
    """How far each top-1 score stands above the query's scores over the corpus, in standard deviations, with the
    covariance approximated by its leading directions plus an even spread of the rest (`residual` per dim)."""
    proj = vectors @ comps.T
    var = (proj ** 2) @ eig + residual * np.maximum((vectors ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0)
    return (best - vectors @ mean) / np.sqrt(np.maximum(var, 1e-24))


def build_profile(index: Any, probes: int = PROBES, sample: int = SAMPLE, seed: int = 0) -> Dict[str, Any]:
    """The reference profile of an index's stored vectors (see the module docstring)."""
    n = len(index)
    if n < 3:
        raise ValueError(f"a drift profile needs at least 3 vectors, the index holds {n}")
    ids = index.ids()
    rng = np.random.default_rng(seed)
    # Wide vectors: fewer rows keep the decomposition about as cheap as at 1024 dimensions.
    rows = np.sort(rng.choice(n, min(n, sample if index.dim <= 1024 else 1024), replace=False))
    x = np.asarray(index.reconstruct(ids[rows]), np.float64)
    s = spread(x, directions=True)
    m = min(COMPONENTS, len(s["components"]))
    eig, comps = s["eigenvalues"], s["components"][:m]
    total = float(eig.sum())
    residual = (total - float(eig[:m].sum())) / max(1, x.shape[1] - m)
    profile: Dict[str, Any] = {
        "version": 1, "n": int(n), "dim": int(x.shape[1]), "sample": int(len(x)),
        "mean": pack(s["mean"]), "components": pack(comps, "<f2"),
        "eigenvalues": [float(e) for e in eig[:SPECTRUM]], "total_variance": total,
        "captured": float(eig[:m].sum() / total) if total > 0 else 0.0,
        "spectrum_noise": _split_half_noise(x, rng),
        "top1": None, "unspecific": None,
    }
    if index.transform is None:
        take = rng.choice(n, min(n, probes), replace=False)
        probe_ids = ids[take]
        vecs = np.asarray(index.reconstruct(probe_ids), np.float32)
        scores, found = index.search(vecs, 2)
        # The probe finds itself first; its nearest other neighbour is the score a new vector would get.
        best = np.where(found[:, 0] == probe_ids, scores[:, 1], scores[:, 0]).astype(np.float64)
        live = np.isfinite(best)
        z = z_scores(vecs[live].astype(np.float64), best[live], s["mean"], comps, eig[:m], residual)
        profile["top1"] = [round(float(b), 5) for b in best[live]]
        # Under l2 the best is the smallest distance, which a z-score above the mean does not describe.
        if index.metric != "l2":
            profile["unspecific"] = float(np.mean(z < MIN_Z)) if live.any() else 0.0
    return profile


def _split_half_noise(x: np.ndarray, rng: np.random.Generator) -> float:
    """The spectrum distance between two random halves of the sample: what sampling alone gives at len(x) / 2."""
    if len(x) < 8:
        return 0.0
    order = rng.permutation(len(x))
    a, b = x[order[: len(x) // 2]], x[order[len(x) // 2:]]
    return spectrum_distance(spread(a)["eigenvalues"], spread(b)["eigenvalues"])


def spectrum_distance(a: np.ndarray, b: np.ndarray, top: int = SPECTRUM) -> float:
    """L1 distance between the shares of variance along the leading `top` directions of two spectra."""
    a, b = np.asarray(a, np.float64)[:top], np.asarray(b, np.float64)[:top]
    k = min(len(a), len(b))
    sa, sb = a.sum(), b.sum()
    if k == 0 or sa <= 0 or sb <= 0:
        return 0.0
    return float(np.abs(a[:k] / sa - b[:k] / sb).sum())


def refresh_profile(index: Any) -> None:
    """Records the profile in the index's metadata when it has none and holds enough vectors, or when it has
    doubled or halved since the last one (`Index.save` calls this)."""
    n = len(index)
    if n < PROFILE_MIN_VECTORS or getattr(index._core, "mapped", False):
        return
    meta = index.metadata
    old = meta.get(PROFILE_KEY)
    if isinstance(old, dict) and old.get("n") and old["n"] / 2 < n < old["n"] * 2:
        return
    try:
        meta[PROFILE_KEY] = build_profile(index)
    except (ValueError, KeyError, IndexError):
        # An extra, never a reason for a save to fail: a concurrent remove can take a sampled id away. The next
        # save tries again.
        return
    index.metadata = meta
