"""Common FAISS snippets (the tutorial and wiki usage: flat indexes, cosine, id maps, removal, selectors, range
search, reconstruction, the factory, quantization, I/O), each a function of the input arrays returning what it
computed. tests/test_faiss_compat.py runs this file twice: as it is, and with its import line replaced by
``import simdex as faiss``, and compares the results key by key (the key's prefix says how: see there).
"""
import os
import tempfile

import faiss
import numpy as np


def flat_l2(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "ntotal": index.ntotal}


def flat_l2_sanity_check(xb, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    D, I = index.search(xb[:5], 4)  # each vector finds itself first, at distance 0
    return {"dist": D, "ids": I}


def flat_ip(xb, xq, **_):
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    D, I = index.search(xq, 7)
    return {"dist": D, "ids": I}


def cosine_with_normalize_l2(xb, xq, **_):
    xb, xq = xb.copy(), xq.copy()
    faiss.normalize_L2(xb)
    faiss.normalize_L2(xq)
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"vec_xb": xb, "dist": D, "ids": I}


def index_flat_with_metric(xb, xq, **_):
    default = faiss.IndexFlat(xb.shape[1])
    ip = faiss.IndexFlat(xb.shape[1], faiss.METRIC_INNER_PRODUCT)
    default.add(xb)
    ip.add(xb)
    D1, I1 = default.search(xq, 3)
    D2, I2 = ip.search(xq, 3)
    return {"dist_l2": D1, "ids_l2": I1, "dist_ip": D2, "ids_ip": I2,
            "metrics": [default.metric_type, ip.metric_type]}


def properties(xb, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    before = [index.d, index.ntotal, index.is_trained, index.metric_type == faiss.METRIC_L2]
    index.add(xb[:100])
    index.add(xb[100:250])
    return {"before": before, "after": [index.ntotal, index.is_trained]}


def add_in_batches(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    for start in range(0, len(xb), 300):
        index.add(xb[start:start + 300])
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "ntotal": index.ntotal}


def add_float64(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb.astype(np.float64))
    D, I = index.search(xq.astype(np.float64), 4)
    return {"dist": D, "ids": I}


def k_larger_than_ntotal(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb[:3])
    D, I = index.search(xq[:2], 6)  # missing results: id -1, distance FLT_MAX
    ip = faiss.IndexFlatIP(xb.shape[1])
    ip.add(xb[:3])
    D2, I2 = ip.search(xq[:2], 6)
    return {"dist": D, "ids": I, "dist_ip": D2, "ids_ip": I2}


def preallocated_outputs(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    D = np.empty((len(xq), 4), dtype=np.float32)
    I = np.empty((len(xq), 4), dtype=np.int64)
    index.search(xq, 4, D=D, I=I)
    return {"dist": D, "ids": I}


def id_map_add_with_ids(xb, xq, ids, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatL2(xb.shape[1]))
    index.add_with_ids(xb, ids)
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "ntotal": index.ntotal}


def id_map2_reconstruct(xb, ids, **_):
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(xb.shape[1]))
    index.add_with_ids(xb, ids)
    return {"vec": np.stack([index.reconstruct(int(i)) for i in ids[[0, 7, 99]]])}


def id_map_remove_ids(xb, xq, ids, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatIP(xb.shape[1]))
    index.add_with_ids(xb, ids)
    removed = index.remove_ids(faiss.IDSelectorBatch(ids[:500]))
    D, I = index.search(xq, 5)
    return {"removed": removed, "ntotal": index.ntotal, "dist": D, "ids": I}


def flat_remove_ids_renumbers(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    removed = index.remove_ids(np.arange(0, 400, 3))  # the rest shift down to stay 0..ntotal-1
    D, I = index.search(xq, 5)
    index.add(xb[:10])  # appended after the survivors
    D2, I2 = index.search(xb[:2], 2)
    return {"removed": removed, "ntotal": index.ntotal, "dist": D, "ids": I, "dist_after_add": D2,
            "ids_after_add": I2}


def remove_ids_range(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    removed = index.remove_ids(faiss.IDSelectorRange(100, 600))
    D, I = index.search(xq, 5)
    return {"removed": removed, "ntotal": index.ntotal, "dist": D, "ids": I}


def search_with_batch_selector(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.arange(1000, 1300)))
    D, I = index.search(xq, 5, params=params)
    return {"dist": D, "ids": I}


def search_with_range_selector(xb, xq, ids, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatIP(xb.shape[1]))
    index.add_with_ids(xb, ids)
    params = faiss.SearchParameters(sel=faiss.IDSelectorRange(0, 500_000))
    D, I = index.search(xq, 5, params=params)
    return {"dist": D, "ids": I}


def range_search_l2(xb, xq, radius_l2, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    return {"range": index.range_search(xq, radius_l2)}


def range_search_ip(xb, xq, radius_ip, **_):
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    return {"range": index.range_search(xq, radius_ip)}


def range_search_with_ids(xb, xq, ids, radius_l2, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatL2(xb.shape[1]))
    index.add_with_ids(xb, ids)
    return {"range": index.range_search(xq[:4], 1.5 * radius_l2)}


def reconstruct_one(xb, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    return {"vec": index.reconstruct(17)}


def reconstruct_n(xb, **_):
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    index.remove_ids(np.array([2, 3]))
    return {"vec": index.reconstruct_n(0, 10)}


def factory_flat(xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "Flat")
    index.add(xb)
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "metric": index.metric_type}


def factory_flat_inner_product(xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(xb)
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "metric": index.metric_type}


def factory_idmap_flat(xb, xq, ids, **_):
    index = faiss.index_factory(xb.shape[1], "IDMap,Flat")
    index.add_with_ids(xb, ids)
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I}


def factory_pca_flat(xt, xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "PCA16,Flat")
    trained_before = index.is_trained
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"trained": [trained_before, index.is_trained], "d": index.d, "dist": D, "ids": I}


