#include "simdex/ivf_scan.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "scorers-inl.hpp"
#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

using detail::B1Scorer;
using detail::Buffer;
using detail::F32Scorer;
using detail::I8Scorer;

constexpr std::size_t kQueryPanelsPerChunk = 16;  // queries of one partition per pass: 16 micro-kernel panels
constexpr std::size_t kFewQueries = 12;          // up to this many queries on a partition: one dot_rows pass each
constexpr std::size_t kQueriesPerPass = 4096;   // queries whose top-k lists are kept at once
constexpr std::size_t kMinTaskWork = 1 << 16;    // rows x queries per task, so small lists share a task

// One partition and a run of the queries that probe it.
struct Item {
    std::uint32_t part;
    std::uint32_t q0, q1;  // into the partition's query list
};

template <class T>
void grow(Buffer<T>& b, std::size_t n) {
    if (b.size() < n) b.resize(n);
}

template <class S>
struct Scratch {
    using E = typename S::Elem;
    std::unique_ptr<TopKSet> top;
    typename S::Queries packed_q;
    Buffer<E> rows, packed_db;  // gathered rows, their panels
    Buffer<typename S::Query> queries;  // gathered queries
    Buffer<float> c;            // query chunk x row tile scores
    std::vector<std::uint32_t> idx;
};

template <class S>
void scan_ivf(const S& sc, const RowsView<typename S::Elem>& v, const Probes& pr, const typename S::Query* q,
              std::size_t nq, const SearchParams& p, std::size_t k, float* scores, std::int64_t* ids) {
    using E = typename S::Elem;
    constexpr bool kBlocked = S::kBlocked;
    const Partitions& parts = pr.parts;
    const std::size_t P = parts.count(), dim = v.dim, stride = S::stride(dim);
    std::size_t d = dim, mr = 1, nr = 1, tile_rows = 0;
    if constexpr (kBlocked) {
        d = S::depth(dim);
        mr = sc.mr();
        nr = sc.nr();
        tile_rows = std::max(nr, S::kTileBytes / (d * sizeof(E)) / nr * nr);
    } else {
        tile_rows = S::tile_rows(dim);
    }

    // Invert the probes: for each partition, the queries that probe it (ascending).
    std::vector<std::size_t> start(P + 1, 0);
    for (std::size_t i = 0; i < nq * pr.nprobe; ++i) ++start[pr.lists[i] + 1];
    for (std::size_t l = 0; l < P; ++l) start[l + 1] += start[l];
    std::vector<std::uint32_t> by_part(nq * pr.nprobe);
    {
        std::vector<std::size_t> fill(start.begin(), start.end() - 1);
        for (std::size_t i = 0; i < nq; ++i)
            for (std::size_t j = 0; j < pr.nprobe; ++j) by_part[fill[pr.lists[i * pr.nprobe + j]]++] = std::uint32_t(i);
    }

    // Work items, grouped into tasks of at least kMinTaskWork, or fewer when that would leave a worker idle (a
    // single query's lists spread over every core, unless they are too few to pay for waking the pool).
    const std::size_t chunk = mr * kQueryPanelsPerChunk;
    std::size_t total = 0;  // rows read, once per query that probes them
    for (std::size_t l = 0; l < P; ++l) total += parts.list_size(l) * (start[l + 1] - start[l]);
    const std::size_t workers = serial_scan(total, dim, total * stride * sizeof(E)) ? 1 : num_threads();
    const std::size_t min_work = std::max<std::size_t>(1, std::min(kMinTaskWork, total / (4 * workers)));
    std::vector<Item> items;
    std::vector<std::size_t> task_start{0};
    std::size_t work = 0;
    for (std::size_t l = 0; l < P; ++l) {
        const std::size_t rows = parts.list_size(l), nql = start[l + 1] - start[l];
        if (!rows || !nql) continue;
        for (std::size_t a = 0; a < nql; a += chunk) {
            const std::size_t b = std::min(nql, a + chunk);
            items.push_back({std::uint32_t(l), std::uint32_t(a), std::uint32_t(b)});
            work += rows * (b - a);
            if (work >= min_work) {
                task_start.push_back(items.size());
                work = 0;
            }
        }
    }
    if (task_start.back() != items.size()) task_start.push_back(items.size());

    std::vector<Scratch<S>> scratch(workers);

    parallel_for(
        task_start.size() - 1, workers,
        [&](std::size_t t, std::size_t w) {
            Scratch<S>& s = scratch[w];
            if (!s.top) {  // buffers grow on first use: a single query needs only a row of scores
                s.top = std::make_unique<TopKSet>(nq, k, p.min_score);
                s.idx.resize(tile_rows);
            }
            for (std::size_t it = task_start[t]; it < task_start[t + 1]; ++it) {
                const Item& item = items[it];
                const std::uint32_t* slots = parts.list(item.part);
                const std::size_t n = parts.list_size(item.part);
                const std::uint32_t* qs = by_part.data() + start[item.part] + item.q0;
                const std::size_t m = item.q1 - item.q0;
                const bool blocked = kBlocked && m > kFewQueries;
                grow(s.c, (blocked ? chunk : m) * tile_rows);
                if constexpr (kBlocked) {
                    if (blocked) {
                        grow(s.queries, chunk * dim);
                        grow(s.packed_db, tile_rows * d);
                        for (std::size_t i = 0; i < m; ++i)
                            std::memcpy(s.queries.data() + i * dim, q + std::size_t(qs[i]) * dim,
                                        dim * sizeof(typename S::Query));
                        sc.pack_queries(s.queries.data(), m, dim, s.packed_q);
                    }
                }
                for (std::size_t r0 = 0; r0 < n; r0 += tile_rows) {
                    const std::size_t rows = std::min(tile_rows, n - r0);
                    const std::uint32_t* tile = slots + r0;
                    // Rows are stored grouped by partition (FlatIndex::add), so a tile's slots are usually one run
                    // of consecutive rows, read in place; otherwise they are gathered next to each other.
                    const auto [lo, hi] = std::minmax_element(tile, tile + rows);
                    const std::size_t first = *lo;
                    const bool in_place = std::size_t(*hi) - first + 1 == rows;
                    auto slot_at = [&](std::size_t r) -> std::size_t { return in_place ? first + r : tile[r]; };
                    const E* base = v.data + first * stride;
                    if (!in_place) {
                        grow(s.rows, tile_rows * stride);
                        for (std::size_t r = 0; r < rows; ++r)
                            std::memcpy(s.rows.data() + r * stride, v.data + std::size_t(tile[r]) * stride,
                                        stride * sizeof(E));
                        base = s.rows.data();
                    }
                    const std::size_t ldc = blocked ? (rows + nr - 1) / nr * nr : rows;
                    if constexpr (kBlocked) {
                        if (blocked) {
                            sc.pack_db(base, rows, dim, s.packed_db.data());
                            const std::size_t q_panels = (m + mr - 1) / mr, db_panels = (rows + nr - 1) / nr;
                            for (std::size_t k0 = 0; k0 < d; k0 += S::kKc) {
                                const std::size_t kc = std::min(S::kKc, d - k0);
                                for (std::size_t jp = 0; jp < db_panels; ++jp) {
                                    const E* b = s.packed_db.data() + jp * nr * d + k0 * nr;
                                    for (std::size_t ip = 0; ip < q_panels; ++ip)
                                        sc.micro(s.packed_q, dim, ip, k0, kc, b, s.c.data() + ip * mr * ldc + jp * nr,
                                                 ldc);
                                }
                            }
                        }
                    }
                    if (!blocked)
                        for (std::size_t i = 0; i < m; ++i)
                            sc.rows(q + std::size_t(qs[i]) * dim, base, rows, dim, s.c.data() + i * ldc);
                    for (std::size_t i = 0; i < m; ++i) {
                        const std::size_t qi = qs[i];
                        float* row = s.c.data() + i * ldc;
                        if (v.norms) {  // l2: rank by dot - scale * |x|^2 (scan.hpp)
                            const float c = v.norm_scale[qi];
                            for (std::size_t r = 0; r < rows; ++r) row[r] -= c * v.norms[slot_at(r)];
                        }
                        const std::size_t count = sc.kt.select_ge_f32(row, rows, s.top->threshold(qi), s.idx.data());
                        for (std::size_t j = 0; j < count; ++j) {
                            const std::size_t slot = slot_at(s.idx[j]);
                            if (!v.allow || (*v.allow)[slot]) s.top->push(qi, row[s.idx[j]], v.ids[slot]);
                        }
                    }
                }
            }
        },
        p.interrupt);

    TopKSet* first = nullptr;
    for (auto& s : scratch) {
        if (!s.top) continue;
        if (!first) {
            first = s.top.get();
            continue;
        }
        for (std::size_t i = 0; i < nq; ++i) first->merge(i, *s.top, i);
    }
    for (std::size_t i = 0; i < nq; ++i) {
        if (first) {
            first->write_sorted(i, scores + i * p.k, ids + i * p.k, p.k);
        } else {
            std::fill(scores + i * p.k, scores + (i + 1) * p.k, -std::numeric_limits<float>::infinity());
            std::fill(ids + i * p.k, ids + (i + 1) * p.k, std::int64_t(-1));
        }
    }
}

