"""Drift reports: do new documents or recent queries still look like what the index was built from?

    report = simdex.drift_report(index, new_vectors)          # or texts: embedded with the index's model
    print(report)                                              # a verdict in words, then the figures
    report.verdict                                             # "no drift", "shift" or "model change"

The index's reference profile (``index.metadata["drift_profile"]``, recorded by `Index.save`; see
`simdex._profile`) holds the mean, the leading principal directions and spectrum of its vectors, and the top-1
scores of a probe sample. The new vectors are compared on four figures, each against what sampling alone would
give at their count:

- centroid shift: distance between the means, over the reference's spread (sqrt of total variance);
- spectrum distance: L1 distance between the shares of variance of the leading eigenvalues;
- KS statistic between the top-1 scores of the new vectors and of the probe (scipy's ks_2samp when installed);
- the share of "unspecific" vectors (top-1 fewer than 3 standard deviations above their mean score).

Vectors from another model live in other coordinates: they put no more of their variance along the reference's
principal directions than random directions would get, or their centre lies farther away than a change of topic
moves it (`MODEL_CAPTURE`, `MODEL_SHIFT`). That is called a model change; a moved centroid, spectrum or top-1
distribution otherwise is a shift of the corpus or query mix. Both limits were set on MiniLM embeddings of real
text (bench/README_quality.md); another model family may need them measured again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .._profile import MIN_Z, PROFILE_KEY, build_profile, spectrum_distance, spread, stored_space, unpack, z_scores

#: New vectors putting less than this multiple of the share random directions would get along the reference's
#: principal directions share no directions with it: other coordinates, another model. Measured on MiniLM
#: (bench/README_quality.md): a random rotation 1.0x, WordNet glosses against Python docs 2.2x, man pages 4-5x.
MODEL_CAPTURE = 1.5
#: A centroid this many reference spreads away is farther than a change of topic moved it in those measurements
#: (0.2-0.4 for man pages or WordNet against Python docs; 1.0 for MiniLM's transformer with CLS pooling).
MODEL_SHIFT = 0.75
CENTROID_SHIFT = 0.15    # least centroid shift (in reference spreads) worth reporting, beyond sampling noise
KS_STAT = 0.1            # least KS statistic worth reporting
P_VALUE = 1e-3           # a difference this unlikely under sampling alone is reported
UNSPECIFIC_RISE = 0.1    # least rise in the share of unspecific vectors worth reporting


@dataclass
class DriftReport:
    """The comparison of new vectors with an index's reference profile; ``verdict`` is "no drift", "shift" or
    "model change", ``summary`` says it in words, ``findings`` gives each flagged figure."""

    verdict: str
    summary: str
    findings: List[str]
    figures: Dict[str, Any] = field(default_factory=dict)

    def lines(self) -> List[str]:
        out = [f"drift: {self.verdict}", f"  {self.summary}"] + [f"  - {f}" for f in self.findings]
        out.append("  figures:")
        for key, value in self.figures.items():
            out.append(f"    {key}: {value:.4f}" if isinstance(value, float) else f"    {key}: {value}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> Dict[str, Any]:
        return {"verdict": self.verdict, "summary": self.summary, "findings": self.findings, "figures": self.figures}


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple:
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test: scipy's when installed, else the same
    statistic with the asymptotic p-value (Kolmogorov distribution) in numpy."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        raise ValueError("ks_2samp: both samples need at least one value")
    try:
        from scipy.stats import ks_2samp as scipy_ks
    except ImportError:
        grid = np.r_[a, b]
        d = float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a)
                                - np.searchsorted(b, grid, "right") / len(b))))
        ne = len(a) * len(b) / (len(a) + len(b))
        lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
        p = 2 * sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
        return d, float(min(1.0, max(0.0, p)))
    res = scipy_ks(a, b)
    return float(res.statistic), float(res.pvalue)


def drift_report(index: Any, new: Any, *, encoder: Any = None, profile: Optional[dict] = None,
                 batch_size: Optional[int] = None) -> DriftReport:
    """Compares new documents or queries with the index's reference profile.

    Args:
        index: a `simdex.Index`. Its recorded profile (`simdex._profile`) is used; an index without one (never
            saved, or under `PROFILE_MIN_VECTORS` vectors) is profiled now, from its current vectors.
        new: vectors (n, dim), or texts (a list of str) embedded with `encoder`.
        encoder: for texts: default the model in the index's fingerprint (`simdex.Encoder`).
        profile: a profile to compare to instead of the index's (e.g. one recorded from a sample of queries
            with `simdex._profile.build_profile`).
        batch_size: passed to the encoder for texts.

    Raises:
        ValueError: fewer than 3 new vectors, NaN or Inf in them, or texts with no way to embed them.
    """
    texts = isinstance(new, (list, tuple)) and bool(new) and all(isinstance(t, str) for t in new)
    own_fp = index.fingerprint
    if texts and encoder is not None and isinstance(own_fp, dict):  # decided before embedding anything
        verdict = _other_model(own_fp, encoder.fingerprint, len(new))
        if verdict is not None:
            return verdict
    vectors, fingerprint = _vectors(index, new, encoder, batch_size)
    ref = profile if profile is not None else index.metadata.get(PROFILE_KEY) or build_profile(index)
    if vectors.shape[1] != index.dim:
        return DriftReport("model change",
                           f"the new vectors have {vectors.shape[1]} dimensions and the index {index.dim}: "
                           "a different model produced them; re-embed the corpus with one model.",
                           [f"dimension {vectors.shape[1]} vs {index.dim}"], {"n": len(vectors)})
    if isinstance(fingerprint, dict) and isinstance(own_fp, dict):
        verdict = _other_model(own_fp, fingerprint, len(vectors))
        if verdict is not None:
            return verdict
    report = compare(ref, stored_space(index, vectors), index if ref.get("top1") is not None else None)
    if report.verdict == "shift" and fingerprint is None:
        # Measured (bench/README_quality.md): a fine-tuned MiniLM's vectors of same-corpus texts move the figures as
        # much as a change of corpus does, and no figure of the vectors alone tells the two apart.
        report.summary += (" Vectors alone cannot rule out a subtly changed model (a fine-tuned version, say): pass "
                           "the texts with their encoder, whose fingerprint is then checked.")
    return report


def compare(ref: dict, x: np.ndarray, index: Any = None) -> DriftReport:
    """The report for vectors x (already in the index's stored space) against a profile; with `index`, top-1
    scores are searched there and compared to the profile's probe."""
    n, d = x.shape
    if d != ref["dim"]:
        raise ValueError(f"profile: recorded at dim {ref['dim']}, vectors have {d}")
    mean = unpack(ref["mean"])
    m = len(unpack(ref["components"], "<f2")) // d
    comps = unpack(ref["components"], "<f2", (m, d))
    eig = np.asarray(ref["eigenvalues"], np.float64)
    total = float(ref["total_variance"])
    new = spread(x)
    figures: Dict[str, Any] = {"n": n, "reference n": ref["n"], "reference sample": ref["sample"]}
    findings: List[str] = []

    # Centroid: sampling alone moves a mean of n rows by about sqrt(total / n).
    shift = float(np.linalg.norm(new["mean"] - mean) / math.sqrt(max(total, 1e-24)))
    noise = math.sqrt(1 / n + 1 / ref["sample"])
    norms = float(np.linalg.norm(new["mean"]) * np.linalg.norm(mean))
    cos = float(new["mean"] @ mean / norms) if norms > 0 else 0.0
    figures.update({"centroid shift": shift, "centroid shift limit": CENTROID_SHIFT + 3 * noise,
                    "centroid cosine": cos})
    shift_flag = shift > CENTROID_SHIFT + 3 * noise
    if shift_flag:
        findings.append(f"centroid moved by {shift:.2f} reference spreads (sampling alone: about {noise:.2f})")

    # Shared directions: variance of the new vectors along the reference's principal directions.
    centered = x - new["mean"]
    new_total = float((centered ** 2).sum() / max(1, n - 1))
    captured = float(((centered @ comps.T) ** 2).sum() / max(1, n - 1) / new_total) if new_total > 0 else 0.0
    ratio = captured / ref["captured"] if ref["captured"] > 0 else 1.0
    random_share = m / d
    figures.update({"captured": captured, "reference captured": ref["captured"], "captured ratio": ratio,
                    "captured / random directions": captured / random_share})

    spec = spectrum_distance(eig, new["eigenvalues"])
    spec_limit = max(0.1, 3 * ref["spectrum_noise"] * math.sqrt(ref["sample"] / 2 / n))
    figures.update({"spectrum distance": spec, "spectrum distance limit": spec_limit})
    if spec > spec_limit:
        findings.append(f"the spread of the vectors changed: spectrum distance {spec:.3f} (limit {spec_limit:.3f})")

    ks_flag = unspec_flag = False
    if index is not None and ref.get("top1"):
        probe = np.asarray(ref["top1"], np.float64)
        scores, _ = index.search(x.astype(np.float32), 1)
        best = scores[:, 0].astype(np.float64)
        live = np.isfinite(best)
        stat, p = ks_2samp(probe, best[live])
        ks_flag = stat > KS_STAT and p < P_VALUE
        figures.update({"top-1 mean": float(best[live].mean()), "reference top-1 mean": float(probe.mean()),
                        "top-1 KS statistic": stat, "top-1 KS p-value": p})
        if ks_flag:
            findings.append(f"top-1 scores changed: mean {best[live].mean():.3f} vs {probe.mean():.3f} "
                            f"(KS {stat:.2f}, p {p:.1e})")
        if ref.get("unspecific") is not None:  # not recorded under l2
            residual = (total - float(eig[:m].sum())) / max(1, d - m)
            z = z_scores(x[live], best[live], mean, comps, eig[:m], residual)
            share, ref_share = float(np.mean(z < MIN_Z)), float(ref["unspecific"])
            pooled = (share * live.sum() + ref_share * len(probe)) / (live.sum() + len(probe))
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / live.sum() + 1 / len(probe)))
            unspec_flag = share - ref_share > UNSPECIFIC_RISE and (share - ref_share) / se > 3
            figures.update({"unspecific share": share, "reference unspecific share": ref_share})
            if unspec_flag:
                findings.append(f"more vectors match nothing in particular: {share:.1%} unspecific vs "
                                f"{ref_share:.1%}")

    # Only a reference whose leading directions stand out (well above random) can tell shared directions apart.
    unrelated = ref["captured"] > 3 * random_share and captured < MODEL_CAPTURE * random_share
    if unrelated:
        findings.insert(0, f"only {captured:.1%} of the new vectors' variance lies along the reference's "
                           f"{m} principal directions ({ref['captured']:.1%} for the reference; random directions "
                           f"would hold about {random_share:.1%})")
    elif shift > MODEL_SHIFT:
        findings.insert(0, f"the centroid moved {shift:.2f} reference spreads, farther than a change of topic "
                           f"moves it ({MODEL_SHIFT})")
    if unrelated or shift > MODEL_SHIFT:
        summary = ("a different model (or a changed model version, pooling or preprocessing) produced these "
                   "vectors: " + ("they share no principal directions with the index's" if unrelated else
                                  "their centre lies far from the index's") +
                   ". Re-embed the corpus with one model before comparing scores.")
        return DriftReport("model change", summary, findings, figures)
    if shift_flag or ks_flag or unspec_flag or spec > spec_limit:
        what = [w for w, flag in (("the centroid moved", shift_flag), ("top-1 scores changed", ks_flag),
                                  ("more vectors are unspecific", unspec_flag), ("the spread changed",
                                                                                 spec > spec_limit)) if flag]
        summary = (f"the corpus or query mix has shifted ({', '.join(what)}), in the same embedding space "
                   f"({ratio:.0%} of the reference's principal-direction variance kept): expect recall and score "
                   "thresholds measured on the old mix to be off; re-evaluate and recalibrate on current data.")
        return DriftReport("shift", summary, findings, figures)
    return DriftReport("no drift", "the new vectors look like the index's: no figure moved beyond what sampling "
                                   "alone would give.", findings, figures)


