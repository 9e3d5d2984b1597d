// 1-bit codes (dtype "binary", docs/int8.md "Binary codes"): one bit per dimension, the sign of the row after a
// per-dimension centre is subtracted.
//
// Database side: a centre c_d (the mean of the training rows) and a scale a_d (the mean of |x_d - c_d|) are
// learned once and then fixed; a row x is stored as the bits b_d = [x_d > c_d] (kernels.hpp layout), and it
// decodes to x^_d = c_d + a_d * (b_d ? +1 : -1).
// Query side (asymmetric: the query stays float): the weights w_d = (q_d - c_d) * a_d and the constant <q, c>, so
//     score(q, x) = <q, c> + sum_d w_d * (b_d ? +1 : -1) = <q, c> + <q - c, x^ - c>,
// the product of the centred query with the centred decoded row (plus a constant per query). Centring the query too
// ranks slightly better on real embeddings than <q, x^> (bench/README_quant.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace simdex {

class BitCoder {
  public:
    explicit BitCoder(std::size_t dim = 0) : dim_(dim) {}

    std::size_t dim() const noexcept { return dim_; }
    std::size_t code_bytes() const noexcept { return (dim_ + 7) / 8; }
    bool trained() const noexcept { return trained_; }
    const std::vector<float>& center() const noexcept { return center_; }
    const std::vector<float>& scale() const noexcept { return scale_; }

    // Learns centre and scale from n >= 1 finite rows (the caller checks; at most 131072 rows, evenly spaced,
    // are read), in double.
    void train(const float* x, std::size_t n);
    // Restores a stored centre and scale; std::invalid_argument if a value is not finite, a scale is negative, or
    // |c_d| + a_d passes 2^60 (no trained coder does: the ip limit on norms bounds them).
    void set(const float* center, const float* scale);

    void encode(const float* x, std::size_t n, std::uint8_t* codes) const noexcept;
    void decode(const std::uint8_t* codes, std::size_t n, float* out) const noexcept;
    // The query weights w (dim floats) and the constant <q, c>.
    void encode_query(const float* q, float* w, double* offset_term) const noexcept;

  private:
    std::size_t dim_;
    bool trained_ = false;
    std::vector<float> center_, scale_;
};

}  // namespace simdex
