#include "simdex/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

namespace simdex {
namespace {

constexpr std::size_t kMaxTrainRows = 131072;  // rows sampled (evenly) from a larger training set

// rint (ties to even) of v clamped to the symmetric code range. Clamping first keeps the conversion defined; adding
// and subtracting 1.5 * 2^23 rounds a float below 2^22 in magnitude to an integer in the current (nearest-even)
// mode, without a libm call, so the loops vectorize at the baseline ISA. Same result as numpy.rint.
inline float round_code(float v) noexcept {
    constexpr float kMagic = 12582912.0f;
    v = std::min(std::max(v, -127.0f), 127.0f);
    return (v + kMagic) - kMagic;
}

}  // namespace

void Quantizer::train(const float* x, std::size_t n) {
    if (n == 0) throw std::invalid_argument("training needs at least one vector, got 0");
    const std::size_t m = std::min(n, kMaxTrainRows);
    auto row_of = [&](std::size_t i) { return x + (m == n ? i : i * n / m) * dim_; };

    // Pass 1, the minimum and maximum, and the order statistics of rank r from each end (the kClipQuantile
    // quantiles, at least the second most extreme values). r is small (at most 13), so one pass keeps the r + 1
    // smallest and largest values of every column in little heaps instead of sorting columns.
    std::size_t r = static_cast<std::size_t>(kClipQuantile * static_cast<double>(m - 1));
    if (r == 0 && m >= 3) r = 1;
    const std::size_t keep = r + 1;
    std::vector<float> vmin(x, x + dim_), vmax(x, x + dim_);
    // Per column: a max-heap of the smallest values seen and a min-heap of the largest.
    std::vector<float> low(dim_ * keep), high(dim_ * keep);
    for (std::size_t i = 0; i < m; ++i) {
        const float* row = row_of(i);
        for (std::size_t d = 0; d < dim_; ++d) {
            const float v = row[d];
            vmin[d] = std::min(vmin[d], v);
            vmax[d] = std::max(vmax[d], v);
            float* lo = low.data() + d * keep;
            float* hi = high.data() + d * keep;
            if (i < keep) {
                lo[i] = hi[i] = v;
                std::push_heap(lo, lo + i + 1);
                std::push_heap(hi, hi + i + 1, std::greater<float>());
                continue;
            }
            if (v < lo[0]) {
                std::pop_heap(lo, lo + keep);
                lo[keep - 1] = v;
                std::push_heap(lo, lo + keep);
            }
            if (v > hi[0]) {
                std::pop_heap(hi, hi + keep, std::greater<float>());
                hi[keep - 1] = v;
                std::push_heap(hi, hi + keep, std::greater<float>());
            }
        }
    }
    // The heap roots are the r-th smallest and largest values (r < m, so the heaps are full).
    std::vector<float> qlo(dim_), qhi(dim_);
    for (std::size_t d = 0; d < dim_; ++d) {
        qlo[d] = low[d * keep];
        qhi[d] = high[d * keep];
    }

    // Pass 2, mean and standard deviation of the values clipped to [qlo, qhi] (winsorized), so a few outliers
    // cannot inflate the spread. Shifted by the first row: a constant column sums to exactly 0.
    std::vector<double> sum(dim_, 0.0), sum2(dim_, 0.0);
    const float* first = row_of(0);
    for (std::size_t i = 0; i < m; ++i) {
        const float* row = row_of(i);
        for (std::size_t d = 0; d < dim_; ++d) {
            const double t = static_cast<double>(std::min(std::max(row[d], qlo[d]), qhi[d])) - first[d];
            sum[d] += t;
            sum2[d] += t * t;
        }
    }

    // A sample of m normal values reaches about sqrt(2 ln m) sigmas; a population of millions about kTailSigmas.
    // The difference is how far a small sample's range falls short, so it is added on both sides.
    const double widen = std::max(0.0, kTailSigmas - std::sqrt(2.0 * std::log(static_cast<double>(m))));
    std::vector<float> offset(dim_), scale(dim_);
    for (std::size_t d = 0; d < dim_; ++d) {
        const double shifted_mean = sum[d] / static_cast<double>(m);
        const double sd = std::sqrt(std::max(0.0, sum2[d] / static_cast<double>(m) - shifted_mean * shifted_mean));
        const double mean = shifted_mean + first[d];
        // The sample's range, outliers beyond kOutlierSigmas clipped, widened on small samples.
        const double lo = std::max(static_cast<double>(vmin[d]), mean - kOutlierSigmas * sd) - widen * sd;
        const double hi = std::min(static_cast<double>(vmax[d]), mean + kOutlierSigmas * sd) + widen * sd;
        const double range = hi - lo, magnitude = std::max(std::fabs(lo), std::fabs(hi));
        if (!(range > 1e-7 * magnitude) || range <= 0) {
            offset[d] = static_cast<float>(mean);
            scale[d] = 0.0f;
        } else {
            offset[d] = static_cast<float>((lo + hi) / 2);
            scale[d] = static_cast<float>(range / 254);
        }
    }
    offset_ = std::move(offset);
    scale_ = std::move(scale);
    derive();
}

void Quantizer::derive() {
    safe_scale_.resize(dim_);
    keep_.resize(dim_);
    for (std::size_t d = 0; d < dim_; ++d) {
        safe_scale_[d] = scale_[d] > 0 ? scale_[d] : 1.0f;
        keep_[d] = scale_[d] > 0 ? std::int8_t(-1) : std::int8_t(0);
    }
    trained_ = true;
}

void Quantizer::set(const float* offset, const float* scale) {
    for (std::size_t d = 0; d < dim_; ++d) {
        if (!std::isfinite(offset[d]))
            throw std::invalid_argument("int8 calibration: offset of dimension " + std::to_string(d) +
                                        " is not finite");
        if (!std::isfinite(scale[d]) || scale[d] < 0)
            throw std::invalid_argument("int8 calibration: step of dimension " + std::to_string(d) +
                                        " must be finite and >= 0, got " + std::to_string(scale[d]));
        // Training on vectors the index accepts (unit rows, or ip rows of norm <= 2^63) never decodes past 2^70;
        // a larger range would only make scores overflow float32.
        if (std::fabs(double(offset[d])) + 127.0 * double(scale[d]) > 0x1p70)
            throw std::invalid_argument("int8 calibration: dimension " + std::to_string(d) + " decodes past 2^70 " +
                                        "(offset " + std::to_string(offset[d]) + ", step " +
                                        std::to_string(scale[d]) + ")");
    }
    offset_.assign(offset, offset + dim_);
    scale_.assign(scale, scale + dim_);
    derive();
}

void Quantizer::encode(const float* x, std::size_t n, std::int8_t* codes) const noexcept {
    const float* o = offset_.data();
    const float* s = safe_scale_.data();
    const std::int8_t* keep = keep_.data();
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = x + r * dim_;
        std::int8_t* out = codes + r * dim_;
        for (std::size_t d = 0; d < dim_; ++d)
            out[d] = static_cast<std::int8_t>(static_cast<std::int8_t>(round_code((row[d] - o[d]) / s[d])) & keep[d]);
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
    for (std::size_t d = 0; d < dim_; ++d)
        u[d] = t > 0 ? static_cast<std::int8_t>(round_code((q[d] * scale_[d]) / t)) : std::int8_t(0);
}

}  // namespace simdex