def _other_model(own_fp: dict, fingerprint: Any, n: int) -> Optional[DriftReport]:
    """A "model change" report when the encoder's fingerprint is not the index's, else None."""
    from .._fingerprint import fingerprint_difference

    diff = fingerprint_difference(own_fp, fingerprint) if isinstance(fingerprint, dict) else None
    if not diff:
        return None
    return DriftReport("model change", f"the encoder is not the model that filled the index "
                       f"({own_fp.get('model')!r} vs {fingerprint.get('model')!r}).", diff, {"n": n})


def _vectors(index: Any, new: Any, encoder: Any, batch_size: Optional[int]) -> tuple:
    if isinstance(new, (list, tuple)) and new and all(isinstance(t, str) for t in new):
        if encoder is None:
            fp = index.fingerprint
            if not isinstance(fp, dict) or not fp.get("model"):
                raise ValueError("drift_report: texts need an encoder, and the index records no model; pass encoder=")
            import simdex

            encoder = simdex.Encoder(fp["model"])
        kw = {} if batch_size is None else {"batch_size": batch_size}
        x, fingerprint = np.asarray(encoder.embed_batch(list(new), **kw), np.float64), encoder.fingerprint
    else:
        x, fingerprint = np.asarray(new, dtype=np.float64), None
    if x.ndim != 2:
        raise ValueError(f"new: expected texts or vectors of shape (n, dim), got shape {x.shape}")
    if len(x) < 3:
        raise ValueError(f"new: a drift report needs at least 3 vectors, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("new: vectors hold NaN or Inf")
    return x, fingerprint
