// FlatIndex::search: input checks and filters around the float32 and int8 scans (scan.cpp), and under l2 the
// exact distances of the candidates the scan ranked.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "index_checks.hpp"
#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/ivf_scan.hpp"
#include "simdex/prefetch.hpp"
#include "simdex/quantize.hpp"
#include "simdex/scan.hpp"
#include "simdex/thread_pool.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

// The index of the lowest set bit of b != 0.
inline std::size_t lowest_bit(std::uint64_t b) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    return static_cast<std::size_t>(__builtin_ctzll(b));
#else
    std::size_t i = 0;
    for (; !(b & 1); b >>= 1) ++i;
    return i;
#endif
}

using detail::all_finite;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Float rows keep cosine scores in [-1, 1], ip scores below 2^126 (kMaxIpNorm) and l2 distances below 2^126
// (kMaxL2Norm), but int8 scores from a loaded calibration have looser bounds, and a mapped file's rows are not
// checked at load. A result of inf on a real row would be silently wrong, so it is an error; padding is
// (-inf, -1), or (+inf, -1) under l2.
void check_scores_finite(const float* scores, const std::int64_t* ids, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const bool padding = ids[i] == -1 && std::isinf(scores[i]);
        if (!std::isfinite(scores[i]) && !padding)
            throw std::overflow_error("the score of a query and id " + std::to_string(ids[i]) +
                                      " overflows float32 (|score| > 3.4e38): scale the vectors down, or use the "
                                      "cosine metric");
    }
}

}  // namespace

void FlatIndex::search(const float* queries, std::size_t nq, const SearchParams& p, float* scores,
                       std::int64_t* ids) const {
    if (p.k == 0) throw std::invalid_argument("k must be positive, got 0");
    std::size_t bad = 0;
    if (!all_finite(queries, nq * dim_, &bad))
        throw std::invalid_argument("queries must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf");
    if (metric_ == Metric::l2 && p.min_score != -kInf)
        throw std::invalid_argument("min_score does not apply under the l2 metric, where smaller distances rank "
                                    "first: use max_distance");
    if (metric_ != Metric::l2 && p.max_distance != kInf)
        throw std::invalid_argument("max_distance applies to the l2 metric; under '" + std::string(metric_name(metric_)) +
                                    "' use min_score");
    if (std::isnan(p.max_distance)) throw std::invalid_argument("max_distance must be a number, got NaN");
    detail::check_norms(metric_, queries, nq, dim_, "queries");
    if (p.nprobe && !partitions_)
        throw std::invalid_argument("nprobe applies to a partitioned index (partitions > 0); this one is exact");
    const KernelTable& kt = active_kernels();  // dispatch once per call
    FloatBuffer normalized;
    if (metric_ == Metric::cosine) {
        normalized.assign(queries, queries + nq * dim_);
        normalize_rows(normalized.data(), nq, dim_);
        queries = normalized.data();
    }
    std::shared_lock<RwLock> lock(mu_);
    // Filter: an allow-list of ids becomes the sorted slots that qualify.
    std::vector<std::size_t> slots;
    if (p.has_filter) {
        slots.resize(p.filter_size);
        slot_of_.find_many(p.filter, p.filter_size, ids_.data(), slots.data());
        slots.erase(std::remove(slots.begin(), slots.end(), IdMap::npos), slots.end());
        if (slots.size() >= ids_.size() / 64) {  // many: a bit per row, read back in order, beats sorting
            std::vector<std::uint64_t> marked((ids_.size() + 63) / 64, 0);
            for (std::size_t s : slots) marked[s / 64] |= std::uint64_t(1) << (s % 64);
            slots.clear();
            for (std::size_t w = 0; w < marked.size(); ++w)
                for (std::uint64_t b = marked[w]; b; b &= b - 1) slots.push_back(w * 64 + lowest_bit(b));
        } else {
            std::sort(slots.begin(), slots.end());
            slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
        }
    }
    if (dtype_ == Dtype::int8) {
        search_i8(kt, queries, nq, p, p.has_filter ? &slots : nullptr, scores, ids);
    } else if (dtype_ == Dtype::binary) {
        search_b1(kt, queries, nq, p, p.has_filter ? &slots : nullptr, scores, ids);
    } else {
        if (p.rescore)
            throw std::invalid_argument(
                "rescore applies to int8 and binary indexes; float32 scores are already exact");
        if (p.exact) throw std::invalid_argument("exact=True applies to int8 indexes; float32 scores are already exact");
        search_f32(kt, queries, nq, p, p.has_filter ? &slots : nullptr, scores, ids);
    }
    check_scores_finite(scores, ids, nq * p.k);  // a damaged mapped file is not read at load
}

