#include "simdex/partitions.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

#include "simdex/dispatch.hpp"
#include "simdex/kernels.hpp"
#include "simdex/quantize.hpp"
#include "simdex/scan.hpp"
#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

constexpr std::size_t kBlockRows = 4096;  // rows scored against all centroids at once (bounds the score buffer)
constexpr std::size_t kSeedRowsPerCentroid = 32;  // rows D^2 seeding draws from, per centroid

// score() for a plain (row-major) centroid matrix; kmeans uses it while the centroids change every iteration.
void score_rows(const KernelTable& kt, const float* x, std::size_t rows, const PackedRows& c,
                const float* half_norms, float* out, const InterruptFn& interrupt) {
    gemm_nt(kt, x, rows, c, half_norms, out, c.n, interrupt);
}

std::vector<float> half_norms_of(const float* c, std::size_t k, std::size_t dim) {
    std::vector<float> h(k);
    for (std::size_t j = 0; j < k; ++j) {
        double s = 0.0;
        for (std::size_t i = 0; i < dim; ++i) s += double(c[j * dim + i]) * c[j * dim + i];
        h[j] = static_cast<float>(s / 2);
    }
    return h;
}

// Each row's best centroid (ties to the lower index) in float: a search with k = 1 on the batch scan, which keeps
// its top-1 lists while it scores each tile in cache instead of writing an n x k score matrix out to memory and
// reading it back for an argmax. l2: the best <x, c> - |c|^2 / 2.
void nearest_f32(const KernelTable& kt, const float* c, std::size_t k, std::size_t dim, Match how, const float* x,
                 std::size_t n, std::uint32_t* out, const InterruptFn& interrupt) {
    std::vector<std::int64_t> ids(k), best(n);
    std::iota(ids.begin(), ids.end(), std::int64_t(0));
    std::vector<float> best_score(n), sq_norms(how == Match::l2 ? k : 0), half(how == Match::l2 ? n : 0, 0.5f);
    for (std::size_t j = 0; j < sq_norms.size(); ++j) sq_norms[j] = kt.dot_f32(c + j * dim, c + j * dim, dim);
    const ScanView centroids{c, ids.data(), k, dim, nullptr, how == Match::l2 ? sq_norms.data() : nullptr,
                             how == Match::l2 ? half.data() : nullptr};
    SearchParams top1;
    top1.k = 1;
    top1.interrupt = interrupt;
    run_search(kt, centroids, x, n, top1, best_score.data(), best.data());
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint32_t>(best[i]);
}

