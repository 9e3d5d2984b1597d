#include "simdex/binary.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace simdex {
namespace {
constexpr std::size_t kMaxTrainRows = 131072;  // as the int8 calibration: rows sampled evenly from a larger set
}

void BitCoder::train(const float* x, std::size_t n) {
    if (n == 0) throw std::invalid_argument("training needs at least one vector, got 0");
    const std::size_t m = n < kMaxTrainRows ? n : kMaxTrainRows;
    std::vector<double> sum(dim_, 0.0), dev(dim_, 0.0);
    auto row = [&](std::size_t i) { return x + (m == n ? i : i * (n / m)) * dim_; };
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t d = 0; d < dim_; ++d) sum[d] += row(i)[d];
    std::vector<float> center(dim_), scale(dim_);
    for (std::size_t d = 0; d < dim_; ++d) center[d] = static_cast<float>(sum[d] / double(m));
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t d = 0; d < dim_; ++d) dev[d] += std::fabs(double(row(i)[d]) - center[d]);
    for (std::size_t d = 0; d < dim_; ++d) scale[d] = static_cast<float>(dev[d] / double(m));
    center_ = std::move(center);
    scale_ = std::move(scale);
    trained_ = true;
}

void BitCoder::set(const float* center, const float* scale) {
    for (std::size_t d = 0; d < dim_; ++d) {
        if (!std::isfinite(center[d]) || !std::isfinite(scale[d]) || scale[d] < 0.0f)
            throw std::invalid_argument("binary centre and scale must be finite and the scale non-negative: "
                                        "dimension " + std::to_string(d) + " is not");
        if (std::fabs(double(center[d])) + double(scale[d]) > 0x1p60)
            throw std::invalid_argument("binary centre or scale of dimension " + std::to_string(d) + " is above 2^60");
    }
    center_.assign(center, center + dim_);
    scale_.assign(scale, scale + dim_);
    trained_ = true;
}

void BitCoder::encode(const float* x, std::size_t n, std::uint8_t* codes) const noexcept {
    const std::size_t nb = code_bytes();
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = x + r * dim_;
        std::uint8_t* out = codes + r * nb;
        std::memset(out, 0, nb);
        for (std::size_t d = 0; d < dim_; ++d)
            if (row[d] > center_[d]) out[d / 8] |= static_cast<std::uint8_t>(1u << (d % 8));
    }
}

void BitCoder::decode(const std::uint8_t* codes, std::size_t n, float* out) const noexcept {
    const std::size_t nb = code_bytes();
    for (std::size_t r = 0; r < n; ++r)
        for (std::size_t d = 0; d < dim_; ++d) {
            const bool bit = (codes[r * nb + d / 8] >> (d % 8)) & 1u;
            out[r * dim_ + d] = bit ? center_[d] + scale_[d] : center_[d] - scale_[d];
        }
}

void BitCoder::encode_query(const float* q, float* w, double* offset_term) const noexcept {
    double c = 0.0;
    for (std::size_t d = 0; d < dim_; ++d) {
        c += double(q[d]) * center_[d];
        w[d] = static_cast<float>((double(q[d]) - center_[d]) * scale_[d]);
    }
    *offset_term = c;
}

}  // namespace simdex
