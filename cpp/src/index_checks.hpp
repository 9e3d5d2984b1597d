// Input checks FlatIndex's add, train and search share (index.cpp, index_search.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
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

// The largest squared norm any int8 code vector decodes to under calibration q: sum over dimensions of
// (|offset| + 127 step)^2, in double.
inline double max_decoded_norm2(const Quantizer& q) {
    double sum = 0.0;
    for (std::size_t d = 0; d < q.dim(); ++d) {
        const double m = std::fabs(double(q.offset()[d])) + 127.0 * double(q.scale()[d]);
        sum += m * m;
    }
    return sum;
}

// Under l2 a calibration must keep every decoded vector within kMaxL2Norm, as add keeps float rows, so that
// no distance overflows float32 (under ip the 2^70 decode bound of Quantizer::set is enough). Returns "" or why.
inline std::string l2_calibration_error(const Quantizer& q) {
    if (!(max_decoded_norm2(q) <= kMaxL2Norm * kMaxL2Norm))
        return "the int8 calibration decodes vectors of L2 norm above 2**62, the l2 limit (distances could "
               "overflow float32)";
    return "";
}

}  // namespace detail
}  // namespace simdex
