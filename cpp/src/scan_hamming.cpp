// The Hamming prefilter of binary indexes (run_hamming_pool_b1, scan.hpp): Hamming distances between each query's
// sign bits and every row, keeping each query's `pool` nearest: batches on the panel kernel
// (kernels::HammingSelectB1Fn, the rows packed per tile), one to three queries on the row kernel over the rows as
// stored. Distances are small integers, so each query keeps an unsorted list of candidates at or under a threshold
// and a histogram of their distances: when the list passes twice the pool, the threshold drops to the distance
// that still keeps `pool` of them and the rest go. No heap: a row costs one compare. The threshold starts where an
// evenly spaced sample of the rows puts four pools' share (start_thresholds); a query whose start proves too low
// (fewer than `pool` rows under it) is scanned again from the top.
#include <algorithm>
#include <cstring>
#include <vector>

#include "simdex/kernels.hpp"
#include "simdex/scan.hpp"
#include "simdex/thread_pool.hpp"

namespace simdex {
namespace {

constexpr std::size_t kTileRows = 4096;  // rows packed into panels per task (about 200 KB at 384 bits)

// A row of the view and its distance, in one 64-bit word (two narrower fields, stored apart and read back as one,
// stalled the store forwarding on every add).
struct Candidate {
    std::uint64_t bits;
    Candidate(std::uint32_t dist, std::uint32_t row) : bits(std::uint64_t(dist) << 32 | row) {}
    std::uint32_t dist() const noexcept { return static_cast<std::uint32_t>(bits >> 32); }
    std::uint32_t row() const noexcept { return static_cast<std::uint32_t>(bits); }
};

// One query's candidates: every row seen with distance <= thr, thr never below the pool-th smallest seen.
class NearestList {
  public:
    NearestList(std::size_t dim, std::size_t pool, std::uint32_t thr)
        : hist_(dim + 1, 0), thr_(std::min<std::uint32_t>(thr, std::uint32_t(dim))), pool_(pool) {
        items_.reserve(2 * pool + 1);
    }
    std::uint32_t threshold() const noexcept { return thr_; }
    void add(std::uint32_t dist, std::uint32_t row) {
        if (dist > thr_) return;
        items_.emplace_back(dist, row);
        ++hist_[dist];
        if (items_.size() > 2 * pool_) prune();
    }
    // Lowers the threshold to keep the pool (ties at it stay) and drops what lies above.
    void prune() {
        std::size_t kept = 0;
        std::uint32_t t = 0;
        while (t < thr_ && kept + hist_[t] < pool_) kept += hist_[t++];
        for (std::uint32_t d = t + 1; d <= thr_; ++d) hist_[d] = 0;
        thr_ = t;
        items_.erase(std::remove_if(items_.begin(), items_.end(), [t](const Candidate& c) { return c.dist() > t; }),
                     items_.end());
    }
    const std::vector<Candidate>& items() const noexcept { return items_; }
    std::vector<Candidate>& items() noexcept { return items_; }