template <class S>
void run_ivf(const S& sc, const RowsView<typename S::Elem>& v, const Probes& pr, const typename S::Query* q,
             std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids) {
    const std::size_t k = std::min(p.k, v.n);
    if (v.n == 0 || k == 0 || nq == 0) {
        for (std::size_t i = 0; i < nq * p.k; ++i) {
            scores[i] = -std::numeric_limits<float>::infinity();
            ids[i] = -1;
        }
        return;
    }
    // Passes of kQueriesPerPass queries bound the per-worker top-k lists (as the exact scan does).
    for (std::size_t q0 = 0; q0 < nq; q0 += kQueriesPerPass) {
        const std::size_t m = std::min(kQueriesPerPass, nq - q0);
        RowsView<typename S::Elem> part = v;
        if (part.norm_scale) part.norm_scale += q0;
        const Probes sub{pr.parts, pr.lists + q0 * pr.nprobe, pr.nprobe};
        scan_ivf(sc, part, sub, q + q0 * v.dim, m, p, k, scores + q0 * p.k, ids + q0 * p.k);
    }
}

}  // namespace

void run_search_ivf(const KernelTable& kt, const ScanView& v, const Probes& probes, const float* queries,
                    std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids) {
    run_ivf(F32Scorer{kt}, v, probes, queries, nq, p, scores, ids);
}

void run_search_ivf_i8(const KernelTable& kt, const ScanViewI8& v, const Probes& probes, const std::int8_t* queries,
                       std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids) {
    run_ivf(I8Scorer{kt}, v, probes, queries, nq, p, scores, ids);
}

void run_search_ivf_b1(const KernelTable& kt, const ScanViewB1& v, const Probes& probes, const std::int16_t* weights,
                       std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids) {
    run_ivf(B1Scorer{kt}, v, probes, weights, nq, p, scores, ids);
}

}  // namespace simdex
