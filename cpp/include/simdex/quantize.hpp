// int8 scalar quantization with per-dimension ranges (docs/int8.md).
//
// Database side: each dimension d has an offset o_d and a step s_d learned once (train) and then fixed; a value
// is stored as the code c_d = clamp(rint((x_d - o_d) / s_d), -127, 127), so the decoded vector is
// x^_d = o_d + s_d * c_d and o_d +- 127 s_d is the clip range. Codes are symmetric (never -128), which keeps the
// AVX2 sign trick and the vpdpbusd bias exact.
// Query side: the per-dimension weights w_d = q_d * s_d are rounded to int8 on one step t per query,
// u_d = rint(w_d / t) with t = max_d |w_d| / 127. Then
//     <q, x^> = <q, o> + sum_d w_d c_d  ~  <q, o> + t * <u, c>,
// where <u, c> is an exact integer dot product (the int8 kernels) and <q, o> one float per query. The only
// approximation beyond the decode of x is the rounding of the query weights.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace simdex {

// x rounded to integers on one step for all n values, s = max |x| / top: out = clamp(rint(x / s), -top, top) (all
// 0 when x is). Returns s. (The binary scan's query weights, k-means' int8 rows and centroids.)
template <class T>
float round_on_one_step(const float* x, std::size_t n, float top, T* out) noexcept {
    float big = 0.0f;
    for (std::size_t i = 0; i < n; ++i) big = std::max(big, std::fabs(x[i]));
    const float inv = big > 0.0f ? top / big : 0.0f;
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<T>(std::max(-top, std::min(top, std::nearbyint(x[i] * inv))));
    return big / top;
}

class Quantizer {
  public:
    // Calibration rule (docs/int8.md), per dimension over the training sample: the range is the sample's
    // minimum..maximum, clipped to mean +- kOutlierSigmas * sd where mean and sd are those of the values
    // winsorized at the kClipQuantile quantiles (at least at the second most extreme values), so a few wild
    // values neither stretch the range nor inflate sd; a sample of m rows is then widened on each side by
    // max(0, kTailSigmas - sqrt(2 ln m)) * sd, how far the extremes of a small sample fall short of a large
    // population's.
    static constexpr double kClipQuantile = 1e-4;
    static constexpr double kOutlierSigmas = 8.0;
    static constexpr double kTailSigmas = 4.5;

    explicit Quantizer(std::size_t dim = 0) : dim_(dim) {}

    std::size_t dim() const noexcept { return dim_; }
    bool trained() const noexcept { return trained_; }
    const std::vector<float>& offset() const noexcept { return offset_; }
    const std::vector<float>& scale() const noexcept { return scale_; }  // 0 on a dimension with no range

    // Learns the ranges from n >= 1 rows (finite values; the caller checks; at most 131072 rows, evenly spaced,
    // are read) by the rule above. offset = the middle of the range, step = range / 254; a range that is zero
    // (or below 1e-7 of the largest magnitude, float noise) gets step 0 and offset = the mean: codes 0 there.
    void train(const float* x, std::size_t n);
    // Restores a stored calibration; std::invalid_argument if an offset is not finite, a step is negative or
    // not finite, or a dimension decodes past 2^70 (no trained calibration does).
    void set(const float* offset, const float* scale);

    void encode(const float* x, std::size_t n, std::int8_t* codes) const noexcept;
    void decode(const std::int8_t* codes, std::size_t n, float* out) const noexcept;
    // Encodes one query: codes u (dim), its step t (0 when every weight is 0) and the constant term <q, o>.
    void encode_query(const float* q, std::int8_t* u, float* step, double* offset_term) const noexcept;

  private:
    void derive();  // the encoder's tables from offset_ and scale_
    std::size_t dim_;
    bool trained_ = false;
    std::vector<float> offset_, scale_;
    std::vector<float> safe_scale_;  // scale, or 1 where it is 0 (the code is masked to 0 there)
    std::vector<std::int8_t> keep_;  // -1 where the dimension has a range, 0 where it has none
};

}  // namespace simdex
