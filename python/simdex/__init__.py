"""simdex: exact vector search with a C++/SIMD core.

    >>> import numpy as np, simdex
    >>> index = simdex.Index(384)                      # cosine by default
    >>> ids = index.add(np.random.rand(1000, 384))
    >>> scores, ids = index.search(np.random.rand(384), k=5)
    >>> small = simdex.Index(384, dtype="int8")       # 1 byte per dimension, integer SIMD scoring
"""

from __future__ import annotations

import warnings

from . import _core
from ._core import get_num_threads, set_num_threads
from ._fingerprint import FingerprintMismatch
from ._core import FormatError
from ._index import DiagnosedResult, Index, SearchResult
from ._load import load_bytes
from . import faiss_compat
# FAISS's names at the top level, so that `import simdex as faiss` runs FAISS code (listed in faiss_compat.__all__).
from .faiss_compat import (IDSelector, IDSelectorArray, IDSelectorBatch, IDSelectorNot, IDSelectorRange,  # noqa: F401
                           IndexFlat, IndexFlatCosine, IndexFlatIP, IndexFlatL2, IndexIDMap, IndexIDMap2,
                           IndexIVF, IndexIVFFlat, IndexIVFScalarQuantizer, SearchParametersIVF,
                           IndexPreTransform, IndexScalarQuantizer, METRIC_INNER_PRODUCT, METRIC_L2, ScalarQuantizer,
                           SearchParameters, deserialize_index, index_factory, knn, normalize_L2,
                           omp_get_max_threads, omp_set_num_threads, read_index, serialize_index, vector_to_array,
                           write_index)
from .text.persist import load  # the index file, and (importing the text wing then) the texts beside it
from .transform import PCA, RandomProjection
from .truncate import Truncate

__version__ = _core.__version__

__all__ = [
    "Collection",
    "Document",
    "Encoder",
    "FingerprintMismatch",
    "FormatError",
    "Hit",
    "DiagnosedResult",
    "Index",
    "IndexFlatCosine",
    "IndexFlatIP",
    "IndexScalarQuantizer",
    "IngestReport",
    "PCA",
    "RandomProjection",
    "Truncate",
    "ReductionReport",
    "SearchResult",
    "ShardError",
    "ShardedIndex",
    "TextSearchResult",
    "UpsertReport",
    "distributed_ingest",
    "drift_report",
    "DriftReport",
    "calibrate",
    "Calibration",
    "SearchMonitor",
    "evaluate",
    "finetune",
    "FinetuneResult",
    "get_num_threads",
    "ingest",
    "load",
    "load_bytes",
    "read_index",
    "reduction_report",
    "set_num_threads",
    "simd_info",
    "simd_override",
    "write_index",
]

__all__ += [name for name in faiss_compat.__all__ if name not in __all__]


# The wings above Index, loaded on first use (PEP 562): `import simdex` loads the vectors-only core, not sqlite3,
# tqdm, Ray or matplotlib. name -> (module, attribute).
_LAZY = {
    "Encoder": ("text.encoder", "Encoder"),  # torch is imported when an Encoder is made
    "ingest": ("text.ingest", "ingest"),
    "IngestReport": ("text.ingest", "IngestReport"),
    "Collection": ("text.collection", "Collection"),
    "UpsertReport": ("text.collection", "UpsertReport"),
    "Document": ("text.docstore", "Document"),
    "Hit": ("text.docstore", "Hit"),
    "TextSearchResult": ("text.docstore", "TextSearchResult"),
    "ShardedIndex": ("shard.coordinator", "ShardedIndex"),
    "ShardError": ("shard.worker", "ShardError"),
    "distributed_ingest": ("shard.distributed", "distributed_ingest"),
    "evaluate": ("quality.evaluate", "evaluate"),
    "calibrate": ("quality.calibrate", "calibrate"),
    "Calibration": ("quality.calibrate", "Calibration"),
    "drift_report": ("quality.drift", "drift_report"),
    "DriftReport": ("quality.drift", "DriftReport"),
    "SearchMonitor": ("quality.monitor", "SearchMonitor"),
    "finetune": ("quality.finetune", "finetune"),
    "FinetuneResult": ("quality.finetune", "FinetuneResult"),
    "ReductionReport": ("quality.reduction", "ReductionReport"),
    "reduction_report": ("quality.reduction", "reduction_report"),
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        value = getattr(import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simdex' has no attribute {name!r}")


def simd_info() -> dict:
    """SIMD levels: ``compiled`` into this build, ``supported`` on this CPU, and ``active`` now; ``int8``
    names the int8 kernels the active level runs (``avx512_vnni``, ``avx_vnni``, ``avx2``, ``neon_dotprod``...)."""
    return _core.simd_info()


class simd_override:
    """Context manager that runs its body with another SIMD level (tests and benchmarks).

    >>> with simdex.simd_override("scalar"):
    ...     index.search(q, 10)
    """

    def __init__(self, isa: str) -> None:
        self.isa = isa

    def __enter__(self) -> "simd_override":
        self._previous = _core.simd_info()["active"]
        _core.set_simd(self.isa)
        return self

    def __exit__(self, *exc: object) -> None:
        _core.set_simd(self._previous)


_note = _core.simd_info()["note"]
if "not" in _note:
    warnings.warn(_note, RuntimeWarning, stacklevel=2)
