// search(..., exact=true) on an int8 index with kept originals: the float32 top-k, read mostly from int8 codes.
//
// For a query q with int8 weights u, step t and constant <q, o> (quantize.hpp), the int8 score of row x with codes
// c is s^ = <q, o> + t <u, c>. Its distance from the true score <q, x> is at most
//     |<q, x - x^>| + |sum_d (q_d s_d - t u_d) c_d|  <=  ||q|| E + delta_q L1      (Cauchy-Schwarz, then Hoelder)
// where x^ is the decoded row, E the largest ||x - x^|| over the index, L1 the largest sum_d |c_d| and delta_q the
// largest rounding |q_d s_d - t u_d| of this query. The search takes the K best rows by int8 score and rescores
// them exactly with the originals; a row it did not take scores at most s^_K + bound, so when that is below the
// exact k-th score no other row can enter the top k, and the result is exact. Otherwise K grows fourfold.
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
        double err = 0, l1 = 0, norm = 0;
        for (std::size_t d = 0; d < dim_; ++d) {
            const double x = rows[r * dim_ + d], diff = x - decoded[d];
            err += diff * diff;
            norm += x * x;
            l1 += std::abs(static_cast<int>(codes[r * dim_ + d]));
        }
        b.error = std::max(b.error, std::sqrt(err));
        b.code_l1 = std::max(b.code_l1, l1);
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
        double qn = 0, delta = 0;
        for (std::size_t d = 0; d < dim_; ++d) {
            qn += double(q[d]) * q[d];
            const double w = double(q[d]) * quant_.scale()[d];
            delta = std::max(delta, std::abs(w - double(step[i]) * qcodes[i * dim_ + d]));
        }
        qn = std::sqrt(qn);
        bound[i] = qn * eb.error + delta * eb.code_l1;
        // float32 rounding in the exact scores and in the int8 score's constant, with room to spare.
        slack[i] = 1e-5 * (qn * eb.norm + bound[i]) + 1e-30;
    }

    std::vector<bool> allow(slots ? n : 0, false);  // a filter: its rows, checked inside the scan
    if (slots)
        for (std::size_t r : *slots) allow[r] = true;
    const float* originals = rows_unlocked();
    std::vector<std::size_t> pending(nq);
    for (std::size_t i = 0; i < nq; ++i) pending[i] = i;
    // The first pool: larger ones certify more queries at once but slow the int8 scan's top-k lists (K = 64 cost
    // 1.6x the plain int8 batch, K = 24 1.2x on real-minilm); the few queries left run again with 4K.
    std::size_t cand = std::min(n, std::max<std::size_t>(2 * p.k, 24));
    std::vector<std::pair<float, std::int64_t>> exact;
    while (!pending.empty()) {
        const std::size_t m = pending.size();
        std::vector<std::int8_t> sub(m * dim_);
        for (std::size_t j = 0; j < m; ++j)
            std::copy(qcodes.begin() + pending[j] * dim_, qcodes.begin() + (pending[j] + 1) * dim_,
                      sub.begin() + j * dim_);
        SearchParams sp = p;
        sp.k = cand;
        sp.min_score = kNone;
        sp.exact = false;
        sp.rescored = nullptr;
        std::vector<float> dots(m * cand);
        std::vector<std::int64_t> found(m * cand);
        run_search_i8(kt, ScanViewI8{codes_unlocked(), ids_.data(), n, dim_, slots ? &allow : nullptr}, sub.data(), m,
                      sp, dots.data(), found.data());

        std::vector<std::size_t> again;
        for (std::size_t j = 0; j < m; ++j) {
            const std::size_t i = pending[j];
            const float* q = queries + i * dim_;
            const std::int64_t* f = found.data() + j * cand;
            exact.clear();
            for (std::size_t c = 0; c < cand && f[c] >= 0; ++c)
                exact.emplace_back(kt.dot_f32(q, originals + slot_of(f[c]) * dim_, dim_), f[c]);
            const std::size_t got = exact.size();
            if (p.rescored) p.rescored[i] = got;
            const std::size_t keep = std::min(p.k, got);
            std::partial_sort(exact.begin(), exact.begin() + keep, exact.end(), [](const auto& a, const auto& b) {
                return ranks_before(a.first, a.second, b.first, b.second);
            });
            // Certified when every row that qualifies was taken, or when no row left out can reach the k-th score.
            bool done = got < cand || cand == n;
            if (!done && keep == p.k) {
                const double left_out = step[i] * double(dots[j * cand + cand - 1]) + offset[i];
                done = left_out + bound[i] + slack[i] < double(exact[keep - 1].first);
            }
            if (!done) {
                again.push_back(i);
                continue;
            }
            std::size_t out = 0;
            for (std::size_t c = 0; c < keep && exact[c].first >= p.min_score; ++c, ++out) {
                scores[i * p.k + out] = exact[c].first;
                ids[i * p.k + out] = exact[c].second;
            }
        }
        pending.swap(again);
        cand = std::min(n, cand * 4);
    }
}

}  // namespace simdex