// The same answer from int8 first, for kmeans: each row quantized once, before the iterations, on its own step
// (u = rint(x / t), t = max |x_d| / 127: RowCodes), the centroids on one step for them all each iteration
// (v = rint(c / s)), so <x, c> ~ t s <u, v>; the kInt8Candidates best centroids per row by the int8 batch scan
// (vpdpbusd / sdot: about three times the float GEMM's products per second) are then scored again in float, which
// decides. A row lands elsewhere only if its best centroid is not among the int8 scan's few best.
constexpr std::size_t kInt8Candidates = 3;
struct RowCodes {
    std::vector<std::int8_t> u;
    std::vector<float> step;
    RowCodes(const float* x, std::size_t n, std::size_t dim) : u(n * dim), step(n) {
        parallel_for_blocks(n, 1024, num_threads(), [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t i = b; i < e; ++i) step[i] = round_on_one_step(x + i * dim, dim, 127.0f, &u[i * dim]);
        });
    }
};
void nearest_i8(const KernelTable& kt, const float* c, std::size_t k, std::size_t dim, Match how, const float* x,
                std::size_t n, const RowCodes& rows, std::uint32_t* out, const InterruptFn& interrupt) {
    std::vector<std::int8_t> v(k * dim);
    const float s = round_on_one_step(c, k * dim, 127.0f, v.data());
    std::vector<std::int64_t> ids(k);
    std::iota(ids.begin(), ids.end(), std::int64_t(0));
    const std::vector<float> hn = half_norms_of(c, k, dim);  // exact |c|^2 / 2, for the float pass
    // l2: per row, <u, v> - |c|^2 / (2 t s) ranks like <x, c> - |c|^2 / 2.
    std::vector<float> sq_norms(how == Match::l2 ? k : 0), norm_scale(how == Match::l2 ? n : 0);
    for (std::size_t j = 0; j < sq_norms.size(); ++j) sq_norms[j] = 2.0f * hn[j];
    for (std::size_t i = 0; i < norm_scale.size(); ++i)
        norm_scale[i] = rows.step[i] > 0 && s > 0 ? 0.5f / (rows.step[i] * s) : 0.5f;
    const ScanViewI8 view{v.data(), ids.data(), k, dim, nullptr, how == Match::l2 ? sq_norms.data() : nullptr,
                          how == Match::l2 ? norm_scale.data() : nullptr};
    const std::size_t kc = std::min(kInt8Candidates, k);
    std::vector<float> dots(n * kc);
    std::vector<std::int64_t> found(n * kc);
    SearchParams sp;
    sp.k = kc;
    sp.interrupt = interrupt;
    run_search_i8(kt, view, rows.u.data(), n, sp, dots.data(), found.data());
    parallel_for_blocks(n, 1024, num_threads(), [&](std::size_t b, std::size_t e, std::size_t) {
        for (std::size_t i = b; i < e; ++i) {
            std::int64_t best = -1;
            float best_score = -std::numeric_limits<float>::infinity();
            for (std::size_t j = 0; j < kc; ++j) {
                const std::int64_t id = found[i * kc + j];
                if (id < 0) break;
                float sc = kt.dot_f32(x + i * dim, c + std::size_t(id) * dim, dim);
                if (how == Match::l2) sc -= hn[std::size_t(id)];
                if (best < 0 || ranks_before(sc, id, best_score, best)) {
                    best = id;
                    best_score = sc;
                }
            }
            out[i] = static_cast<std::uint32_t>(best);
        }
    }, interrupt);
}

// Where the CPU has an int8 dot-product instruction and there are enough centroids to repay quantizing them.
constexpr std::size_t kInt8MinCentroids = 64;
bool int8_pays(const KernelTable& kt, std::size_t k, std::size_t dim) {
    return kt.i8_dot && k >= kInt8MinCentroids && dim <= kernels::kMaxI8Depth;
}

// D^2 seeding in rounds: each round draws `batch` new centers with probability proportional to the squared
// distance to the nearest center so far, then one GEMM updates the distances.
FloatBuffer seed_centers(const KernelTable& kt, const float* x, std::size_t n, std::size_t dim, std::size_t k,
                         std::mt19937_64& rng, const InterruptFn& interrupt) {
    FloatBuffer c(k * dim);
    std::vector<double> dist(n, std::numeric_limits<double>::infinity());
    std::vector<double> norms(n);
    for (std::size_t i = 0; i < n; ++i) norms[i] = kt.dot_f32(x + i * dim, x + i * dim, dim);
    std::vector<std::size_t> chosen;
    chosen.push_back(std::uniform_int_distribution<std::size_t>(0, n - 1)(rng));
    std::memcpy(c.data(), x + chosen[0] * dim, dim * sizeof(float));
    const std::size_t batch = std::max<std::size_t>(1, (k + 15) / 16);
    std::vector<float> scores(kBlockRows * batch);
    std::vector<double> prefix(n);
    std::size_t done = 0;  // centers whose distances are folded into dist
    while (true) {
        // Fold centers [done, chosen.size()) into dist.
        const std::size_t fresh = chosen.size() - done;
        PackedRows p = pack_rows(kt, c.data() + done * dim, fresh, dim);
        std::vector<float> hn = half_norms_of(c.data() + done * dim, fresh, dim);
        for (std::size_t r0 = 0; r0 < n; r0 += kBlockRows) {
            const std::size_t rows = std::min(kBlockRows, n - r0);
            score_rows(kt, x + r0 * dim, rows, p, hn.data(), scores.data(), interrupt);
            for (std::size_t i = 0; i < rows; ++i) {
                const float best = *std::max_element(scores.data() + i * fresh, scores.data() + (i + 1) * fresh);
                // |x - c|^2 = |x|^2 - 2 (<x, c> - |c|^2 / 2)
                const double d2 = std::max(0.0, norms[r0 + i] - 2.0 * double(best));
                dist[r0 + i] = std::min(dist[r0 + i], d2);
            }
        }
        done = chosen.size();
        if (done == k) break;
        std::partial_sum(dist.begin(), dist.end(), prefix.begin());
        const double total = prefix.back();
        const std::size_t want = std::min(batch, k - done);
        for (std::size_t b = 0; b < want; ++b) {
            std::size_t pick;
            if (total > 0.0) {
                const double u = std::uniform_real_distribution<double>(0.0, total)(rng);
                pick = static_cast<std::size_t>(std::upper_bound(prefix.begin(), prefix.end(), u) - prefix.begin());
                pick = std::min(pick, n - 1);
            } else {  // every row sits on a center already: any row will do
                pick = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
            }
            std::memcpy(c.data() + chosen.size() * dim, x + pick * dim, dim * sizeof(float));
            chosen.push_back(pick);
        }
    }
    return c;
}

}  // namespace

