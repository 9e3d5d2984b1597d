// Blocked matrix products built on the packed GEMM micro-kernel that search uses (KernelTable::gemm_f32):
// gemm_nt for projections (rows times a fixed matrix transposed) and syrk_update for covariance accumulation.
// Both tile the work, pack operands into micro-kernel panels and spread tiles over the thread pool.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/thread_pool.hpp"

namespace simdex {

// The right-hand operand of gemm_nt, packed once for one kernel table: rows of an (n x k) row-major matrix in
// nr-wide panels laid out [k][nr] (see kernels::pack_panels).
struct PackedRows {
    Isa isa = Isa::scalar;
    std::size_t n = 0, k = 0, nr = 0;
    FloatBuffer data;
};
PackedRows pack_rows(const KernelTable& kt, const float* b, std::size_t n, std::size_t k);

// Thrown by gemm_nt when a holds NaN or Inf (checked while packing, at no extra pass): rows [first, first + count)
// of a hold the offending value.
struct NonFiniteInput : std::invalid_argument {
    NonFiniteInput(std::size_t first, std::size_t count)
        : std::invalid_argument("expected finite values, got NaN or Inf in rows " + std::to_string(first) + ".." +
                                std::to_string(first + count - 1)),
          first_row(first) {}
    std::size_t first_row;
};

// c (m x b.n, row stride ldc) = a (m x b.k, C-contiguous) * B^T, minus bias[j] in column j when bias is not null.
// b must have been packed for kt. Row tiles run on the thread pool; interrupt is polled between tiles.
// Throws NonFiniteInput (c partly written) if a holds NaN or Inf.
void gemm_nt(const KernelTable& kt, const float* a, std::size_t m, const PackedRows& b, const float* bias, float* c,
             std::size_t ldc, const InterruptFn& interrupt = {});

// Scatter update over n rows of x (n x d, C-contiguous), with z = x - shift (shift: d floats):
//   s (d x d, row-major doubles) += z^T z on and above the diagonal (entries below it are left alone),
//   col_sum (d doubles) += sum of the rows of z.
// Products run in float32 over chunks of kSyrkChunkRows rows and are added into the double sums after each
// chunk, so rounding does not grow with the total row count.
inline constexpr std::size_t kSyrkChunkRows = 2048;
void syrk_update(const KernelTable& kt, const float* x, std::size_t n, std::size_t d, const float* shift, double* s,
                 double* col_sum, const InterruptFn& interrupt = {});

// syrk_update with bf16 products on AMX tiles (call only when amx_bf16_usable()): z is rounded to bfloat16
// (8-bit mantissa, round to nearest even) for the products, which are exact in fp32 and summed in fp32 within
// a chunk, then in double. col_sum stays exact (double sums of the float32 z). About ten times the fp32 speed;
// the scatter's relative error grows to ~1e-4 (2^-9 per input, averaged over rows).
void syrk_update_bf16(const float* x, std::size_t n, std::size_t d, const float* shift, double* s, double* col_sum,
                      const InterruptFn& interrupt = {});

}  // namespace simdex
