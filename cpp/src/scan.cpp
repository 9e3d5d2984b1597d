#include "simdex/scan.hpp"

#include <algorithm>
#include <limits>
#include <memory>

#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowsPerTask = 4096;      // single-query scan: rows per task
constexpr std::size_t kQueriesPerPass = 4096;   // batch: queries whose top-k lists are kept at once
constexpr std::size_t kQueryPanelsPerTile = 8;  // batch: query panels scored against one database tile

template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// What the driver needs from an element type. Packed panels are [depth][width] (float) or [depth / 4][width][4]
// (int8); the depth of a panel is depth(dim). A micro-kernel call covers depth [k0, k0 + kc).
struct F32Scorer {
    using Elem = float;
    static constexpr std::size_t kTileBytes = 128 * 1024;  // packed database tile, stays in L2
    static constexpr std::size_t kKc = 192;                // depth of one call (B micro-panel in L1)
    const KernelTable& kt;
    std::size_t mr() const { return kt.gemm_mr; }
    std::size_t nr() const { return kt.gemm_nr; }
    static std::size_t depth(std::size_t dim) { return dim; }
    void rows(const float* q, const float* x, std::size_t n, std::size_t dim, float* out) const {
        kt.dot_rows_f32(q, x, n, dim, out);
    }
    void pack_db(const float* x, std::size_t n, std::size_t dim, float* out) const {
        kt.pack_nr_f32(x, n, dim, out);
    }
    struct Queries {
        Buffer<float> panels;
    };
    void pack_queries(const float* q, std::size_t nq, std::size_t dim, Queries& out) const {
        out.panels.resize((nq + mr() - 1) / mr() * mr() * dim);
        kernels::pack_panels(q, nq, dim, mr(), out.panels.data());
    }
    void micro(const Queries& pq, std::size_t dim, std::size_t ip, std::size_t k0, std::size_t kc, const float* b,
               float* c, std::size_t ldc) const {
        kt.gemm_f32(kc, pq.panels.data() + ip * mr() * dim + k0 * mr(), b, c, ldc, k0 > 0);
    }
};

struct I8Scorer {
    using Elem = std::int8_t;
    static constexpr std::size_t kTileBytes = 128 * 1024;
    static constexpr std::size_t kKc = 1024;  // 32 database rows x 1 KiB stay in L1; 384-d is one call
    const KernelTable& kt;
    std::size_t mr() const { return kt.gemm_i8_mr; }
    std::size_t nr() const { return kt.gemm_i8_nr; }
    static std::size_t depth(std::size_t dim) { return kernels::i8_depth(dim); }
    void rows(const std::int8_t* q, const std::int8_t* x, std::size_t n, std::size_t dim, float* out) const {
        kt.dot_rows_i8(q, x, n, dim, out);
    }
    void pack_db(const std::int8_t* x, std::size_t n, std::size_t dim, std::int8_t* out) const {
        kernels::pack_panels_i8(x, n, dim, nr(), kt.gemm_i8_flip, out);
    }
    struct Queries {
        Buffer<std::int8_t> panels;
        std::vector<std::int32_t> bias;  // [depth chunk][query row]: 128 * sum of the row's codes in the chunk
        std::size_t rows = 0;
    };
    void pack_queries(const std::int8_t* q, std::size_t nq, std::size_t dim, Queries& out) const {
        const std::size_t d = depth(dim), rows = (nq + mr() - 1) / mr() * mr();
        out.rows = rows;
        out.panels.resize(rows * d);
        kernels::pack_panels_i8(q, nq, dim, mr(), false, out.panels.data());
        const std::size_t chunks = (d + kKc - 1) / kKc;
        out.bias.assign(chunks * rows, 0);
        if (!kt.gemm_i8_flip) return;
        for (std::size_t i = 0; i < nq; ++i)
            for (std::size_t k = 0; k < dim; ++k) out.bias[(k / kKc) * rows + i] += 128 * std::int32_t(q[i * dim + k]);
    }
    void micro(const Queries& pq, std::size_t dim, std::size_t ip, std::size_t k0, std::size_t kc,
               const std::int8_t* b, float* c, std::size_t ldc) const {
        const std::size_t d = depth(dim);
        const std::int32_t* bias = pq.bias.data() + (k0 / kKc) * pq.rows + ip * mr();
        kt.gemm_i8(kc, pq.panels.data() + ip * mr() * d + k0 * mr(), b, bias, c, ldc, k0 > 0);
    }
};

