// Binary (1-bit) indexes (binary.hpp, docs/int8.md "Binary codes"): adding rows as sign bits around the learned
// centre; and the end of an int8 or binary search (finish_codes): the codes' scores, or an exact rescore of the
// k * R candidates with the kept float rows. search_b1 (index_search.cpp) runs the asymmetric scan before it.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/topk.hpp"

namespace simdex {

void FlatIndex::add_b1_unlocked(const float* x, std::size_t n) {
    if (n == 0) return;  // nothing to learn a centre from, nothing to store
    const std::size_t old = ids_.size(), cols = code_cols();
    FloatBuffer tmp;
    x = unit_rows(x, n, tmp);
    // The first add of an index never trained learns the centre from its own rows; later ones reuse it.
    BitCoder coder(dim_);
    Quantizer q8(dim_);  // keep_int8_: the int8 tier is calibrated on the same rows as the centre
    if (!bits_.trained()) {
        coder.train(x, n);
        if (keep_int8_) q8.train(x, n);
    }
    const BitCoder& use = bits_.trained() ? bits_ : coder;
    const Quantizer& use8 = bits_.trained() ? quant_ : q8;
    codes_.make_room((old + n) * cols);  // reserve everything first: a bad_alloc leaves the index as it was
    if (keep_originals_) data_.make_room((old + n) * dim_);
    if (keep_int8_) tier_.make_room((old + n) * dim_);
    ids_.make_room(old + n);
    slot_of_.reserve(old + n, ids_.data());
    codes_.resize((old + n) * cols);
    use.encode(x, n, reinterpret_cast<std::uint8_t*>(codes_.data()) + old * cols);
    if (keep_originals_) data_.append(x, n * dim_);
    if (keep_int8_) {
        tier_.resize((old + n) * dim_);
        use8.encode(x, n, tier_.data() + old * dim_);
    }
    if (!bits_.trained()) {
        bits_ = std::move(coder);
        if (keep_int8_) quant_ = std::move(q8);
    }
}

float FlatIndex::tier_score(const float* q, std::size_t slot) const noexcept {
    const std::int8_t* c = tier_unlocked() + slot * dim_;
    const float* offset = quant_.offset().data();
    const float* step = quant_.scale().data();
    double s = 0.0;  // <q, offset + step * code>, the product with the decoded row
    for (std::size_t d = 0; d < dim_; ++d) s += double(q[d]) * (double(offset[d]) + double(step[d]) * c[d]);
    return static_cast<float>(s);
}

void FlatIndex::finish_codes(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                             std::size_t cand_k, const float* code_scores, const std::int64_t* found,
                             const float* step, const double* offset_term, float* scores, std::int64_t* ids) const {
    const float* originals = rows_unlocked();
    std::vector<std::pair<float, std::int64_t>> cand;
    for (std::size_t i = 0; i < nq; ++i) {
        const float* d = code_scores + i * cand_k;
        const std::int64_t* f = found + i * cand_k;
        float* out_s = scores + i * p.k;
        std::int64_t* out_i = ids + i * p.k;
        const double t = step ? static_cast<double>(step[i]) : 1.0;
        cand.clear();
        for (std::size_t j = 0; j < cand_k && f[j] >= 0; ++j) {
            const float* q = queries + i * dim_;
            const float s = !p.rescore   ? static_cast<float>(t * d[j] + offset_term[i])
                            : keep_int8_ ? tier_score(q, slot_of(f[j]))
                                         : kt.dot_f32(q, originals + slot_of(f[j]) * dim_, dim_);
            cand.emplace_back(s, f[j]);
        }
        if (p.rescore)
            std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
                return ranks_before(a.first, a.second, b.first, b.second);
            });
        std::size_t out = 0;
        for (std::size_t j = 0; j < cand.size() && out < p.k; ++j) {
            if (cand[j].first < p.min_score) break;
            out_s[out] = cand[j].first;
            out_i[out] = cand[j].second;
            ++out;
        }
    }
}

}  // namespace simdex
