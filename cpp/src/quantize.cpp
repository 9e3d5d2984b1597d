#include "simdex/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace simdex {
namespace {

constexpr std::size_t kMaxTrainRows = 131072;  // rows sampled (evenly) from a larger training set
constexpr std::size_t kColumnBlock = 16;       // columns gathered per pass over the rows (one cache line)

// rint of v clamped to the symmetric code range (clamping first keeps the conversion defined).
inline std::int8_t to_code(float v) noexcept {
    v = std::min(std::max(v, -127.0f), 127.0f);
    return static_cast<std::int8_t>(std::nearbyint(v));
}

}  // namespace

void Quantizer::train(const float* x, std::size_t n) {
    if (n == 0) throw std::invalid_argument("training needs at least one vector, got 0");
    const std::size_t m = std::min(n, kMaxTrainRows);
    std::vector<std::size_t> rows(m);
    for (std::size_t i = 0; i < m; ++i) rows[i] = m == n ? i : i * n / m;
    const std::size_t lo_rank = static_cast<std::size_t>(kClipQuantile * static_cast<double>(m - 1));
    const std::size_t hi_rank = m - 1 - lo_rank;

    std::vector<float> offset(dim_), scale(dim_);
    std::vector<float> cols(kColumnBlock * m);
    for (std::size_t d0 = 0; d0 < dim_; d0 += kColumnBlock) {
        const std::size_t w = std::min(kColumnBlock, dim_ - d0);
        for (std::size_t i = 0; i < m; ++i) {
            const float* row = x + rows[i] * dim_ + d0;
            for (std::size_t j = 0; j < w; ++j) cols[j * m + i] = row[j];
        }
        for (std::size_t j = 0; j < w; ++j) {
            float* c = cols.data() + j * m;
            double sum = 0, sum2 = 0;
            for (std::size_t i = 0; i < m; ++i) sum += c[i];
            const double mean = sum / static_cast<double>(m);
            for (std::size_t i = 0; i < m; ++i) sum2 += (c[i] - mean) * (c[i] - mean);
            const double sd = std::sqrt(sum2 / static_cast<double>(m));
            std::nth_element(c, c + lo_rank, c + m);
            double lo = c[lo_rank];
            std::nth_element(c + lo_rank, c + hi_rank, c + m);
            double hi = c[hi_rank];
            lo = std::min(lo, mean - kMinSigmas * sd);
            hi = std::max(hi, mean + kMinSigmas * sd);
            const double range = hi - lo, magnitude = std::max(std::fabs(lo), std::fabs(hi));
            if (!(range > 1e-7 * magnitude) || range <= 0) {
                offset[d0 + j] = static_cast<float>(mean);
                scale[d0 + j] = 0.0f;
            } else {
                offset[d0 + j] = static_cast<float>((lo + hi) / 2);
                scale[d0 + j] = static_cast<float>(range / 254);
            }
        }
    }
    offset_ = std::move(offset);
    scale_ = std::move(scale);
    trained_ = true;
}

void Quantizer::set(const float* offset, const float* scale) {
    for (std::size_t d = 0; d < dim_; ++d) {
        if (!std::isfinite(offset[d]))
            throw std::invalid_argument("int8 calibration: offset of dimension " + std::to_string(d) + " is not finite");
        if (!std::isfinite(scale[d]) || scale[d] < 0)
            throw std::invalid_argument("int8 calibration: step of dimension " + std::to_string(d) +
                                        " must be finite and >= 0, got " + std::to_string(scale[d]));
    }
    offset_.assign(offset, offset + dim_);
    scale_.assign(scale, scale + dim_);
    trained_ = true;
}

void Quantizer::encode(const float* x, std::size_t n, std::int8_t* codes) const noexcept {
    const float* o = offset_.data();
    const float* s = scale_.data();
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = x + r * dim_;
        std::int8_t* out = codes + r * dim_;
        for (std::size_t d = 0; d < dim_; ++d) out[d] = s[d] > 0 ? to_code((row[d] - o[d]) / s[d]) : 0;
    }
}

void Quantizer::decode(const std::int8_t* codes, std::size_t n, float* out) const noexcept {
    for (std::size_t r = 0; r < n; ++r)
        for (std::size_t d = 0; d < dim_; ++d)
            out[r * dim_ + d] = offset_[d] + scale_[d] * static_cast<float>(codes[r * dim_ + d]);
}

void Quantizer::encode_query(const float* q, std::int8_t* u, float* step, double* offset_term) const noexcept {
    float top = 0.0f;
    double dot = 0;
    for (std::size_t d = 0; d < dim_; ++d) {
        top = std::max(top, std::fabs(q[d] * scale_[d]));
        dot += static_cast<double>(q[d]) * static_cast<double>(offset_[d]);
    }
    *offset_term = dot;
    const float t = top / 127.0f;
    *step = t;
    for (std::size_t d = 0; d < dim_; ++d) u[d] = t > 0 ? to_code((q[d] * scale_[d]) / t) : 0;
}

}  // namespace simdex
