#include "simdex/topk.hpp"

#include <algorithm>
#include <numeric>

namespace simdex {

TopKSet::TopKSet(std::size_t nq, std::size_t k, float floor)
    : k_(k), floor_(floor), scores_(nq * k), ids_(nq * k), size_(nq, 0) {}

TopKSet::TopKSet(std::size_t nq, std::size_t k, float floor, const float* margins, std::size_t near_cap)
    : TopKSet(nq, k, floor) {
    margin_.assign(margins, margins + nq);
    near_cap_ = near_cap;
    near_.resize(nq);
    near_limit_.assign(nq, std::min<std::size_t>(64, near_cap));
}

// Keeps (s, id) among list q's near entries; past the list's limit, drops those that fell below the threshold
// and doubles the limit, or gives up on the list past the cap.
void TopKSet::add_near(std::size_t q, float s, std::int64_t id) {
    if (overflowed(q) || !(s >= threshold(q))) return;
    auto& near = near_[q];
    near.emplace_back(s, id);
    if (near.size() <= near_limit_[q]) return;
    const float t = threshold(q);
    near.erase(std::remove_if(near.begin(), near.end(), [t](const auto& e) { return e.first < t; }), near.end());
    if (near.size() > near_cap_) return give_up(q);
    near_limit_[q] = std::min(near_cap_, std::max(near_limit_[q], 2 * near.size()));
}

void TopKSet::give_up(std::size_t q) {
    margin_[q] = -kInfinity;  // the threshold becomes +inf: the list takes nothing more
    std::vector<std::pair<float, std::int64_t>>().swap(near_[q]);
}

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

void TopKSet::push(std::size_t q, float s, std::int64_t id) {
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
    if (!ranks_before(s, id, hs[0], hi[0])) {
        if (!margin_.empty()) add_near(q, s, id);
        return;
    }
    const float out_s = hs[0];
    const std::int64_t out_id = hi[0];
    hs[0] = s;
    hi[0] = id;
    sift_down(hs, hi, n, 0);
    if (!margin_.empty()) add_near(q, out_s, out_id);
}

void TopKSet::merge(std::size_t q, const TopKSet& other, std::size_t other_q) {
    if (other.overflowed(other_q)) return give_up(q);
    const float* s = other.scores_.data() + other_q * other.k_;
    const std::int64_t* id = other.ids_.data() + other_q * other.k_;
    for (std::size_t i = 0; i < other.size_[other_q]; ++i)
        if (s[i] >= threshold(q)) push(q, s[i], id[i]);
    if (!other.margin_.empty())
        for (const auto& [ns, nid] : other.near_[other_q])
            if (ns >= threshold(q)) push(q, ns, nid);
}

bool TopKSet::near_sorted(std::size_t q, std::vector<std::pair<float, std::int64_t>>* out) const {
    out->clear();
    if (overflowed(q)) return false;
    const float t = threshold(q);
    for (std::size_t i = 0; i < size_[q]; ++i) out->emplace_back(scores_[q * k_ + i], ids_[q * k_ + i]);
    for (const auto& e : near_[q])
        if (e.first >= t) out->push_back(e);
    std::sort(out->begin(), out->end(),
              [](const auto& a, const auto& b) { return ranks_before(a.first, a.second, b.first, b.second); });
    return true;
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