FloatBuffer kmeans(const KernelTable& kt, const float* x, std::size_t n, std::size_t dim, std::size_t k, Match how,
                   const KMeansOptions& opt) {
    if (k == 0) throw std::invalid_argument("k-means: expected at least one centroid, got 0");
    if (n < k)
        throw std::invalid_argument("training " + std::to_string(k) + " partitions needs at least " +
                                    std::to_string(k) + " vectors (39 or more per partition give stable centroids), " +
                                    "got " + std::to_string(n));
    std::mt19937_64 rng(opt.seed);
    // An evenly drawn sample when there are more rows than the centroids need.
    FloatBuffer sample;
    const std::size_t cap = std::max<std::size_t>(k, opt.max_rows_per_centroid * k);
    if (n > cap) {
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), std::size_t(0));
        for (std::size_t i = 0; i < cap; ++i)
            std::swap(order[i], order[i + std::uniform_int_distribution<std::size_t>(0, n - 1 - i)(rng)]);
        std::sort(order.begin(), order.begin() + cap);  // read the rows in memory order
        sample.resize(cap * dim);
        for (std::size_t i = 0; i < cap; ++i) std::memcpy(sample.data() + i * dim, x + order[i] * dim, dim * 4);
        x = sample.data();
        n = cap;
    }
    // Seeding reads an evenly spaced subset of at most kSeedRowsPerCentroid rows per centroid: D^2 sampling needs
    // far fewer rows than Lloyd's iterations, and on all of them it cost as much as one iteration.
    FloatBuffer seed_rows;
    const float* sx = x;
    std::size_t sn = n;
    if (n > kSeedRowsPerCentroid * k) {
        sn = kSeedRowsPerCentroid * k;
        seed_rows.resize(sn * dim);
        for (std::size_t i = 0; i < sn; ++i)
            std::memcpy(seed_rows.data() + i * dim, x + (i * n / sn) * dim, dim * sizeof(float));
        sx = seed_rows.data();
    }
    FloatBuffer c = seed_centers(kt, sx, sn, dim, k, rng, opt.interrupt);
    if (how == Match::dot) normalize_rows(c.data(), k, dim);
    if (opt.progress) opt.progress(0, opt.iterations);

    const std::unique_ptr<RowCodes> codes = int8_pays(kt, k, dim) ? std::make_unique<RowCodes>(x, n, dim) : nullptr;
    std::vector<std::uint32_t> assign(n);
    std::vector<double> sums(k * dim);
    std::vector<std::size_t> counts(k);
    for (std::size_t it = 0; it < opt.iterations; ++it) {
        if (codes)
            nearest_i8(kt, c.data(), k, dim, how, x, n, *codes, assign.data(), opt.interrupt);
        else
            nearest_f32(kt, c.data(), k, dim, how, x, n, assign.data(), opt.interrupt);
        std::fill(sums.begin(), sums.end(), 0.0);
        std::fill(counts.begin(), counts.end(), 0);
        for (std::size_t i = 0; i < n; ++i) {
            double* s = sums.data() + std::size_t(assign[i]) * dim;
            const float* row = x + i * dim;
            for (std::size_t d = 0; d < dim; ++d) s[d] += row[d];
            ++counts[assign[i]];
        }
        for (std::size_t j = 0; j < k; ++j)
            if (counts[j])
                for (std::size_t d = 0; d < dim; ++d)
                    c[j * dim + d] = static_cast<float>(sums[j * dim + d] / double(counts[j]));
        // Empty clusters: split the largest one, its centroid nudged apart in opposite directions.
        for (std::size_t j = 0; j < k; ++j) {
            if (counts[j]) continue;
            const std::size_t big = static_cast<std::size_t>(std::max_element(counts.begin(), counts.end()) -
                                                             counts.begin());
            for (std::size_t d = 0; d < dim; ++d) {
                const float v = c[big * dim + d], eps = (d % 2 ? 1.0f : -1.0f) / 1024.0f;
                c[j * dim + d] = v * (1.0f + eps);
                c[big * dim + d] = v * (1.0f - eps);
            }
            counts[j] = counts[big] / 2;
            counts[big] -= counts[j];
        }
        if (how == Match::dot) normalize_rows(c.data(), k, dim);
        if (opt.progress) opt.progress(it + 1, opt.iterations);
    }
    return c;
}