def factory_pca_flat_ip(xt, xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "PCA16,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"dist": D, "ids": I}


def factory_sq8(xt, xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "SQ8")
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"approx_dist": D, "approx_ids": I, "ntotal": index.ntotal}


def factory_pca_sq8(xt, xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "PCA16,SQ8")
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"approx_dist": D, "approx_ids": I}


def ivf_flat_l2(xt, xb, xq, **_):
    d, nlist = xb.shape[1], 8
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    trained_before = index.is_trained
    index.train(xt)
    index.add(xb)
    index.nprobe = nlist  # every list probed: the exact neighbours, whatever the centroids
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "flags": [trained_before, index.is_trained, index.ntotal, index.nprobe]}


def ivf_flat_inner_product(xt, xb, xq, **_):
    d = xb.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 5, params=faiss.SearchParametersIVF(nprobe=8))
    return {"dist": D, "ids": I, "nprobe_after": index.nprobe}


def factory_ivf_flat(xt, xb, xq, **_):
    index = faiss.index_factory(xb.shape[1], "IVF8,Flat", faiss.METRIC_L2)
    index.train(xt)
    index.add(xb)
    index.nprobe = 8
    D, I = index.search(xq, 5)
    return {"dist": D, "ids": I, "ntotal": index.ntotal}


def ivf_scalar_quantizer(xt, xb, xq, **_):
    d = xb.shape[1]
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(d), d, 8, faiss.ScalarQuantizer.QT_8bit)
    index.train(xt)
    index.add(xb)
    index.nprobe = 8
    D, I = index.search(xq, 10)
    return {"approx_dist": D, "approx_ids": I, "ntotal": index.ntotal}


def scalar_quantizer_inner_product(xt, xb, xq, **_):
    index = faiss.IndexScalarQuantizer(xb.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    trained_before = index.is_trained
    index.train(xt)
    index.add(xb)
    D, I = index.search(xq, 10)
    return {"trained": [trained_before, index.is_trained], "approx_dist": D, "approx_ids": I}


def serialize_round_trip(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    blob = faiss.serialize_index(index)
    back = faiss.deserialize_index(blob)
    D, I = back.search(xq, 5)
    return {"blob_dtype": str(blob.dtype), "ntotal": back.ntotal, "dist": D, "ids": I}


def write_and_read_index(xb, xq, ids, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatIP(xb.shape[1]))
    index.add_with_ids(xb, ids)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "example.index")
        faiss.write_index(index, path)
        back = faiss.read_index(path)
    D, I = back.search(xq, 5)
    return {"ntotal": back.ntotal, "dist": D, "ids": I}


def reset_and_reuse(xb, xq, **_):
    index = faiss.IndexFlatL2(xb.shape[1])
    index.add(xb)
    index.reset()
    empty = index.ntotal
    index.add(xb[:500])
    D, I = index.search(xq, 3)
    return {"empty": empty, "dist": D, "ids": I}


def single_thread_search(xb, xq, **_):
    faiss.omp_set_num_threads(1)
    try:
        index = faiss.IndexFlatL2(xb.shape[1])
        index.add(xb)
        D, I = index.search(xq, 5)
    finally:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {"dist": D, "ids": I}


def knn_function(xb, xq, **_):
    D, I = faiss.knn(xq, xb, 5)
    D2, I2 = faiss.knn(xq, xb, 5, faiss.METRIC_INNER_PRODUCT)
    return {"dist": D, "ids": I, "dist_ip": D2, "ids_ip": I2}


def id_map_vector_to_array(xb, ids, **_):
    index = faiss.IndexIDMap(faiss.IndexFlatL2(xb.shape[1]))
    index.add_with_ids(xb[:50], ids[:50])
    return {"id_map": faiss.vector_to_array(index.id_map)}


RECIPES = [value for name, value in list(globals().items())
           if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == __name__]
