// Kernel signatures, one set per instruction set. Plain pointers only: no SIMD types cross file boundaries,
// so each ISA lives in its own translation unit compiled with its own flags.
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

namespace kernels {

// <a, b> over n floats.
using DotF32Fn = float (*)(const float* a, const float* b, std::size_t n) noexcept;
// out[r] = <q, x[r * dim : (r + 1) * dim]> for r < rows: the single-query scan, memory bound.
using DotRowsF32Fn = void (*)(const float* q, const float* x, std::size_t rows, std::size_t dim,
                              float* out) noexcept;
// Register-blocked micro-kernel: C[i][j] (+)= sum_k a[k * mr + i] * b[k * nr + j] for i < mr, j < nr,
// with a and b packed panels (see pack_panels) and C row-major with row stride ldc.
using GemmF32Fn = void (*)(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                           bool accumulate) noexcept;
// pack_panels with width = the ISA's gemm nr (the database side of the micro-kernel), SIMD-transposed.
using PackF32Fn = void (*)(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept;
// Writes the indices j < n with s[j] >= t to out (ascending) and returns how many there were.
using SelectGeF32Fn = std::size_t (*)(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept;

#define SIMDEX_DECLARE_KERNELS(isa)                                                                       \
    float dot_f32_##isa(const float* a, const float* b, std::size_t n) noexcept;                        \
    void dot_rows_f32_##isa(const float* q, const float* x, std::size_t rows, std::size_t dim,          \
                            float* out) noexcept;                                                        \
    void gemm_f32_##isa(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,       \
                        bool accumulate) noexcept;                                                       \
    std::size_t select_ge_f32_##isa(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept;  \
    void pack_nr_f32_##isa(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept;

SIMDEX_DECLARE_KERNELS(scalar)
SIMDEX_DECLARE_KERNELS(avx2)
SIMDEX_DECLARE_KERNELS(avx512)
SIMDEX_DECLARE_KERNELS(neon)
#undef SIMDEX_DECLARE_KERNELS

// AMX-BF16 (x86-64 Linux, kernels_amx.cpp): c (32 x 32 floats, row stride ldc) (+)= A^T B over k_pairs (a multiple
// of 16) pairs of rows. Each 32-bit word holds two bf16 values, the low half from row 2p and the high half from
// row 2p + 1 of the same column. b: k_pairs rows of 32 words (columns), contiguous. a: the same kind of words for
// the 32 block rows, laid out [p / 16][32 columns][16 pairs], contiguous. Products are exact in fp32, sums are
// fp32. Call only when amx_bf16_usable() is true.
void syrk_block_bf16_amx(const std::uint32_t* a, const std::uint32_t* b, std::size_t k_pairs, float* c,
                         std::size_t ldc, bool accumulate) noexcept;
// Packs rows lo and hi (d floats each, minus shift; masked-off lanes read nothing) as the words of one pair row:
// column j = 32 jb + jj goes to b[jb * b_stride + jj] and a[jb * a_stride + 16 jj]; columns d .. 32 ceil(d / 32)
// get 0. Adds z_lo[j] + z_hi[j] to sum[j] in double (exact sums: the mean is not rounded to bf16).
void pack_pair_bf16_amx(const float* lo, const float* hi, const float* shift, std::size_t d, std::uint32_t* b,
                        std::size_t b_stride, std::uint32_t* a, std::size_t a_stride, double* sum) noexcept;

// Micro-kernel geometry per ISA: mr query rows x nr database rows per call.
inline constexpr std::size_t kScalarMr = 4, kScalarNr = 4;
inline constexpr std::size_t kAvx2Mr = 6, kAvx2Nr = 16;
inline constexpr std::size_t kAvx512Mr = 12, kAvx512Nr = 32;
inline constexpr std::size_t kNeonMr = 8, kNeonNr = 8;

// Packs rows [0, rows) of a row-major (rows x dim) matrix into ceil(rows / width) panels, each laid out
// [k][width] over the full dim, zero-padding missing rows. out holds ceil(rows / width) * width * dim floats.
void pack_panels(const float* x, std::size_t rows, std::size_t dim, std::size_t width, float* out) noexcept;

}  // namespace kernels
}  // namespace simdex
