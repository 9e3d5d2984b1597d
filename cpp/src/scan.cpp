#include "simdex/scan.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "scorers-inl.hpp"
#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowsPerTask = 4096;      // single-query scan: rows per task
constexpr std::size_t kQueriesPerPass = 4096;   // batch: queries whose top-k lists are kept at once
constexpr std::size_t kQueryPanelsPerTile = 8;  // batch: query panels scored against one database tile

using detail::B1Scorer;
using detail::Buffer;
using detail::F32Scorer;
using detail::I8Scorer;

// Binary rows in the int8 GEMM: each database tile's bits are expanded to +-1 codes and packed like int8 rows,
// then the int8 micro-kernel scores it against int8 query weights (a batch's fast path, run_search_b1_gemm).
struct B1GemmScorer : I8Scorer {
    using Elem = std::uint8_t;
    static std::size_t stride(std::size_t dim) { return kernels::b1_bytes(dim); }
    void pack_db(const std::uint8_t* x, std::size_t n, std::size_t dim, std::uint8_t* out) const {
        static const SignTable table;
        thread_local Buffer<std::int8_t> scratch;
        Buffer<std::int8_t>& signs = scratch;
        signs.resize(n * dim);
        const std::size_t nb = kernels::b1_bytes(dim), full = dim / 8;
        for (std::size_t r = 0; r < n; ++r) {
            const std::uint8_t* bits = x + r * nb;
            std::int8_t* row = signs.data() + r * dim;
            for (std::size_t j = 0; j < full; ++j) std::memcpy(row + 8 * j, table.bytes[bits[j]], 8);
            if (dim % 8) std::memcpy(row + 8 * full, table.bytes[bits[full]], dim % 8);
        }
        kernels::pack_panels_i8(signs.data(), n, dim, nr(), kt.gemm_i8_flip, reinterpret_cast<std::int8_t*>(out));
    }
    // Each code byte as its 8 signs (bit i -> byte i: +1 when set, else -1).
    struct SignTable {
        std::int8_t bytes[256][8];
        SignTable() {
            for (int v = 0; v < 256; ++v)
                for (int i = 0; i < 8; ++i) bytes[v][i] = static_cast<std::int8_t>((v >> i) & 1 ? 1 : -1);
        }
    };
    void micro(const Queries& pq, std::size_t dim, std::size_t ip, std::size_t k0, std::size_t kc,
               const std::uint8_t* b, float* c, std::size_t ldc) const {
        I8Scorer::micro(pq, dim, ip, k0, kc, reinterpret_cast<const std::int8_t*>(b), c, ldc);
    }
};

template <class T>
bool allowed(const RowsView<T>& v, std::size_t row) {
    return !v.allow || (*v.allow)[row];
}

// l2: turns dot products into the ranking score dot - scale * ||x||^2 (one pass over a row of scores; next to
// the dim multiply-adds behind each score it costs little).
template <class T>
void subtract_norms(const RowsView<T>& v, std::size_t q, std::size_t row0, float* s, std::size_t count) {
    if (!v.norms) return;
    const float c = v.norm_scale[q];
    const float* n2 = v.norms + row0;
    for (std::size_t i = 0; i < count; ++i) s[i] -= c * n2[i];
}

template <class T>
void offer(TopKSet& top, std::size_t q, const RowsView<T>& v, std::size_t row0, const float* s,
           const std::uint32_t* idx, std::size_t count) {
    for (std::size_t c = 0; c < count; ++c) {
        // The threshold rises as the list fills: a score that fell below it since select_ge is dropped here,
        // without the call (a fresh list's first tile passes select_ge whole).
        const std::size_t row = row0 + idx[c];
        if (s[idx[c]] >= top.threshold(q) && allowed(v, row)) top.push(q, s[idx[c]], v.ids[row]);
    }
}

// How each worker's lists are made: k best over floor, and with margins the near entries too (TopKSet).
struct Lists {
    std::size_t k;
    float floor;
    const float* margins = nullptr;  // one per query of the pass
    std::size_t near_cap = 0;
    std::unique_ptr<TopKSet> make(std::size_t nq) const {
        return margins ? std::make_unique<TopKSet>(nq, k, floor, margins, near_cap)
                       : std::make_unique<TopKSet>(nq, k, floor);
    }
};

// Merges the workers' lists into the first.
std::unique_ptr<TopKSet> merged(std::vector<std::unique_ptr<TopKSet>>& parts, std::size_t nq) {
    parts.erase(std::remove(parts.begin(), parts.end(), nullptr), parts.end());
    for (std::size_t w = 1; w < parts.size(); ++w)
        for (std::size_t q = 0; q < nq; ++q) parts[0]->merge(q, *parts[w], q);
    return std::move(parts[0]);
}