  private:
    std::vector<std::uint32_t> hist_;
    std::vector<Candidate> items_;
    std::uint32_t thr_;
    std::size_t pool_;
};

// fn(q) for every query, blocks of queries spread over the pool of threads.
template <class Fn>
void for_each_query(std::size_t nq, Fn&& fn, const InterruptFn& interrupt) {
    parallel_for_blocks(nq, 32, num_threads(), [&](std::size_t b, std::size_t e, std::size_t) {
        for (std::size_t q = b; q < e; ++q) fn(q);
    }, interrupt);
}

// A query's sign bits as the bytes the row kernels read (its words, little-endian).
const std::uint8_t* query_bytes(const std::uint64_t* qbits, std::size_t q, std::size_t words) {
    return reinterpret_cast<const std::uint8_t*>(qbits + q * words);
}

struct Worker {
    std::vector<NearestList> lists;
    std::vector<std::uint64_t> panels;
    std::vector<std::uint32_t> idx;
    std::vector<std::uint16_t> dist;
    std::vector<std::uint32_t> row_dist;
};

// Every row of v against each query from its starting threshold; the workers' lists, merged, per query.
std::vector<NearestList> scan(const KernelTable& kt, const ScanViewB1& v, const std::uint64_t* qbits, std::size_t nq,
                              std::size_t pool, const std::vector<std::uint32_t>& thr0, const InterruptFn& interrupt) {
    constexpr std::size_t kQ = kernels::kHammingSelectQueries, kLanes = kernels::kHammingPanelRows;
    const std::size_t words = kernels::b1_words(v.dim), nbytes = kernels::b1_bytes(v.dim);
    const std::size_t tasks = (v.n + kTileRows - 1) / kTileRows, workers = num_threads();
    std::vector<Worker> ws(workers);
    parallel_for(
        tasks, workers,
        [&](std::size_t t, std::size_t w) {
            Worker& s = ws[w];
            if (s.lists.empty()) {
                s.lists.reserve(nq);
                for (std::size_t i = 0; i < nq; ++i) s.lists.emplace_back(v.dim, pool, thr0[i]);
                s.panels.resize(kTileRows * words);
                s.idx.resize(kQ * kTileRows);
                s.dist.resize(kQ * kTileRows);
            }
            const std::size_t r0 = t * kTileRows, rows = std::min(kTileRows, v.n - r0);
            if (nq < kQ) {  // too few queries to repay packing the tile: the row kernel on the rows as stored
                s.row_dist.resize(kTileRows);
                for (std::size_t j = 0; j < nq; ++j) {
                    kt.hamming_rows_b1(query_bytes(qbits, j, words), v.data + r0 * nbytes, rows, nbytes,
                                       s.row_dist.data());
                    NearestList& list = s.lists[j];
                    for (std::size_t r = 0; r < rows; ++r)
                        if (s.row_dist[r] <= list.threshold() && (!v.allow || (*v.allow)[r0 + r]))
                            list.add(s.row_dist[r], static_cast<std::uint32_t>(r0 + r));
                }
                return;
            }
            const std::size_t n_panels = (rows + kLanes - 1) / kLanes;
            kernels::pack_panels_b1(v.data + r0 * nbytes, rows, v.dim, s.panels.data());
            std::uint32_t* idx[kQ];
            std::uint16_t* dist[kQ];
            for (std::size_t j = 0; j < kQ; ++j) {
                idx[j] = s.idx.data() + j * kTileRows;
                dist[j] = s.dist.data() + j * kTileRows;
            }
            for (std::size_t q0 = 0; q0 < nq; q0 += kQ) {
                const std::size_t m = std::min(kQ, nq - q0);
                std::uint32_t thr[kQ];
                std::size_t counts[kQ];
                for (std::size_t j = 0; j < m; ++j) thr[j] = s.lists[q0 + j].threshold();
                kt.hamming_select_b1(qbits + q0 * words, m, words, s.panels.data(), n_panels, thr, idx, dist, counts);
                for (std::size_t j = 0; j < m; ++j)
                    for (std::size_t c = 0; c < counts[j]; ++c) {
                        const std::size_t row = r0 + idx[j][c];
                        if (idx[j][c] < rows && (!v.allow || (*v.allow)[row]))
                            s.lists[q0 + j].add(dist[j][c], static_cast<std::uint32_t>(row));
                    }
            }
        },
        interrupt);
    // A row within any worker's threshold is within the merged one or not needed.
    std::vector<NearestList> merged;
    merged.reserve(nq);
    for (std::size_t q = 0; q < nq; ++q) merged.emplace_back(v.dim, pool, thr0[q]);
    for_each_query(nq, [&](std::size_t q) {
        for (const Worker& s : ws)
            if (!s.lists.empty())
                for (const Candidate& c : s.lists[q].items()) merged[q].add(c.dist(), c.row());
        merged[q].prune();
    }, interrupt);
    return merged;
}

// Each query's starting threshold: the distance under which an evenly spaced sample of the rows holds
// kStartPools times the pool's share of it (the whole index when it is small). Set high on purpose: a start too
// low costs the query a second scan of every row, one too high only candidates that the list's first prune drops.
std::vector<std::uint32_t> start_thresholds(const KernelTable& kt, const ScanViewB1& v, const std::uint64_t* qbits,
                                            std::size_t nq, std::size_t pool, const InterruptFn& interrupt) {
    constexpr std::size_t kSampleRowsPerPool = 8, kStartPools = 4;
    std::vector<std::uint32_t> thr(nq, std::uint32_t(v.dim));
    const std::size_t sample = kSampleRowsPerPool * pool;
    if (v.n <= 2 * sample) return thr;
    const std::size_t nbytes = kernels::b1_bytes(v.dim), words = kernels::b1_words(v.dim);
    std::vector<std::uint8_t> rows(sample * nbytes);
    for (std::size_t i = 0; i < sample; ++i)
        std::memcpy(rows.data() + i * nbytes, v.data + (i * v.n / sample) * nbytes, nbytes);
    const std::size_t want = (kStartPools * pool * sample + v.n - 1) / v.n;
    parallel_for_blocks(
        nq, 64, num_threads(),
        [&](std::size_t b, std::size_t e, std::size_t) {
            std::vector<std::uint32_t> dist(sample), hist(v.dim + 1);
            for (std::size_t q = b; q < e; ++q) {
                kt.hamming_rows_b1(query_bytes(qbits, q, words), rows.data(), sample, nbytes, dist.data());
                std::fill(hist.begin(), hist.end(), 0);
                for (std::uint32_t d : dist) ++hist[d];
                std::size_t seen = 0;
                std::uint32_t d = 0;
                while (d < v.dim && seen + hist[d] < want) seen += hist[d++];
                thr[q] = d;
            }
        },
        interrupt);
    return thr;
}

}  // namespace

void run_hamming_pool_b1(const KernelTable& kt, const ScanViewB1& v, const std::uint64_t* qbits, std::size_t nq,
                         std::size_t pool, std::vector<std::vector<HammingNear>>* out, const InterruptFn& interrupt) {
    const std::size_t words = kernels::b1_words(v.dim);
    std::vector<std::uint32_t> thr0 = start_thresholds(kt, v, qbits, nq, pool, interrupt);
    std::vector<NearestList> lists = scan(kt, v, qbits, nq, pool, thr0, interrupt);
    // Queries whose start was too low: scanned again from the top.
    std::vector<std::size_t> again;
    for (std::size_t q = 0; q < nq; ++q)
        if (lists[q].items().size() < std::min(pool, v.n) && thr0[q] < v.dim) again.push_back(q);
    if (!again.empty()) {
        std::vector<std::uint64_t> sub(again.size() * words);
        for (std::size_t j = 0; j < again.size(); ++j)
            std::memcpy(sub.data() + j * words, qbits + again[j] * words, words * sizeof(std::uint64_t));
        std::vector<NearestList> redo =
            scan(kt, v, sub.data(), again.size(), pool, std::vector<std::uint32_t>(again.size(), v.dim), interrupt);
        for (std::size_t j = 0; j < again.size(); ++j) lists[again[j]] = std::move(redo[j]);
    }
    out->assign(nq, {});
    for_each_query(nq, [&](std::size_t q) {
        std::vector<Candidate>& all = lists[q].items();
        const auto nearer = [&](const Candidate& a, const Candidate& b) {
            return a.dist() != b.dist() ? a.dist() < b.dist() : v.ids[a.row()] < v.ids[b.row()];
        };
        if (all.size() > 2 * pool)  // ties at the threshold: the nearest first, then the lower id
            std::nth_element(all.begin(), all.begin() + 2 * pool, all.end(), nearer);
        auto& near = (*out)[q];
        near.resize(std::min(all.size(), 2 * pool));
        for (std::size_t c = 0; c < near.size(); ++c) near[c] = {v.ids[all[c].row()], all[c].dist()};
    }, interrupt);
}

}  // namespace simdex
