#include "simdex/project.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace simdex {
namespace {

void check_finite(const float* x, std::size_t n, std::size_t dim, const char* what) {
    for (std::size_t i = 0; i < n * dim; ++i)
        if (!std::isfinite(x[i]))
            throw std::invalid_argument(std::string(what) + ": expected finite values, got " + std::to_string(x[i]) +
                                        " at row " + std::to_string(i / dim) + ", column " + std::to_string(i % dim));
}

}  // namespace

MomentAccumulator::MomentAccumulator(std::size_t dim, bool bf16) : dim_(dim), bf16_(bf16) {
    if (dim == 0) throw std::invalid_argument("MomentAccumulator: dim must be positive, got 0");
    reset();
}

void MomentAccumulator::reset() {
    count_ = 0;
    shift_.assign(dim_, 0.0f);
    sum_.assign(dim_, 0.0);
    scatter_.assign(dim_ * dim_, 0.0);
}

void MomentAccumulator::add(const float* x, std::size_t n, const InterruptFn& interrupt) {
    if (n == 0) return;
    std::vector<float> shift = shift_;
    if (count_ == 0) {
        std::vector<double> m(dim_, 0.0);
        for (std::size_t r = 0; r < n; ++r)
            for (std::size_t j = 0; j < dim_; ++j) m[j] += x[r * dim_ + j];
        for (std::size_t j = 0; j < dim_; ++j) shift[j] = static_cast<float>(m[j] / static_cast<double>(n));
    }
    // Accumulate into copies so a failed or interrupted call leaves the state as it was.
    std::vector<double> sum = sum_, scatter = scatter_;
    if (bf16_ && amx_bf16_usable())
        syrk_update_bf16(x, n, dim_, shift.data(), scatter.data(), sum.data(), interrupt);
    else
        syrk_update(active_kernels(), x, n, dim_, shift.data(), scatter.data(), sum.data(), interrupt);
    // A NaN or Inf anywhere in x reaches the column sums (finite floats cannot overflow a double sum), so this
    // checks the input without another pass over it.
    for (std::size_t j = 0; j < dim_; ++j)
        if (!std::isfinite(sum[j]) || !std::isfinite(shift[j]))
            throw std::invalid_argument("partial_fit: expected finite values, got NaN or Inf in column " +
                                        std::to_string(j));
    for (std::size_t j = 0; j < dim_; ++j)
        if (!std::isfinite(scatter[j * dim_ + j]))
            throw std::invalid_argument("partial_fit: values too large: squares overflow float32 in column " +
                                        std::to_string(j));
    shift_.swap(shift);
    sum_.swap(sum);
    scatter_.swap(scatter);
    count_ += n;
}

void MomentAccumulator::mean(double* out) const {
    const double inv = count_ ? 1.0 / static_cast<double>(count_) : 0.0;
    for (std::size_t j = 0; j < dim_; ++j) out[j] = count_ ? shift_[j] + sum_[j] * inv : 0.0;
}

void MomentAccumulator::scatter(double* out) const {
    // sum (z - zbar)(z - zbar)^T = sum z z^T - n zbar zbar^T with z = x - shift.
    const double inv = count_ ? 1.0 / static_cast<double>(count_) : 0.0;
    for (std::size_t i = 0; i < dim_; ++i)
        for (std::size_t j = i; j < dim_; ++j) {
            const double v = scatter_[i * dim_ + j] - sum_[i] * sum_[j] * inv;
            out[i * dim_ + j] = out[j * dim_ + i] = v;
        }
}

void MomentAccumulator::second_moment(double* out) const {
    // sum x x^T = sum z z^T + shift sum(z)^T + sum(z) shift^T + n shift shift^T.
    const double n = static_cast<double>(count_);
    for (std::size_t i = 0; i < dim_; ++i)
        for (std::size_t j = i; j < dim_; ++j) {
            const double si = shift_[i], sj = shift_[j];
            const double v = scatter_[i * dim_ + j] + si * sum_[j] + sum_[i] * sj + n * si * sj;
            out[i * dim_ + j] = out[j * dim_ + i] = v;
        }
}

void MomentAccumulator::restore(std::size_t count, const float* shift, const double* sum, const double* scatter) {
    count_ = count;
    shift_.assign(shift, shift + dim_);
    sum_.assign(sum, sum + dim_);
    scatter_.assign(scatter, scatter + dim_ * dim_);
}

LinearProjection::LinearProjection(const float* w, std::size_t out_dim, std::size_t in_dim, const float* bias)
    : in_dim_(in_dim), out_dim_(out_dim), w_(w, w + out_dim * in_dim) {
    if (in_dim == 0 || out_dim == 0)
        throw std::invalid_argument("LinearProjection: dimensions must be positive, got " + std::to_string(out_dim) +
                                    " x " + std::to_string(in_dim));
    check_finite(w, out_dim, in_dim, "projection matrix");
    if (bias) {
        check_finite(bias, 1, out_dim, "projection bias");
        bias_.assign(bias, bias + out_dim);
    }
}

void LinearProjection::apply(const float* x, std::size_t n, float* y, const InterruptFn& interrupt) const {
    const KernelTable& kt = active_kernels();
    std::shared_ptr<const PackedRows> packed;
    {
        std::lock_guard<std::mutex> lock(pack_mu_);
        if (!packed_ || packed_->isa != kt.isa)
            packed_ = std::make_shared<const PackedRows>(pack_rows(kt, w_.data(), out_dim_, in_dim_));
        packed = packed_;
    }
    gemm_nt(kt, x, n, *packed, bias_.empty() ? nullptr : bias_.data(), y, out_dim_, interrupt);
}

}  // namespace simdex