template <class S>
std::unique_ptr<TopKSet> scan_one(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Query* q,
                                  const SearchParams& p, const Lists& lists) {
    const std::size_t bytes = v.n * S::stride(v.dim) * sizeof(typename S::Elem);
    const std::size_t workers = serial_scan(v.n, v.dim, bytes) ? 1 : num_threads();
    std::vector<std::unique_ptr<TopKSet>> parts(workers);
    std::vector<std::vector<float>> buf(workers);
    std::vector<std::vector<std::uint32_t>> idx(workers);
    const std::size_t tasks = (v.n + kRowsPerTask - 1) / kRowsPerTask;
    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            if (!parts[w]) {
                parts[w] = lists.make(1);
                buf[w].resize(kRowsPerTask);
                idx[w].resize(kRowsPerTask);
            }
            const std::size_t r0 = t * kRowsPerTask, rows = std::min(kRowsPerTask, v.n - r0);
            sc.rows(q, v.data + r0 * S::stride(v.dim), rows, v.dim, buf[w].data());
            subtract_norms(v, 0, r0, buf[w].data(), rows);
            const std::size_t count =
                sc.kt.select_ge_f32(buf[w].data(), rows, parts[w]->threshold(0), idx[w].data());
            offer(*parts[w], 0, v, r0, buf[w].data(), idx[w].data(), count);
        },
        p.interrupt);
    return merged(parts, 1);
}

// Per-worker buffers of the blocked scan.
template <class E>
struct GemmScratch {
    Buffer<E> packed_db;  // one database tile, nr-wide panels
    Buffer<float> c;      // query tile x database tile scores
    std::vector<std::uint32_t> idx;
    std::unique_ptr<TopKSet> top;
};

template <class S>
std::unique_ptr<TopKSet> scan_many(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Query* q,
                                   std::size_t nq, const SearchParams& p, const Lists& lists) {
    using E = typename S::Elem;
    const std::size_t mr = sc.mr(), nr = sc.nr(), dim = v.dim, d = S::depth(dim);
    const std::size_t q_panels = (nq + mr - 1) / mr;
    typename S::Queries packed_q;
    sc.pack_queries(q, nq, dim, packed_q);

    const std::size_t tile_rows = std::max(nr, S::kTileBytes / (d * sizeof(E)) / nr * nr);
    const std::size_t mc = mr * kQueryPanelsPerTile;
    const std::size_t tasks = (v.n + tile_rows - 1) / tile_rows;
    const std::size_t workers = num_threads();
    std::vector<GemmScratch<E>> scratch(workers);

    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            GemmScratch<E>& s = scratch[w];
            if (!s.top) {
                s.top = lists.make(nq);
                s.packed_db.resize(tile_rows * d);
                s.c.resize(mc * tile_rows);
                s.idx.resize(tile_rows);
            }
            const std::size_t r0 = t * tile_rows, rows = std::min(tile_rows, v.n - r0);
            const std::size_t db_panels = (rows + nr - 1) / nr, ldc = db_panels * nr;
            sc.pack_db(v.data + r0 * S::stride(dim), rows, dim, s.packed_db.data());
            for (std::size_t qp0 = 0; qp0 < q_panels; qp0 += kQueryPanelsPerTile) {
                const std::size_t qp1 = std::min(q_panels, qp0 + kQueryPanelsPerTile);
                for (std::size_t k0 = 0; k0 < d; k0 += S::kKc) {
                    const std::size_t kc = std::min(S::kKc, d - k0);
                    for (std::size_t jp = 0; jp < db_panels; ++jp) {
                        const E* b = s.packed_db.data() + jp * nr * d + k0 * nr;
                        for (std::size_t ip = qp0; ip < qp1; ++ip)
                            sc.micro(packed_q, dim, ip, k0, kc, b, s.c.data() + (ip - qp0) * mr * ldc + jp * nr, ldc);
                    }
                }
                const std::size_t q_end = std::min(nq, qp1 * mr);
                for (std::size_t qi = qp0 * mr; qi < q_end; ++qi) {
                    float* row = s.c.data() + (qi - qp0 * mr) * ldc;
                    subtract_norms(v, qi, r0, row, rows);
                    const std::size_t count = sc.kt.select_ge_f32(row, rows, s.top->threshold(qi), s.idx.data());
                    offer(*s.top, qi, v, r0, row, s.idx.data(), count);
                }
            }
        },
        p.interrupt);
    std::vector<std::unique_ptr<TopKSet>> parts;
    for (auto& s : scratch) parts.push_back(std::move(s.top));
    return merged(parts, nq);
}