template <class T>
bool allowed(const RowsView<T>& v, std::size_t row) {
    return !v.allow || (*v.allow)[row];
}

template <class T>
void offer(TopKSet& top, std::size_t q, const RowsView<T>& v, std::size_t row0, const float* s,
           const std::uint32_t* idx, std::size_t count) {
    for (std::size_t c = 0; c < count; ++c) {
        const std::size_t row = row0 + idx[c];
        if (allowed(v, row)) top.push(q, s[idx[c]], v.ids[row]);
    }
}

// Merges the workers' lists into out (nq x k_out).
void finish(std::vector<std::unique_ptr<TopKSet>>& parts, std::size_t nq, std::size_t k_out, float* scores,
            std::int64_t* ids) {
    TopKSet& first = *parts[0];
    for (std::size_t w = 1; w < parts.size(); ++w)
        if (parts[w])
            for (std::size_t q = 0; q < nq; ++q) first.merge(q, *parts[w], q);
    for (std::size_t q = 0; q < nq; ++q) first.write_sorted(q, scores + q * k_out, ids + q * k_out, k_out);
}

template <class S>
void scan_one(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Elem* q, const SearchParams& p,
              std::size_t k, float* scores, std::int64_t* ids) {
    const std::size_t workers = num_threads();
    std::vector<std::unique_ptr<TopKSet>> parts(workers);
    std::vector<std::vector<float>> buf(workers);
    std::vector<std::vector<std::uint32_t>> idx(workers);
    const std::size_t tasks = (v.n + kRowsPerTask - 1) / kRowsPerTask;
    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            if (!parts[w]) {
                parts[w] = std::make_unique<TopKSet>(1, k, p.min_score);
                buf[w].resize(kRowsPerTask);
                idx[w].resize(kRowsPerTask);
            }
            const std::size_t r0 = t * kRowsPerTask, rows = std::min(kRowsPerTask, v.n - r0);
            sc.rows(q, v.data + r0 * v.dim, rows, v.dim, buf[w].data());
            const std::size_t count =
                sc.kt.select_ge_f32(buf[w].data(), rows, parts[w]->threshold(0), idx[w].data());
            offer(*parts[w], 0, v, r0, buf[w].data(), idx[w].data(), count);
        },
        p.interrupt);
    parts.erase(std::remove(parts.begin(), parts.end(), nullptr), parts.end());
    finish(parts, 1, p.k, scores, ids);
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
void scan_many(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Elem* q, std::size_t nq,
               const SearchParams& p, std::size_t k, float* scores, std::int64_t* ids) {
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
                s.top = std::make_unique<TopKSet>(nq, k, p.min_score);
                s.packed_db.resize(tile_rows * d);
                s.c.resize(mc * tile_rows);
                s.idx.resize(tile_rows);
            }
            const std::size_t r0 = t * tile_rows, rows = std::min(tile_rows, v.n - r0);
            const std::size_t db_panels = (rows + nr - 1) / nr, ldc = db_panels * nr;
            sc.pack_db(v.data + r0 * dim, rows, dim, s.packed_db.data());
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
                    const float* row = s.c.data() + (qi - qp0 * mr) * ldc;
                    const std::size_t count = sc.kt.select_ge_f32(row, rows, s.top->threshold(qi), s.idx.data());
                    offer(*s.top, qi, v, r0, row, s.idx.data(), count);
                }
            }
        },
        p.interrupt);
    std::vector<std::unique_ptr<TopKSet>> parts;
    for (auto& s : scratch)
        if (s.top) parts.push_back(std::move(s.top));
    finish(parts, nq, p.k, scores, ids);
}

template <class S>
void run(const S& sc, const RowsView<typename S::Elem>& v, const typename S::Elem* q, std::size_t nq,
         const SearchParams& p, float* scores, std::int64_t* ids) {
    const std::size_t k = std::min(p.k, v.n);
    if (v.n == 0 || k == 0) {
        for (std::size_t i = 0; i < nq * p.k; ++i) {
            scores[i] = -std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
        return;
    }
    if (nq == 1) return scan_one(sc, v, q, p, k, scores, ids);
    for (std::size_t q0 = 0; q0 < nq; q0 += kQueriesPerPass) {
        const std::size_t m = std::min(kQueriesPerPass, nq - q0);
        scan_many(sc, v, q + q0 * v.dim, m, p, k, scores + q0 * p.k, ids + q0 * p.k);
    }
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

}  // namespace simdex