// Runs fn on the rows a filter leaves: a row mask checked inside the scan, or, when few rows qualify, a gathered
// copy of just them.
template <class T, class Fn>
void FlatIndex::with_filter(RowsView<T> all, const std::vector<std::size_t>* slots, Fn&& fn) const {
    if (!slots) return fn(all);
    if (slots->size() * 8 < all.n) {
        const std::size_t cols = std::is_same<T, std::uint8_t>::value ? kernels::b1_bytes(dim_) : dim_;
        std::vector<T, AlignedAllocator<T>> sub(slots->size() * cols);
        std::vector<std::int64_t> sub_ids(slots->size());
        std::vector<float> sub_norms(all.norms ? slots->size() : 0);
        for (std::size_t i = 0; i < slots->size(); ++i) {
            std::memcpy(sub.data() + i * cols, all.data + (*slots)[i] * cols, cols * sizeof(T));
            sub_ids[i] = ids_.data()[(*slots)[i]];
            if (all.norms) sub_norms[i] = all.norms[(*slots)[i]];
        }
        return fn(RowsView<T>{sub.data(), sub_ids.data(), slots->size(), dim_, nullptr,
                              all.norms ? sub_norms.data() : nullptr, all.norm_scale});
    }
    std::vector<bool> mask(all.n, false);
    for (std::size_t r : *slots) mask[r] = true;
    all.allow = &mask;
    fn(all);
}