// A batch through the single-query kernel: each task scores one database tile with every query in turn.
template <class S>
std::unique_ptr<TopKSet> scan_many_rows(const S& sc, const RowsView<typename S::Elem>& v,
                                        const typename S::Query* q, std::size_t nq, const SearchParams& p,
                                        const Lists& lists) {
    const std::size_t stride = S::stride(v.dim);
    const std::size_t tile_rows = S::tile_rows(v.dim);
    const std::size_t tasks = (v.n + tile_rows - 1) / tile_rows, workers = num_threads();
    std::vector<std::unique_ptr<TopKSet>> parts(workers);
    std::vector<std::vector<float>> buf(workers);
    std::vector<std::vector<std::uint32_t>> idx(workers);
    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            if (!parts[w]) {
                parts[w] = lists.make(nq);
                buf[w].resize(tile_rows);
                idx[w].resize(tile_rows);
            }
            const std::size_t r0 = t * tile_rows, rows = std::min(tile_rows, v.n - r0);
            for (std::size_t qi = 0; qi < nq; ++qi) {
                sc.rows(q + qi * v.dim, v.data + r0 * stride, rows, v.dim, buf[w].data());
                const std::size_t count =
                    sc.kt.select_ge_f32(buf[w].data(), rows, parts[w]->threshold(qi), idx[w].data());
                offer(*parts[w], qi, v, r0, buf[w].data(), idx[w].data(), count);
            }
        },
        p.interrupt);
    return merged(parts, nq);
}

// Scans in passes of kQueriesPerPass queries (bounding the workers' lists) and hands each pass's merged lists to
// emit(first query, queries in the pass, lists). One query alone goes through the row kernel unless the scorer
// has none (kRowsForOne).
template <bool kRowsForOne, class S, class Emit>
void scan_passes(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Query* q, std::size_t nq,
                 const SearchParams& p, const Lists& lists, Emit&& emit) {
    for (std::size_t q0 = 0; q0 < nq; q0 += kQueriesPerPass) {
        const std::size_t m = std::min(kQueriesPerPass, nq - q0);
        RowsView<typename S::Elem> part = v;
        if (part.norm_scale) part.norm_scale += q0;
        Lists pass = lists;
        if (pass.margins) pass.margins += q0;
        const typename S::Query* pq = q + q0 * v.dim;
        std::unique_ptr<TopKSet> top;
        if constexpr (!S::kBlocked)
            top = m == 1 ? scan_one(sc, part, pq, p, pass) : scan_many_rows(sc, part, pq, m, p, pass);
        else if constexpr (kRowsForOne)
            top = m == 1 ? scan_one(sc, part, pq, p, pass) : scan_many(sc, part, pq, m, p, pass);
        else
            top = scan_many(sc, part, pq, m, p, pass);
        emit(q0, m, *top);
    }
}

// The k best of each query into scores / ids (nq x p.k, padded with (-inf, -1)).
template <bool kRowsForOne = true, class S>
void run(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Query* q, std::size_t nq,
         const SearchParams& p, float* scores, std::int64_t* ids) {
    const std::size_t k = std::min(p.k, v.n);
    if (v.n == 0 || k == 0) {
        std::fill(scores, scores + nq * p.k, -std::numeric_limits<float>::infinity());
        std::fill(ids, ids + nq * p.k, std::int64_t(-1));
        return;
    }
    scan_passes<kRowsForOne>(sc, v, q, nq, p, Lists{k, p.min_score},
                             [&](std::size_t q0, std::size_t m, const TopKSet& top) {
                                 for (std::size_t i = 0; i < m; ++i)
                                     top.write_sorted(i, scores + (q0 + i) * p.k, ids + (q0 + i) * p.k, p.k);
                             });
}

}  // namespace

void run_search(const KernelTable& kt, const ScanView& v, const float* q, std::size_t nq, const SearchParams& p,
                float* scores, std::int64_t* ids) {
    run(F32Scorer{kt}, v, q, nq, p, scores, ids);
}

void run_search_i8(const KernelTable& kt, const ScanViewI8& v, const std::int8_t* q, std::size_t nq,
                   const SearchParams& p, float* scores, std::int64_t* ids) {
    run(I8Scorer{kt}, v, q, nq, p, scores, ids);
}

void run_search_i8_near(const KernelTable& kt, const ScanViewI8& v, const std::int8_t* q, std::size_t nq,
                        const SearchParams& p, const float* margins, std::size_t near_cap, NearLists* out) {
    out->assign(nq, {});
    const std::size_t k = std::min(p.k, v.n);
    if (v.n == 0 || k == 0) return;
    scan_passes<true>(I8Scorer{kt}, v, q, nq, p, Lists{k, p.min_score, margins, near_cap},
                      [&](std::size_t q0, std::size_t m, const TopKSet& top) {
                          for (std::size_t i = 0; i < m; ++i)
                              (*out)[q0 + i].complete = top.near_sorted(i, &(*out)[q0 + i].entries);
                      });
}

void run_search_b1(const KernelTable& kt, const ScanViewB1& v, const std::int16_t* weights, std::size_t nq,
                   const SearchParams& p, float* scores, std::int64_t* ids) {
    run(B1Scorer{kt}, v, weights, nq, p, scores, ids);
}

void run_search_b1_gemm(const KernelTable& kt, const ScanViewB1& v, const std::int8_t* queries, std::size_t nq,
                        const SearchParams& p, float* scores, std::int64_t* ids) {
    run</*kRowsForOne=*/false>(B1GemmScorer{{kt}}, v, queries, nq, p, scores, ids);
}

}  // namespace simdex
