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