std::vector<std::uint32_t> group_by_partition(std::vector<std::uint32_t>& part) {
    std::vector<std::uint32_t> order(part.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return part[a] < part[b]; });
    std::vector<std::uint32_t> sorted(part.size());
    for (std::size_t i = 0; i < part.size(); ++i) sorted[i] = part[order[i]];
    part.swap(sorted);
    return order;
}

Partitions::Partitions(std::size_t count, std::size_t dim, Match assign, Match probe)
    : count_(count), dim_(dim), assign_(assign), probe_(probe), lists_(count) {
    if (count == 0 || count > kMaxPartitions)
        throw std::invalid_argument("partitions must be in [1, " + std::to_string(kMaxPartitions) + "], got " +
                                    std::to_string(count));
}

void Partitions::set_centroids(FloatBuffer c) {
    if (size() != 0) throw std::logic_error("partitions: centroids change only while the lists are empty");
    if (c.size() != count_ * dim_) throw std::invalid_argument("partitions: centroid matrix has the wrong size");
    for (float v : c)
        if (!std::isfinite(v)) throw std::invalid_argument("partitions: centroids must be finite");
    centroids_ = std::move(c);
    half_norms_ = half_norms_of(centroids_.data(), count_, dim_);
    std::lock_guard<std::mutex> lock(pack_mu_);
    packed_.reset();
}

std::shared_ptr<const PackedRows> Partitions::packed(const KernelTable& kt) const {
    std::lock_guard<std::mutex> lock(pack_mu_);
    if (!packed_ || packed_->isa != kt.isa)
        packed_ = std::make_shared<const PackedRows>(pack_rows(kt, centroids_.data(), count_, dim_));
    return packed_;
}

void Partitions::score(const KernelTable& kt, const float* x, std::size_t rows, Match rule, float* out,
                       const InterruptFn& interrupt) const {
    if (rows * 4 < kt.gemm_mr) {  // a query or two: stream the centroids once each (the micro-kernel would
                                  // compute mr rows for every one of them)
        for (std::size_t i = 0; i < rows; ++i) {
            float* o = out + i * count_;
            kt.dot_rows_f32(x + i * dim_, centroids_.data(), count_, dim_, o);
            if (rule == Match::l2)
                for (std::size_t c = 0; c < count_; ++c) o[c] -= half_norms_[c];
        }
        return;
    }
    const auto p = packed(kt);
    score_rows(kt, x, rows, *p, rule == Match::l2 ? half_norms_.data() : nullptr, out, interrupt);
}

