#include "simdex/index.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <unordered_set>

#include "simdex/dispatch.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

constexpr std::size_t kRowsPerTask = 4096;    // single-query scan: rows per task
constexpr std::size_t kQueriesPerPass = 4096; // batch: queries whose top-k lists are kept at once
constexpr std::size_t kTileBytes = 128 * 1024;  // batch: packed database tile, stays in L2
constexpr std::size_t kKc = 192;              // batch: depth of one micro-kernel call (B micro-panel in L1)
constexpr std::size_t kQueryPanelsPerTile = 8;

// The rows a search scans: the whole index, or a gathered subset when a filter is very selective.
struct View {
    const float* data;
    const std::int64_t* ids;
    std::size_t n;
    std::size_t dim;
    const std::vector<bool>* allow;  // by row of this view; nullptr: all rows qualify
};

bool allowed(const View& v, std::size_t row) { return !v.allow || (*v.allow)[row]; }

void offer(TopKSet& top, std::size_t q, const View& v, std::size_t row0, const float* s, const std::uint32_t* idx,
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

void scan_one(const KernelTable& kt, const View& v, const float* q, const SearchParams& p, std::size_t k,
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

void scan_many(const KernelTable& kt, const View& v, const float* q, std::size_t nq, const SearchParams& p,
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
            kernels::pack_panels(v.data + r0 * d, rows, d, nr, s.packed_db.data());
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

void run_search(const KernelTable& kt, const View& v, const float* q, std::size_t nq, const SearchParams& p,
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

bool all_finite(const float* x, std::size_t count, std::size_t* bad) {
    for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, 4);
        if ((bits & 0x7f800000u) == 0x7f800000u) {
            *bad = i;
            return false;
        }
    }
    return true;
}

}  // namespace

const char* metric_name(Metric m) noexcept { return m == Metric::cosine ? "cosine" : "ip"; }

Metric parse_metric(const std::string& name) {
    if (name == "cosine") return Metric::cosine;
    if (name == "ip") return Metric::ip;
    throw std::invalid_argument("metric must be 'cosine' or 'ip', got '" + name + "'");
}

void normalize_rows(float* x, std::size_t n, std::size_t dim) {
    const auto dot = active_kernels().dot_f32;
    for (std::size_t r = 0; r < n; ++r) {
        float* row = x + r * dim;
        const float norm2 = dot(row, row, dim);
        if (norm2 > 0.0f) {
            const float inv = 1.0f / std::sqrt(norm2);
            for (std::size_t i = 0; i < dim; ++i) row[i] *= inv;
        }
    }
}

FlatIndex::FlatIndex(std::size_t dim, Metric metric) : dim_(dim), metric_(metric) {
    if (dim == 0) throw std::invalid_argument("dim must be positive, got 0");
    if (dim > (std::size_t(1) << 20)) throw std::invalid_argument("dim must be at most 1048576, got " + std::to_string(dim));
}

FlatIndex::FlatIndex(FlatIndex&& o) noexcept
    : dim_(o.dim_), metric_(o.metric_), data_(std::move(o.data_)), ids_(std::move(o.ids_)),
      slot_of_(std::move(o.slot_of_)), next_id_(o.next_id_), metadata_(std::move(o.metadata_)) {}

std::size_t FlatIndex::size() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return ids_.size();
}

std::int64_t FlatIndex::next_id() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return next_id_;
}

void FlatIndex::check_ids_unlocked(const std::int64_t* ids, std::size_t n) const {
    std::unordered_set<std::int64_t> batch;
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (ids[i] < 0)
            throw std::invalid_argument("ids must be non-negative (-1 marks 'no result'), got " +
                                        std::to_string(ids[i]) + " at position " + std::to_string(i));
        if (slot_of_.count(ids[i]))
            throw std::invalid_argument("id " + std::to_string(ids[i]) + " is already in the index; nothing was added");
        if (!batch.insert(ids[i]).second)
            throw std::invalid_argument("id " + std::to_string(ids[i]) + " appears twice in this batch; nothing was added");
    }
}

void FlatIndex::add(const float* x, std::size_t n, const std::int64_t* ids) {
    std::size_t bad = 0;
    if (!all_finite(x, n * dim_, &bad))
        throw std::invalid_argument("vectors must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf; nothing was added");
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (ids) check_ids_unlocked(ids, n);
    if (!ids && next_id_ > std::numeric_limits<std::int64_t>::max() - static_cast<std::int64_t>(n))
        throw std::invalid_argument("automatic ids would overflow int64; pass ids explicitly");
    const std::size_t old = ids_.size();
    // Reserve first so a bad_alloc leaves the index as it was.
    data_.reserve((old + n) * dim_);
    ids_.reserve(old + n);
    slot_of_.reserve(old + n);
    data_.insert(data_.end(), x, x + n * dim_);
    if (metric_ == Metric::cosine) normalize_rows(data_.data() + old * dim_, n, dim_);
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t id = ids ? ids[i] : next_id_ + static_cast<std::int64_t>(i);
        ids_.push_back(id);
        slot_of_.emplace(id, old + i);
    }
    for (std::size_t i = old; i < ids_.size(); ++i) next_id_ = std::max(next_id_, ids_[i] + 1);
}