void FlatIndex::search_f32(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                           const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const {
    ScanView all{rows_unlocked(), ids_.data(), ids_.size(), dim_, nullptr};
    std::size_t nprobe = 0;
    const std::vector<std::uint32_t> probes = ivf_ ? probe_unlocked(kt, queries, nq, p, &nprobe)
                                                   : std::vector<std::uint32_t>();
    // A partitioned index scans the probed lists of the whole index; the gathered copy a selective filter makes
    // is scanned exactly (it is small, and probing would only lose recall there).
    auto scan = [&](const ScanView& v, float* s, std::int64_t* f) {
        if (ivf_ && v.data == all.data)
            run_search_ivf(kt, v, Probes{*ivf_, probes.data(), nprobe}, queries, nq, p, s, f);
        else
            run_search(kt, v, queries, nq, p, s, f);
    };
    if (metric_ != Metric::l2) return with_filter(all, slots, [&](const ScanView& v) { scan(v, scores, ids); });
    std::vector<float> half(nq, 0.5f), ranked(nq * p.k);
    std::vector<std::int64_t> found(nq * p.k);
    all.norms = norms_unlocked();
    all.norm_scale = half.data();
    with_filter(all, slots, [&](const ScanView& v) { scan(v, ranked.data(), found.data()); });
    finish_l2(kt, queries, nq, p, p.k, found.data(), true, scores, ids);
}

void FlatIndex::search_i8(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                          const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const {
    if (p.exact) return search_i8_exact(kt, queries, nq, p, slots, scores, ids);
    const float kNone = metric_ == Metric::l2 ? kInf : -kInf;
    if (p.rescore && !keep_originals_)
        throw std::invalid_argument("rescore needs the original float vectors: create the index with "
                                    "keep_originals=True (or search without rescore)");
    if (p.rescore && p.k > std::numeric_limits<std::size_t>::max() / p.rescore)
        throw std::invalid_argument("k * rescore overflows");
    for (std::size_t i = 0; i < nq * p.k; ++i) {
        scores[i] = kNone;
        ids[i] = -1;
    }
    if (!quant_.trained() || ids_.size() == 0) return;

    // Queries become int8 weights u with a step t and a constant <q, offset> each (quantize.hpp).
    std::vector<std::int8_t> qcodes(nq * dim_);
    std::vector<float> step(nq);
    std::vector<double> offset_term(nq);
    for (std::size_t i = 0; i < nq; ++i)
        quant_.encode_query(queries + i * dim_, qcodes.data() + i * dim_, &step[i], &offset_term[i]);

    // The scan ranks by the exact integer dot products; min_score applies to final scores below.
    SearchParams sp = p;
    sp.k = p.rescore ? std::min(p.k * p.rescore, std::max(p.k, ids_.size())) : p.k;  // no more candidates than rows
    sp.min_score = -kInf;
    sp.rescore = 0;
    std::vector<float> dots(nq * sp.k);
    std::vector<std::int64_t> found(nq * sp.k);
    ScanViewI8 all{codes_unlocked(), ids_.data(), ids_.size(), dim_, nullptr};
    // l2: <q, x^> - ||x^||^2 / 2 ~ <q, o> + t * (<u, c> - ||x^||^2 / (2 t)), so per query the integer dot minus
    // 1 / (2 t) times the decoded row's squared norm ranks like the distance to the decoded row.
    std::vector<float> norm_scale(metric_ == Metric::l2 ? nq : 0);
    for (std::size_t i = 0; i < norm_scale.size(); ++i) norm_scale[i] = step[i] > 0 ? 0.5f / step[i] : 0.5f;
    if (metric_ == Metric::l2) {
        all.norms = norms_unlocked();
        all.norm_scale = norm_scale.data();
    }
    std::size_t nprobe = 0;
    const std::vector<std::uint32_t> probes = ivf_ ? probe_unlocked(kt, queries, nq, p, &nprobe)
                                                   : std::vector<std::uint32_t>();
    with_filter(all, slots, [&](const ScanViewI8& v) {
        if (ivf_ && v.data == all.data)  // as in search_f32
            run_search_ivf_i8(kt, v, Probes{*ivf_, probes.data(), nprobe}, qcodes.data(), nq, sp, dots.data(),
                              found.data());
        else
            run_search_i8(kt, v, qcodes.data(), nq, sp, dots.data(), found.data());
    });
    // Exact distances to the kept originals (rescore) or to the decoded rows.
    if (metric_ == Metric::l2) return finish_l2(kt, queries, nq, p, sp.k, found.data(), p.rescore != 0, scores, ids);

    finish_codes(kt, queries, nq, p, sp.k, dots.data(), found.data(), step.data(), offset_term.data(), scores, ids);
}

// Binary: float query weights against the bits (binary.hpp), then finish_codes (index_binary.cpp).
void FlatIndex::search_b1(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                          const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const {
    if (p.exact)
        throw std::invalid_argument("exact=True applies to int8 indexes with kept originals; a binary index with "
                                    "keep_originals=True takes rescore=R instead");
    if (p.rescore && !keep_originals_ && !keep_int8_)
        throw std::invalid_argument("rescore needs the original float vectors or int8 codes: create the index with "
                                    "keep_originals=True or keep_originals='int8' (or search without rescore)");
    if (p.rescore && p.k > std::numeric_limits<std::size_t>::max() / p.rescore)
        throw std::invalid_argument("k * rescore overflows");
    for (std::size_t i = 0; i < nq * p.k; ++i) {
        scores[i] = -std::numeric_limits<float>::infinity();
        ids[i] = -1;
    }
    if (!bits_.trained() || ids_.size() == 0) return;

    // Queries become float weights and a constant <q, c> each (binary.hpp); the scan ranks by the kernel's sums,
    // and min_score applies to final scores (finish_codes).
    SearchParams sp = p;
    sp.k = p.rescore ? std::min(p.k * p.rescore, std::max(p.k, ids_.size())) : p.k;  // no more candidates than rows
    sp.min_score = -std::numeric_limits<float>::infinity();
    sp.rescore = 0;
    const ScanViewB1 all{reinterpret_cast<const std::uint8_t*>(codes_unlocked()), ids_.data(), ids_.size(), dim_,
                         nullptr};
    const auto answer = [&](const float* qs, std::size_t n, std::vector<std::vector<HammingNear>>* pools,
                            float* out_scores, std::int64_t* out_ids) {
        std::vector<float> weights(n * dim_);
        std::vector<double> offset_term(n);
        for (std::size_t i = 0; i < n; ++i)
            bits_.encode_query(qs + i * dim_, weights.data() + i * dim_, &offset_term[i]);
        std::vector<float> sums(n * sp.k);
        std::vector<std::int64_t> found(n * sp.k);
        b1_candidates(kt, all, slots, qs, weights.data(), n, sp, pools, sums.data(), found.data());
        finish_codes(kt, qs, n, p, sp.k, sums.data(), found.data(), nullptr, offset_term.data(), out_scores, out_ids);
    };
    std::vector<std::vector<HammingNear>> pools;  // filled when the batch took the Hamming prefilter
    answer(queries, nq, &pools, scores, ids);
    if (pools.empty()) return;
    // A query is answered from its Hamming pool only when the rows it returns all lie among the nearer
    // 1 / kB1HammingTrustShare of the pool, or the pool holds every row: where its best rows spread through the
    // pool (a query unlike the data), rows past the pool may belong too, and the full scan answers it instead.
    const std::size_t pool_size = b1_hamming_pool_rows(sp.k);
    std::vector<std::size_t> rest;
    std::vector<std::int64_t> returned;
    for (std::size_t i = 0; i < nq; ++i) {
        const std::vector<HammingNear>& near = pools[i];
        if (near.size() < pool_size) continue;
        returned.assign(ids + i * p.k, ids + (i + 1) * p.k);
        std::sort(returned.begin(), returned.end());
        std::uint32_t deepest = 0;
        for (const HammingNear& h : near)
            if (std::binary_search(returned.begin(), returned.end(), h.id)) deepest = std::max(deepest, h.dist);
        std::size_t nearer = 0;
        for (const HammingNear& h : near) nearer += h.dist < deepest;
        if (nearer * kB1HammingTrustShare > near.size()) rest.push_back(i);
    }
    if (rest.empty()) return;
    const std::size_t m = rest.size();
    std::vector<float> sub(m * dim_), sub_scores(m * p.k);
    std::vector<std::int64_t> sub_ids(m * p.k);
    for (std::size_t j = 0; j < m; ++j) std::memcpy(&sub[j * dim_], queries + rest[j] * dim_, dim_ * sizeof(float));
    answer(sub.data(), m, nullptr, sub_scores.data(), sub_ids.data());
    for (std::size_t j = 0; j < m; ++j) {
        std::memcpy(scores + rest[j] * p.k, &sub_scores[j * p.k], p.k * sizeof(float));
        std::memcpy(ids + rest[j] * p.k, &sub_ids[j * p.k], p.k * sizeof(std::int64_t));
    }
}

namespace {
// Each query's weights rounded to integers on one step per query (max |w| / top), so |code| <= top.
template <class T>
std::vector<T> round_weights(const float* weights, std::size_t nq, std::size_t dim, float top) {
    std::vector<T> out(nq * dim);
    for (std::size_t i = 0; i < nq; ++i) round_on_one_step(weights + i * dim, dim, top, out.data() + i * dim);
    return out;
}

bool by_rank(const std::pair<float, std::int64_t>& a, const std::pair<float, std::int64_t>& b) {
    return ranks_before(a.first, a.second, b.first, b.second);
}

// Writes the sp.k best of cand (exact asymmetric scores) as query i's row of sums / found.
void write_best(std::vector<std::pair<float, std::int64_t>>& cand, std::size_t i, std::size_t k, float* sums,
                std::int64_t* found) {
    const std::size_t keep = std::min(k, cand.size());
    std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), by_rank);
    for (std::size_t j = 0; j < k; ++j) {
        sums[i * k + j] = j < keep ? cand[j].first : -kInf;
        found[i * k + j] = j < keep ? cand[j].second : -1;
    }
}
}  // namespace

void FlatIndex::b1_hamming_pools(const KernelTable& kt, const ScanViewB1& all, const std::vector<std::size_t>* slots,
                                 const float* weights, std::size_t nq, std::size_t gk, const SearchParams& sp,
                                 std::vector<std::vector<HammingNear>>* pools, float* sums, std::int64_t* found) const {
    const std::size_t words = kernels::b1_words(dim_), pool = b1_hamming_pool_rows(sp.k);
    std::vector<std::uint64_t> signs(nq * words, 0);
    for (std::size_t i = 0; i < nq; ++i)
        for (std::size_t d = 0; d < dim_; ++d)
            if (weights[i * dim_ + d] > 0.0f) signs[i * words + d / 64] |= std::uint64_t(1) << (d % 64);
    with_filter(all, slots, [&](const ScanViewB1& v) {
        run_hamming_pool_b1(kt, v, signs.data(), nq, pool, pools, sp.interrupt);
    });
    // Each pool ranked by the integer sums, as a single query's scan ranks its rows; its gk best then by dot_b1.
    const std::uint8_t* codes = reinterpret_cast<const std::uint8_t*>(codes_unlocked());
    const std::size_t cols = code_cols();
    const auto w16 = round_weights<std::int16_t>(weights, nq, dim_, float(kernels::kB1WeightMax));
    const std::size_t workers = num_threads();
    struct Scratch {
        std::vector<std::pair<float, std::int64_t>> cand;
        std::vector<std::uint8_t> rows;
        std::vector<float> sums;
        std::vector<std::uint32_t> order;
        std::vector<const std::uint8_t*> at;
    };
    std::vector<Scratch> scratch(workers);
    parallel_for_blocks(
        nq, 16, workers,
        [&](std::size_t b, std::size_t e, std::size_t w) {
            Scratch& s = scratch[w];
            for (std::size_t i = b; i < e; ++i) {
                const std::vector<HammingNear>& near = (*pools)[i];
                const std::size_t n = near.size();
                s.rows.resize(n * cols);
                s.sums.resize(n);
                // The rows, gathered from the codes with the lines a few rows ahead asked for early.
                constexpr std::size_t kAhead = 8;
                s.at.resize(n);
                for (std::size_t j = 0; j < n; ++j) s.at[j] = codes + slot_of(near[j].id) * cols;
                for (std::size_t j = 0; j < n; ++j) {
                    if (j + kAhead < n) {
                        prefetch_line(s.at[j + kAhead]);
                        prefetch_line(s.at[j + kAhead] + cols - 1);
                    }
                    std::memcpy(s.rows.data() + j * cols, s.at[j], cols);
                }
                kt.sums_rows_b1(w16.data() + i * dim_, s.rows.data(), n, dim_, s.sums.data());
                s.order.resize(n);
                for (std::size_t j = 0; j < n; ++j) s.order[j] = static_cast<std::uint32_t>(j);
                const auto before = [&](std::uint32_t a, std::uint32_t b) {
                    return ranks_before(s.sums[a], near[a].id, s.sums[b], near[b].id);
                };
                const std::size_t keep = std::min(gk, n);
                std::nth_element(s.order.begin(), s.order.begin() + keep, s.order.end(), before);
                s.cand.clear();
                for (std::size_t j = 0; j < keep; ++j) {
                    const std::int64_t id = near[s.order[j]].id;
                    s.cand.emplace_back(kt.dot_b1(weights + i * dim_, codes + slot_of(id) * cols, dim_), id);
                }
                write_best(s.cand, i, sp.k, sums, found);
            }
        },
        sp.interrupt);
}

void FlatIndex::b1_candidates(const KernelTable& kt, const ScanViewB1& all, const std::vector<std::size_t>* slots,
                              const float* queries, const float* weights, std::size_t nq, const SearchParams& sp,
                              std::vector<std::vector<HammingNear>>* pools, float* sums, std::int64_t* found) const {
    // The rounded weights rank a wider pool; the pool's exact asymmetric scores (dot_b1 on the float weights) then
    // pick the sp.k best, so single queries and batches return the same rows unless a row of the true top sp.k
    // falls out of the pool (rounding moves a score by at most step / 2 * dim; measured on real embeddings, 2 *
    // sp.k + 16 lost none).
    SearchParams gp = sp;
    gp.k = std::min(ids_.size(), 2 * sp.k + kB1PoolExtra);
    // Hamming ranks well only with enough bits, and pays only past a few pools of rows.
    if (pools && !ivf_ && kt.hamming_prefilter && dim_ >= kB1HammingMinDim && dim_ <= kB1HammingMaxDim &&
        all.n >= kB1HammingMinRows)
        return b1_hamming_pools(kt, all, slots, weights, nq, gp.k, sp, pools, sums, found);
    std::vector<float> dots(nq * gp.k);
    std::vector<std::int64_t> pool(nq * gp.k);
    // A partitioned index scans the probed lists with the integer sums (no GEMM path for lists yet).
    std::size_t nprobe = 0;
    const std::vector<std::uint32_t> probes = ivf_ ? probe_unlocked(kt, queries, nq, sp, &nprobe)
                                                   : std::vector<std::uint32_t>();
    if (!ivf_ && nq > 1 && dim_ <= kernels::kMaxI8Depth) {
        const auto w8 = round_weights<std::int8_t>(weights, nq, dim_, 127.0f);
        with_filter(all, slots, [&](const ScanViewB1& v) {
            run_search_b1_gemm(kt, v, w8.data(), nq, gp, dots.data(), pool.data());
        });
    } else {
        const auto w16 = round_weights<std::int16_t>(weights, nq, dim_, float(kernels::kB1WeightMax));
        with_filter(all, slots, [&](const ScanViewB1& v) {
            if (ivf_ && v.data == all.data)  // as in search_f32
                run_search_ivf_b1(kt, v, Probes{*ivf_, probes.data(), nprobe}, w16.data(), nq, gp, dots.data(),
                                  pool.data());
            else
                run_search_b1(kt, v, w16.data(), nq, gp, dots.data(), pool.data());
        });
    }
    // The pool's exact asymmetric scores.
    const std::uint8_t* codes = reinterpret_cast<const std::uint8_t*>(codes_unlocked());
    const std::size_t cols = code_cols();
    std::vector<std::pair<float, std::int64_t>> cand;
    for (std::size_t i = 0; i < nq; ++i) {
        cand.clear();
        for (std::size_t j = 0; j < gp.k && pool[i * gp.k + j] >= 0; ++j) {
            const std::int64_t id = pool[i * gp.k + j];
            cand.emplace_back(kt.dot_b1(weights + i * dim_, codes + slot_of(id) * cols, dim_), id);
        }
        write_best(cand, i, sp.k, sums, found);
    }
}

void FlatIndex::append_norms_unlocked(std::size_t old, std::size_t n) {
    if (metric_ != Metric::l2) return;
    const auto dot = active_kernels().dot_f32;
    FloatBuffer decoded(dtype_ == Dtype::int8 ? dim_ : 0);
    std::vector<float> out(n);
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = data_.data() + (old + r) * dim_;
        if (dtype_ == Dtype::int8) {  // the scan scores the codes, so the norm is the decoded row's
            quant_.decode(codes_.data() + (old + r) * dim_, 1, decoded.data());
            row = decoded.data();
        }
        out[r] = dot(row, row, dim_);
    }
    norms_.append(out.data(), n);
}

