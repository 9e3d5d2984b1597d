// search(..., exact=true) on an int8 index with kept originals: the float32 top-k, read mostly from int8 codes.
//
// For a query q with int8 weights u, step t and constant <q, o> (quantize.hpp), the int8 score of row x with codes
// c is s^ = <q, o> + t <u, c>. With r_d = q_d s_d - t u_d the query weights' rounding, its distance from the true
// score <q, x> is at most
//     |<q, x - x^>| + |<r, c>|  <=  ||q|| E + min(max|r| L1, ||r|| L2)      (Cauchy-Schwarz, Hoelder)
// where x^ is the decoded row, E the largest ||x - x^|| over the index and L1 / L2 the largest norms of a code
// row. One int8 scan keeps every row whose s^ is within 2 * bound of the k-th best s^ (only those can reach the
// exact k-th score); they are rescored exactly with the originals, best s^ first, until the next one's s^ + bound
// falls below the exact k-th score found so far.
#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/scan.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {
// Rows a query may keep within its margin beyond its k best; past that (near-duplicate rows the int8 codes cannot
// tell apart) the query is answered by a float32 scan instead, which bounds the scan's memory.
constexpr std::size_t kNearCap = 1024;
}  // namespace

FlatIndex::ErrorBounds FlatIndex::error_bounds_unlocked() const {
    std::lock_guard<std::mutex> lock(bounds_mu_);
    if (bounds_valid_) return bounds_;
    ErrorBounds b;
    const std::size_t n = ids_.size();
    const float* rows = rows_unlocked();
    const std::int8_t* codes = codes_unlocked();
    std::vector<float> decoded(dim_);
    for (std::size_t r = 0; r < n; ++r) {
        quant_.decode(codes + r * dim_, 1, decoded.data());
        double err = 0, l1 = 0, l2 = 0, norm = 0;
        for (std::size_t d = 0; d < dim_; ++d) {
            const double x = rows[r * dim_ + d], diff = x - decoded[d], c = codes[r * dim_ + d];
            err += diff * diff;
            norm += x * x;
            l1 += std::abs(c);
            l2 += c * c;
        }
        b.error = std::max(b.error, std::sqrt(err));
        b.code_l1 = std::max(b.code_l1, l1);
        b.code_l2 = std::max(b.code_l2, std::sqrt(l2));
        b.norm = std::max(b.norm, std::sqrt(norm));
    }
    bounds_ = b;
    bounds_valid_ = true;
    return b;
}

