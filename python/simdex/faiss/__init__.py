"""FAISS names over simdex indexes, so FAISS code runs with only the import changed (``import simdex as faiss``):
``IndexFlatL2``, ``IndexFlatIP``, ``IndexFlat(d, metric)``, ``IndexScalarQuantizer``, ``IndexIDMap`` /
``IndexIDMap2``, ``IndexIVFFlat`` / ``IndexIVFScalarQuantizer`` (with ``nprobe``), ``index_factory``,
``normalize_L2``, ``range_search``, ``reconstruct_n``, ``remove_ids`` with id selectors,
``SearchParameters(sel=...)``, ``write_index`` / ``read_index``, ``serialize_index`` / ``deserialize_index``,
``omp_set_num_threads``, ``knn``.

Differences from FAISS: D is padded with +-FLT_MAX as FAISS pads, but the scores come from simdex's kernels (same
values within float32 rounding; L2 distances are recomputed from q - x, so they are accurate even for
near-duplicates, where FAISS's ||q||^2 - 2<q,x> + ||x||^2 loses digits). The scalar quantizer has its own ranges
(robust per-dimension ranges, codes in [-127, 127]), so its results are close to FAISS's SQ8, not identical.
Errors are Python exceptions (ValueError / TypeError / IndexError) rather than FAISS's RuntimeError and
AssertionError; ``index_factory`` raises ValueError naming what it supports.
"""

from ._common import (METRIC_INNER_PRODUCT, METRIC_L2, IDSelector, IDSelectorArray, IDSelectorBatch, IDSelectorNot,
                      IDSelectorRange, ScalarQuantizer, SearchParameters, normalize_L2, omp_get_max_threads,
                      omp_set_num_threads, vector_to_array)
from ._factory import index_factory, register_index_type  # noqa: F401 - the hook for more index types
from ._indexes import (FaissIndex, IndexFlat,  # noqa: F401 - FaissIndex: the base class (FAISS's Index)
                       IndexFlatCosine, IndexFlatIP, IndexFlatL2, IndexIDMap, IndexIDMap2,
                       IndexPreTransform, IndexScalarQuantizer, knn)
from ._io import deserialize_index, read_index, serialize_index, write_index
from ._ivf import IndexIVF, IndexIVFFlat, IndexIVFScalarQuantizer, SearchParametersIVF  # registers "IVF<n>,..."

#: The names `import simdex as faiss` reaches (simdex/__init__.py imports them through simdex.faiss_compat).
__all__ = [
    "IDSelector", "IDSelectorArray", "IDSelectorBatch", "IDSelectorNot", "IDSelectorRange", "IndexFlat",
    "IndexIVF", "IndexIVFFlat", "IndexIVFScalarQuantizer", "SearchParametersIVF",
    "IndexFlatCosine", "IndexFlatIP", "IndexFlatL2", "IndexIDMap", "IndexIDMap2", "IndexPreTransform",
    "IndexScalarQuantizer", "METRIC_INNER_PRODUCT", "METRIC_L2", "ScalarQuantizer", "SearchParameters",
    "deserialize_index", "index_factory", "knn", "normalize_L2", "omp_get_max_threads", "omp_set_num_threads",
    "read_index", "serialize_index", "vector_to_array", "write_index",
]
