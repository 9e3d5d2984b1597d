// Linear dimensionality reduction in the core: the moments PCA is fitted from (accumulated over batches) and the
// projection y = x W^T - bias that PCA and random projection apply (blocked GEMM on the SIMD micro-kernel).
// The d x d eigendecomposition and the random matrices are made in Python (python/simdex/transform.py).
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "simdex/gemm.hpp"

namespace simdex {

// Count, mean and scatter of float32 rows, accumulated batch by batch in double.
// The first batch's mean is kept as a shift that later rows are taken relative to (the "shifted data" method),
// so the scatter does not lose precision when the mean is large compared to the spread.
class MomentAccumulator {
  public:
    // bf16: use bf16 products on AMX tiles when amx_bf16_usable() (see syrk_update_bf16), else fp32.
    explicit MomentAccumulator(std::size_t dim, bool bf16 = false);
    bool bf16() const noexcept { return bf16_; }

    std::size_t dim() const noexcept { return dim_; }
    std::size_t count() const noexcept { return count_; }

    // Adds n rows (n x dim, C-contiguous). Throws std::invalid_argument, changing nothing, on NaN or Inf.
    void add(const float* x, std::size_t n, const InterruptFn& interrupt = {});
    void reset();

    void mean(double* out) const;            // dim values; zeros when empty
    void scatter(double* out) const;         // sum (x - mean)(x - mean)^T: dim x dim, symmetric
    void second_moment(double* out) const;   // sum x x^T: dim x dim, symmetric

    // Raw state, for saving a partly fitted PCA: shift (dim floats), shifted sums (dim), upper scatter (dim^2).
    const std::vector<float>& shift() const noexcept { return shift_; }
    const std::vector<double>& shifted_sum() const noexcept { return sum_; }
    const std::vector<double>& shifted_scatter() const noexcept { return scatter_; }
    void restore(std::size_t count, const float* shift, const double* sum, const double* scatter);

  private:
    std::size_t dim_;
    bool bf16_;
    std::size_t count_ = 0;
    std::vector<float> shift_;     // mean of the first batch
    std::vector<double> sum_;      // sum (x - shift)
    std::vector<double> scatter_;  // sum (x - shift)(x - shift)^T, upper triangle valid
};

// y = x W^T - bias for a fixed W (out_dim x in_dim) and bias (out_dim, optional). W is packed for the active
// kernels on first use and again if the active level changes.
class LinearProjection {
  public:
    LinearProjection(const float* w, std::size_t out_dim, std::size_t in_dim, const float* bias);

    std::size_t in_dim() const noexcept { return in_dim_; }
    std::size_t out_dim() const noexcept { return out_dim_; }
    const std::vector<float>& matrix() const noexcept { return w_; }
    const std::vector<float>& bias() const noexcept { return bias_; }

    // x: n x in_dim, y: n x out_dim (both C-contiguous). Safe to call from several threads at once.
    // Throws NonFiniteInput (a std::invalid_argument) on NaN or Inf in x; y is then partly written.
    void apply(const float* x, std::size_t n, float* y, const InterruptFn& interrupt = {}) const;

  private:
    std::size_t in_dim_, out_dim_;
    std::vector<float> w_, bias_;  // bias_ empty: none
    mutable std::mutex pack_mu_;
    mutable std::shared_ptr<const PackedRows> packed_;
};

}  // namespace simdex
