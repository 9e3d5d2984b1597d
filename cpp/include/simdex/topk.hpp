// Per-query top-k kept while scanning: a binary heap whose root is the worst kept result, so a candidate
// is compared with one number in the common case. Order: higher score first; equal scores go to the lower id.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
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

    std::size_t k() const noexcept { return k_; }
    // Scores below this cannot enter list q (scores equal to it may, on a lower id).
    float threshold(std::size_t q) const noexcept { return size_[q] < k_ ? floor_ : scores_[q * k_]; }
    // Offers (s, id) to list q; the caller has already checked s >= threshold(q).
    void push(std::size_t q, float s, std::int64_t id) noexcept;
    // Offers every entry of other's list q.
    void merge(std::size_t q, const TopKSet& other, std::size_t other_q) noexcept;
    // Writes list q best-first into k_out slots, padding with (-inf, -1).
    void write_sorted(std::size_t q, float* scores, std::int64_t* ids, std::size_t k_out) const;

  private:
    void sift_down(float* s, std::int64_t* id, std::size_t n, std::size_t i) const noexcept;
    std::size_t k_;
    float floor_;
    std::vector<float> scores_;
    std::vector<std::int64_t> ids_;
    std::vector<std::size_t> size_;
};

}  // namespace simdex
