// Per-query top-k kept while scanning: a binary heap whose root is the worst kept result, so a candidate
// is compared with one number in the common case. Order: higher score first; equal scores go to the lower id.
// With margins, each list also keeps every entry within margin[q] of its k-th score (the "near" entries: exact
// int8 search rescores them), up to a cap; a list past its cap stops taking entries and reports overflowed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace simdex {

// True when (s1, id1) ranks before (s2, id2).
inline bool ranks_before(float s1, std::int64_t id1, float s2, std::int64_t id2) noexcept {
    return s1 > s2 || (s1 == s2 && id1 < id2);
}

// nq independent top-k lists in two flat arrays (no allocation per query).
class TopKSet {
  public:
    TopKSet(std::size_t nq, std::size_t k, float floor);
    // margins: nq non-negative widths (copied); near_cap: the most entries a list keeps besides its k.
    TopKSet(std::size_t nq, std::size_t k, float floor, const float* margins, std::size_t near_cap);

    std::size_t k() const noexcept { return k_; }
    // Scores below this cannot enter list q (scores equal to it may, on a lower id).
    float threshold(std::size_t q) const noexcept {
        if (size_[q] < k_) return floor_;
        return margin_.empty() ? scores_[q * k_] : scores_[q * k_] - margin_[q];  // overflowed: margin -inf
    }
    // Offers (s, id) to list q; the caller has already checked s >= threshold(q).
    void push(std::size_t q, float s, std::int64_t id);
    // Offers every entry of other's list q.
    void merge(std::size_t q, const TopKSet& other, std::size_t other_q);
    // Writes list q best-first into k_out slots, padding with (-inf, -1).
    void write_sorted(std::size_t q, float* scores, std::int64_t* ids, std::size_t k_out) const;
    // With margins: list q's k best and its entries within margin of the k-th, best first; false (out empty)
    // when the list overflowed its cap.
    bool near_sorted(std::size_t q, std::vector<std::pair<float, std::int64_t>>* out) const;

  private:
    void sift_down(float* s, std::int64_t* id, std::size_t n, std::size_t i) const noexcept;
    void add_near(std::size_t q, float s, std::int64_t id);
    void give_up(std::size_t q);  // list q overflowed: its threshold becomes +inf (margin -inf), near entries go
    bool overflowed(std::size_t q) const noexcept { return !margin_.empty() && margin_[q] == -kInfinity; }
    static constexpr float kInfinity = std::numeric_limits<float>::infinity();
    std::size_t k_;
    float floor_;
    std::vector<float> scores_;
    std::vector<std::int64_t> ids_;
    std::vector<std::size_t> size_;
    std::vector<float> margin_;  // empty: a plain top-k
    std::size_t near_cap_ = 0;
    std::vector<std::vector<std::pair<float, std::int64_t>>> near_;
    std::vector<std::size_t> near_limit_;  // near_[q] is pruned when it grows past this
};

}  // namespace simdex
