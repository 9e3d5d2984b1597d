#include "simdex/scan.hpp"

#include <algorithm>
#include <limits>
#include <memory>

#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowsPerTask = 4096;    // single-query scan: rows per task
constexpr std::size_t kQueriesPerPass = 4096; // batch: queries whose top-k lists are kept at once
constexpr std::size_t kTileBytes = 128 * 1024;  // batch: packed database tile, stays in L2
constexpr std::size_t kKc = 192;              // batch: depth of one micro-kernel call (B micro-panel in L1)
constexpr std::size_t kQueryPanelsPerTile = 8;

bool allowed(const ScanView& v, std::size_t row) { return !v.allow || (*v.allow)[row]; }

void offer(TopKSet& top, std::size_t q, const ScanView& v, std::size_t row0, const float* s, const std::uint32_t* idx,
           std::size_t count) {
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

void scan_one(const KernelTable& kt, const ScanView& v, const float* q, const SearchParams& p, std::size_t k,
              float* scores, std::int64_t* ids) {
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
            kt.dot_rows_f32(q, v.data + r0 * v.dim, rows, v.dim, buf[w].data());
            const std::size_t count = kt.select_ge_f32(buf[w].data(), rows, parts[w]->threshold(0), idx[w].data());
            offer(*parts[w], 0, v, r0, buf[w].data(), idx[w].data(), count);
        },
        p.interrupt);
    parts.erase(std::remove(parts.begin(), parts.end(), nullptr), parts.end());
    finish(parts, 1, p.k, scores, ids);
}

// Per-worker buffers of the blocked scan.
struct GemmScratch {
    FloatBuffer packed_db;  // one database tile, nr-wide panels
    FloatBuffer c;          // query tile x database tile scores
    std::vector<std::uint32_t> idx;
    std::unique_ptr<TopKSet> top;
};

void scan_many(const KernelTable& kt, const ScanView& v, const float* q, std::size_t nq, const SearchParams& p,
               std::size_t k, float* scores, std::int64_t* ids) {
    const std::size_t mr = kt.gemm_mr, nr = kt.gemm_nr, d = v.dim;
    const std::size_t q_panels = (nq + mr - 1) / mr;
    FloatBuffer packed_q(q_panels * mr * d);
    kernels::pack_panels(q, nq, d, mr, packed_q.data());

    const std::size_t tile_rows = std::max(nr, kTileBytes / (d * sizeof(float)) / nr * nr);
    const std::size_t mc = mr * kQueryPanelsPerTile;
    const std::size_t tasks = (v.n + tile_rows - 1) / tile_rows;
    const std::size_t workers = num_threads();
    std::vector<GemmScratch> scratch(workers);

    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            GemmScratch& s = scratch[w];
            if (!s.top) {
                s.top = std::make_unique<TopKSet>(nq, k, p.min_score);
                s.packed_db.resize(tile_rows * d);
                s.c.resize(mc * tile_rows);
                s.idx.resize(tile_rows);
            }
            const std::size_t r0 = t * tile_rows, rows = std::min(tile_rows, v.n - r0);
            const std::size_t db_panels = (rows + nr - 1) / nr, ldc = db_panels * nr;
            kt.pack_nr_f32(v.data + r0 * d, rows, d, s.packed_db.data());
            for (std::size_t qp0 = 0; qp0 < q_panels; qp0 += kQueryPanelsPerTile) {
                const std::size_t qp1 = std::min(q_panels, qp0 + kQueryPanelsPerTile);
                for (std::size_t k0 = 0; k0 < d; k0 += kKc) {
                    const std::size_t kc = std::min(kKc, d - k0);
                    for (std::size_t jp = 0; jp < db_panels; ++jp) {
                        const float* b = s.packed_db.data() + jp * nr * d + k0 * nr;
                        for (std::size_t ip = qp0; ip < qp1; ++ip)
                            kt.gemm_f32(kc, packed_q.data() + ip * mr * d + k0 * mr, b,
                                        s.c.data() + (ip - qp0) * mr * ldc + jp * nr, ldc, k0 > 0);
                    }
                }
                const std::size_t q_end = std::min(nq, qp1 * mr);
                for (std::size_t qi = qp0 * mr; qi < q_end; ++qi) {
                    const float* row = s.c.data() + (qi - qp0 * mr) * ldc;
                    const std::size_t count = kt.select_ge_f32(row, rows, s.top->threshold(qi), s.idx.data());
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

}  // namespace

void run_search(const KernelTable& kt, const ScanView& v, const float* q, std::size_t nq, const SearchParams& p,
                float* scores, std::int64_t* ids) {
    const std::size_t k = std::min(p.k, v.n);
    if (v.n == 0 || k == 0) {
        for (std::size_t i = 0; i < nq * p.k; ++i) {
            scores[i] = -std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
        return;
    }
    if (nq == 1) return scan_one(kt, v, q, p, k, scores, ids);
    for (std::size_t q0 = 0; q0 < nq; q0 += kQueriesPerPass) {
        const std::size_t m = std::min(kQueriesPerPass, nq - q0);
        scan_many(kt, v, q + q0 * v.dim, m, p, k, scores + q0 * p.k, ids + q0 * p.k);
    }
}


}  // namespace simdex
