// Input checks FlatIndex's add, train and search share (index.cpp, index_search.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "simdex/index.hpp"

namespace simdex {
namespace detail {

inline bool all_finite(const float* x, std::size_t count, std::size_t* bad) {
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

// Under ip and l2, rows over the metric's norm bound could overflow float32 scores or distances.
inline void check_norms(Metric metric, const float* x, std::size_t n, std::size_t dim, const char* what) {
    if (metric == Metric::cosine) return;
    const std::size_t bad = first_row_over_ip_norm(x, n, dim, max_norm(metric));
    if (bad != n)
        throw std::invalid_argument(std::string(what) + ": row " + std::to_string(bad) + " has an L2 norm above " +
                                    (metric == Metric::l2 ? "2**62; under the l2 metric larger vectors could overflow "
                                                            "float32 distances"
                                                          : "2**63; under the ip metric larger vectors could overflow "
                                                            "float32 scores") +
                                    " (scale them down, or use the cosine metric); nothing was done");
}

}  // namespace detail
}  // namespace simdex