void FlatIndex::search_i8_exact(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                                const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const {
    constexpr float kNone = -std::numeric_limits<float>::infinity();
    if (!keep_originals_)
        throw std::invalid_argument("exact=True needs the original float vectors: create the index with "
                                    "keep_originals=True");
    if (metric_ == Metric::l2) throw std::invalid_argument("exact=True applies to the cosine and ip metrics");
    if (ivf_) throw std::invalid_argument("exact=True applies to an index without partitions");
    if (p.rescore) throw std::invalid_argument("exact=True rescores by itself; pass rescore or exact, not both");
    for (std::size_t i = 0; i < nq * p.k; ++i) {
        scores[i] = kNone;
        ids[i] = -1;
    }
    if (p.rescored) std::fill(p.rescored, p.rescored + nq, 0);
    const std::size_t n = ids_.size();
    if (!quant_.trained() || n == 0 || nq == 0) return;
    const ErrorBounds eb = error_bounds_unlocked();

    std::vector<std::int8_t> qcodes(nq * dim_);
    std::vector<float> step(nq);
    std::vector<double> offset(nq), bound(nq), slack(nq);
    for (std::size_t i = 0; i < nq; ++i) {
        const float* q = queries + i * dim_;
        quant_.encode_query(q, qcodes.data() + i * dim_, &step[i], &offset[i]);
        double qn = 0, delta = 0, r2 = 0;
        for (std::size_t d = 0; d < dim_; ++d) {
            qn += double(q[d]) * q[d];
            const double r = double(q[d]) * quant_.scale()[d] - double(step[i]) * qcodes[i * dim_ + d];
            delta = std::max(delta, std::abs(r));
            r2 += r * r;
        }
        qn = std::sqrt(qn);
        // The weights' rounding r against the codes: |<r, c>| <= max|r| ||c||_1 (Hoelder) and <= ||r|| ||c||_2
        // (Cauchy-Schwarz); the second is about a third smaller on real embeddings (codes are far from uniform).
        bound[i] = qn * eb.error + std::min(delta * eb.code_l1, std::sqrt(r2) * eb.code_l2);
        // float32 rounding in the exact scores and in the int8 score's constant, with room to spare.
        slack[i] = 1e-5 * (qn * eb.norm + bound[i]) + 1e-30;
    }

    std::vector<bool> allow(slots ? n : 0, false);  // a filter: its rows, checked inside the scan
    if (slots)
        for (std::size_t r : *slots) allow[r] = true;
    const ScanViewI8 view{codes_unlocked(), ids_.data(), n, dim_, slots ? &allow : nullptr};

    // One scan keeps, besides each query's K = k best int8 scores, every row within 2 * bound of the k-th: the k
    // best rows score exactly at least s^_k - bound, so a row worth rescoring (s^ + bound reaching the exact k-th
    // score) has s^ >= s^_k - 2 bound. In integer dot units that margin is 2 (bound + slack) / step, and one more
    // absorbs the float subtraction that applies it.
    std::vector<float> margin(nq);
    for (std::size_t i = 0; i < nq; ++i)
        margin[i] = step[i] > 0 ? static_cast<float>(2 * (bound[i] + slack[i]) / step[i]) + 1.0f
                                : std::numeric_limits<float>::infinity();
    SearchParams sp = p;
    sp.min_score = kNone;
    sp.exact = false;
    sp.rescored = nullptr;
    NearLists near;
    run_search_i8_near(kt, view, qcodes.data(), nq, sp, margin.data(), kNearCap, &near);

    const float* originals = rows_unlocked();
    std::vector<std::size_t> too_many;  // queries whose near rows passed the cap: scanned in float32 below
    TopKSet best(nq, p.k, kNone);        // the exact scores; min_score applies to what it returns
    for (std::size_t i = 0; i < nq; ++i) {
        if (!near[i].complete) {
            too_many.push_back(i);
            continue;
        }
        // Rescore best-first by int8 score until no row left can reach the exact k-th score.
        const float* q = queries + i * dim_;
        std::size_t rescored = 0;
        for (const auto& [dot, id] : near[i].entries) {
            if (step[i] * double(dot) + offset[i] + bound[i] + slack[i] < double(best.threshold(i))) break;
            const float s = kt.dot_f32(q, originals + slot_of(id) * dim_, dim_);
            ++rescored;
            if (s >= best.threshold(i)) best.push(i, s, id);
        }
        if (p.rescored) p.rescored[i] = rescored;
        best.write_sorted(i, scores + i * p.k, ids + i * p.k, p.k);
        for (std::size_t c = 0; c < p.k; ++c)
            if (scores[i * p.k + c] < p.min_score) {
                scores[i * p.k + c] = kNone;
                ids[i * p.k + c] = -1;
            }
    }
    if (too_many.empty()) return;
    // Rows too close to tell apart by int8 codes (near-duplicates, a query with no int8 step): the float32 scan.
    std::vector<float> sub(too_many.size() * dim_);
    for (std::size_t j = 0; j < too_many.size(); ++j)
        std::copy(queries + too_many[j] * dim_, queries + (too_many[j] + 1) * dim_, sub.begin() + j * dim_);
    std::vector<float> fs(too_many.size() * p.k);
    std::vector<std::int64_t> fi(too_many.size() * p.k);
    sp.min_score = p.min_score;
    run_search(kt, ScanView{originals, ids_.data(), n, dim_, slots ? &allow : nullptr}, sub.data(), too_many.size(),
               sp, fs.data(), fi.data());
    for (std::size_t j = 0; j < too_many.size(); ++j) {
        const std::size_t i = too_many[j];
        std::copy(fs.begin() + j * p.k, fs.begin() + (j + 1) * p.k, scores + i * p.k);
        std::copy(fi.begin() + j * p.k, fi.begin() + (j + 1) * p.k, ids + i * p.k);
        if (p.rescored) p.rescored[i] = slots ? slots->size() : n;
    }
}

}  // namespace simdex