void FlatIndex::finish_l2(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                          std::size_t cand_k, const std::int64_t* found, bool originals, float* dist,
                          std::int64_t* ids) const {
    // ||q - x||^2 from the difference itself: the error is relative to the distance, however close q and x are,
    // where ||q||^2 - 2 <q, x> + ||x||^2 would lose it to cancellation.
    const std::size_t workers = num_threads();
    const float* rows = rows_unlocked();
    const std::int8_t* codes = codes_unlocked();
    std::vector<FloatBuffer> scratch(workers);
    parallel_for_blocks(
        nq, 16, workers,
        [&](std::size_t b, std::size_t e, std::size_t w) {
            FloatBuffer& buf = scratch[w];
            buf.resize(2 * dim_);
            float* diff = buf.data();
            float* decoded = buf.data() + dim_;
            std::vector<std::pair<float, std::int64_t>> cand;
            for (std::size_t i = b; i < e; ++i) {
                const float* q = queries + i * dim_;
                const std::int64_t* f = found + i * cand_k;
                cand.clear();
                for (std::size_t j = 0; j < cand_k && f[j] >= 0; ++j) {
                    const std::size_t slot = slot_of(f[j]);
                    const float* x = decoded;  // the decoded int8 row, unless the originals are kept (rows may be null)
                    if (originals)
                        x = rows + slot * dim_;
                    else
                        quant_.decode(codes + slot * dim_, 1, decoded);
                    for (std::size_t d = 0; d < dim_; ++d) diff[d] = q[d] - x[d];
                    cand.emplace_back(kt.dot_f32(diff, diff, dim_), f[j]);
                }
                std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
                    return a.first < b.first || (a.first == b.first && a.second < b.second);
                });
                std::size_t out = 0;
                for (; out < cand.size() && out < p.k && cand[out].first <= p.max_distance; ++out) {
                    dist[i * p.k + out] = cand[out].first;
                    ids[i * p.k + out] = cand[out].second;
                }
                for (; out < p.k; ++out) {
                    dist[i * p.k + out] = kInf;
                    ids[i * p.k + out] = -1;
                }
            }
        },
        p.interrupt);
}

}  // namespace simdex