std::size_t FlatIndex::remove(const std::int64_t* ids, std::size_t n) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    std::size_t removed = 0;
    for (std::size_t i = 0; i < n; ++i) {
        auto it = slot_of_.find(ids[i]);
        if (it == slot_of_.end()) continue;
        const std::size_t slot = it->second, last = ids_.size() - 1;
        slot_of_.erase(it);
        if (slot != last) {  // move the last row into the hole
            std::memcpy(data_.data() + slot * dim_, data_.data() + last * dim_, dim_ * sizeof(float));
            ids_[slot] = ids_[last];
            slot_of_[ids_[slot]] = slot;
        }
        ids_.pop_back();
        data_.resize(ids_.size() * dim_);
        ++removed;
    }
    return removed;
}

void FlatIndex::reset() {
    std::unique_lock<std::shared_mutex> lock(mu_);
    data_ = FloatBuffer();
    ids_.clear();
    ids_.shrink_to_fit();
    slot_of_ = {};
    next_id_ = 0;
}

void FlatIndex::search(const float* queries, std::size_t nq, const SearchParams& p, float* scores,
                       std::int64_t* ids) const {
    if (p.k == 0) throw std::invalid_argument("k must be positive, got 0");
    std::size_t bad = 0;
    if (!all_finite(queries, nq * dim_, &bad))
        throw std::invalid_argument("queries must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf");
    const KernelTable& kt = active_kernels();  // dispatch once per call
    FloatBuffer normalized;
    if (metric_ == Metric::cosine) {
        normalized.assign(queries, queries + nq * dim_);
        normalize_rows(normalized.data(), nq, dim_);
        queries = normalized.data();
    }
    std::shared_lock<std::shared_mutex> lock(mu_);
    View all{data_.data(), ids_.data(), ids_.size(), dim_, nullptr};
    if (!p.has_filter) return run_search(kt, all, queries, nq, p, scores, ids);

    // Filter: an allow-list of ids becomes a row mask checked inside the scan. When few rows qualify,
    // they are gathered and only they are scored.
    std::vector<std::size_t> rows;
    rows.reserve(std::min(p.filter_size, ids_.size()));
    for (std::size_t i = 0; i < p.filter_size; ++i) {
        auto it = slot_of_.find(p.filter[i]);
        if (it != slot_of_.end()) rows.push_back(it->second);
    }
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    if (rows.size() * 8 < ids_.size()) {
        FloatBuffer sub(rows.size() * dim_);
        std::vector<std::int64_t> sub_ids(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            std::memcpy(sub.data() + i * dim_, data_.data() + rows[i] * dim_, dim_ * sizeof(float));
            sub_ids[i] = ids_[rows[i]];
        }
        View v{sub.data(), sub_ids.data(), rows.size(), dim_, nullptr};
        return run_search(kt, v, queries, nq, p, scores, ids);
    }
    std::vector<bool> mask(ids_.size(), false);
    for (std::size_t r : rows) mask[r] = true;
    all.allow = &mask;
    run_search(kt, all, queries, nq, p, scores, ids);
}

std::vector<std::int64_t> FlatIndex::ids() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return ids_;
}

bool FlatIndex::contains(std::int64_t id) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return slot_of_.count(id) != 0;
}

void FlatIndex::reconstruct(const std::int64_t* ids, std::size_t n, float* out) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        auto it = slot_of_.find(ids[i]);
        if (it == slot_of_.end()) throw std::out_of_range("id " + std::to_string(ids[i]) + " is not in the index");
        std::memcpy(out + i * dim_, data_.data() + it->second * dim_, dim_ * sizeof(float));
    }
}

std::size_t FlatIndex::memory_usage() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    // Vectors, the slot -> id array, and the id -> slot hash map (buckets plus one node per entry).
    const std::size_t node = sizeof(void*) + sizeof(std::int64_t) + sizeof(std::size_t) + sizeof(std::size_t);
    return data_.capacity() * sizeof(float) + ids_.capacity() * sizeof(std::int64_t) +
           slot_of_.bucket_count() * sizeof(void*) + slot_of_.size() * node + metadata_.capacity();
}

std::string FlatIndex::metadata() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return metadata_;
}

void FlatIndex::set_metadata(std::string text) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    metadata_ = std::move(text);
}

}  // namespace simdex
