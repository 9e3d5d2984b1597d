#include "simdex/topk.hpp"

#include <algorithm>
#include <numeric>

namespace simdex {

TopKSet::TopKSet(std::size_t nq, std::size_t k, float floor)
    : k_(k), floor_(floor), scores_(nq * k), ids_(nq * k), size_(nq, 0) {}

// Min-heap on rank: the root is the entry that ranks last.
void TopKSet::sift_down(float* s, std::int64_t* id, std::size_t n, std::size_t i) const noexcept {
    for (;;) {
        std::size_t worst = i;
        const std::size_t l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_before(s[worst], id[worst], s[l], id[l])) worst = l;
        if (r < n && ranks_before(s[worst], id[worst], s[r], id[r])) worst = r;
        if (worst == i) return;
        std::swap(s[i], s[worst]);
        std::swap(id[i], id[worst]);
        i = worst;
    }
}

void TopKSet::push(std::size_t q, float s, std::int64_t id) noexcept {
    float* hs = scores_.data() + q * k_;
    std::int64_t* hi = ids_.data() + q * k_;
    std::size_t& n = size_[q];
    if (n < k_) {
        if (!(s >= floor_)) return;  // NaN too: it has no rank, and sorting it would break the order
        // Sift up.
        std::size_t i = n++;
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (!ranks_before(hs[parent], hi[parent], s, id)) break;
            hs[i] = hs[parent];
            hi[i] = hi[parent];
            i = parent;
        }
        hs[i] = s;
        hi[i] = id;
        return;
    }
    if (!ranks_before(s, id, hs[0], hi[0])) return;
    hs[0] = s;
    hi[0] = id;
    sift_down(hs, hi, n, 0);
}

void TopKSet::merge(std::size_t q, const TopKSet& other, std::size_t other_q) noexcept {
    const float* s = other.scores_.data() + other_q * other.k_;
    const std::int64_t* id = other.ids_.data() + other_q * other.k_;
    for (std::size_t i = 0; i < other.size_[other_q]; ++i)
        if (s[i] >= threshold(q)) push(q, s[i], id[i]);
}

void TopKSet::write_sorted(std::size_t q, float* scores, std::int64_t* ids, std::size_t k_out) const {
    const std::size_t n = std::min(size_[q], k_out);
    const float* s = scores_.data() + q * k_;
    const std::int64_t* id = ids_.data() + q * k_;
    std::vector<std::size_t> order(size_[q]);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return ranks_before(s[a], id[a], s[b], id[b]); });
    for (std::size_t i = 0; i < n; ++i) {
        scores[i] = s[order[i]];
        ids[i] = id[order[i]];
    }
    for (std::size_t i = n; i < k_out; ++i) {
        scores[i] = -std::numeric_limits<float>::infinity();
        ids[i] = -1;
    }
}

}  // namespace simdex