void Partitions::nearest(const KernelTable& kt, const float* x, std::size_t n, std::uint32_t* out) const {
    if (!trained()) throw std::logic_error("partitions: not trained");
    if (!int8_pays(kt, count_, dim_)) return nearest_f32(kt, centroids_.data(), count_, dim_, assign_, x, n, out, {});
    constexpr std::size_t kChunkRows = 65536;  // rows quantized at a time (bounds their int8 copy)
    for (std::size_t r0 = 0; r0 < n; r0 += kChunkRows) {
        const std::size_t rows = std::min(kChunkRows, n - r0);
        const RowCodes codes(x + r0 * dim_, rows, dim_);
        nearest_i8(kt, centroids_.data(), count_, dim_, assign_, x + r0 * dim_, rows, codes, out + r0, {});
    }
}

void Partitions::probe(const KernelTable& kt, const float* q, std::size_t nq, std::size_t nprobe,
                       std::uint32_t* out, const InterruptFn& interrupt) const {
    if (!trained()) throw std::logic_error("partitions: not trained");
    std::vector<float> s(std::min(nq, kBlockRows) * count_);
    const std::size_t workers = num_threads();
    for (std::size_t r0 = 0; r0 < nq; r0 += kBlockRows) {
        const std::size_t rows = std::min(kBlockRows, nq - r0);
        score(kt, q + r0 * dim_, rows, probe_, s.data(), interrupt);
        // The nprobe best of each row: a top-k heap fed only the scores that pass its current worst (few do).
        TopKSet top(rows, nprobe, -std::numeric_limits<float>::infinity());
        parallel_for_blocks(rows, 64, workers, [&](std::size_t b, std::size_t e, std::size_t) {
            std::vector<float> best_s(nprobe);
            std::vector<std::int64_t> best_p(nprobe);
            for (std::size_t i = b; i < e; ++i) {
                const float* si = s.data() + i * count_;
                for (std::size_t c = 0; c < count_; ++c)
                    if (si[c] >= top.threshold(i)) top.push(i, si[c], std::int64_t(c));
                top.write_sorted(i, best_s.data(), best_p.data(), nprobe);
                for (std::size_t j = 0; j < nprobe; ++j) out[(r0 + i) * nprobe + j] = std::uint32_t(best_p[j]);
            }
        });
    }
}

void Partitions::append(const std::uint32_t* part, std::size_t n) {
    const std::size_t old = size();
    // Reserve everything first, so a bad_alloc leaves the lists as they were.
    std::vector<std::size_t> extra(count_, 0);
    for (std::size_t i = 0; i < n; ++i) ++extra[part[i]];
    list_of_.make_room(old + n);
    for (std::size_t p = 0; p < count_; ++p)
        if (extra[p]) lists_[p].make_room(lists_[p].size() + extra[p]);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t slot = static_cast<std::uint32_t>(old + i);
        lists_[part[i]].append(&slot, 1);
    }
    list_of_.append(part, n);
}

void Partitions::remove_slot(std::size_t slot) {
    const std::size_t last = size() - 1;
    auto drop = [this](std::size_t p, std::uint32_t s) -> std::uint32_t* {
        std::uint32_t* b = lists_[p].data();
        return std::find(b, b + lists_[p].size(), s);
    };
    // Take slot out of its list (the list's last entry fills the hole: order within a list does not matter).
    {
        const std::size_t p = list_of_.data()[slot];
        std::uint32_t* at = drop(p, static_cast<std::uint32_t>(slot));
        *at = lists_[p].data()[lists_[p].size() - 1];
        lists_[p].resize(lists_[p].size() - 1);
    }
    if (slot != last) {  // the last row now lives at slot
        const std::size_t p = list_of_.data()[last];
        *drop(p, static_cast<std::uint32_t>(last)) = static_cast<std::uint32_t>(slot);
        list_of_.data()[slot] = list_of_.data()[last];
    }
    list_of_.resize(last);
}

void Partitions::clear_lists() {
    for (auto& l : lists_) l = RowStore<std::uint32_t>();
    list_of_ = RowStore<std::uint32_t>();
}

std::size_t Partitions::bytes() const noexcept {
    std::size_t b = centroids_.capacity() * sizeof(float) + list_of_.capacity() * 4 + count_ * sizeof(lists_[0]);
    for (const auto& l : lists_) b += l.capacity() * 4;
    return b;
}

}  // namespace simdex
