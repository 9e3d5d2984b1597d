// Kernel signatures, one set per instruction set. Plain pointers only: no SIMD types cross file boundaries,
// so each ISA lives in its own translation unit compiled with its own flags.
#pragma once
#include <cstddef>
#include <cstdint>

namespace simdex {

// Levels. The *_vnni / *_dotprod levels use the same float kernels as their base level and add integer
// dot-product instructions for int8 (vpdpbusd / sdot).
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3, avx_vnni = 4, avx512_vnni = 5, neon_dotprod = 6 };

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

// int8 kernels. Inputs are codes in [-127, 127], never -128: the AVX2 sign trick (|a| * sign(b, a)) and the
// vpdpbusd bias (a ^ 0x80 read as unsigned) are exact only on that range. Sums are exact in int32 while
// 127 * 127 * n < 2^31, i.e. n <= kMaxI8Depth; the float outputs hold them exactly while |sum| < 2^24
// (always for n <= 1040).
inline constexpr std::size_t kMaxI8Depth = 133144;

// <a, b> over n int8 codes.
using DotI8Fn = std::int32_t (*)(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept;
// out[r] = <q, x[r * dim : (r + 1) * dim]> for r < rows, as float: the single-query int8 scan.
using DotRowsI8Fn = void (*)(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                             float* out) noexcept;
// Register-blocked int8 micro-kernel over panels packed by pack_panels_i8 (kc: depth of this call in bytes, a
// multiple of 4): C[i][j] (+)= sum_k a_i[k] * b_j[k] for i < mr, j < nr, written as float with row stride ldc.
// Kernels whose database panels are packed flipped (b ^ 0x80, the unsigned operand of vpdpbusd) subtract
// a_bias[i] = 128 * sum_k a_i[k] over this call's depth; the others ignore it.
using GemmI8Fn = void (*)(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias,
                          float* c, std::size_t ldc, bool accumulate) noexcept;

#define SIMDEX_DECLARE_I8_KERNELS(isa)                                                                    \
    std::int32_t dot_i8_##isa(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept;      \
    void dot_rows_i8_##isa(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim, \
                           float* out) noexcept;                                                         \
    void gemm_i8_##isa(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias, \
                       float* c, std::size_t ldc, bool accumulate) noexcept;

SIMDEX_DECLARE_I8_KERNELS(scalar)
SIMDEX_DECLARE_I8_KERNELS(avx2)
SIMDEX_DECLARE_I8_KERNELS(avx_vnni)
SIMDEX_DECLARE_I8_KERNELS(avx512_vnni)
SIMDEX_DECLARE_I8_KERNELS(neon)
SIMDEX_DECLARE_I8_KERNELS(neon_dotprod)
#undef SIMDEX_DECLARE_I8_KERNELS

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

// Binary (1-bit) kernels (kernels_b1-inl.hpp). A code holds one bit per dimension: dimension d is bit d % 8 of byte
// d / 8 (least significant first, numpy.packbits(..., bitorder="little")), rows of b1_bytes(dim) bytes, and the bits
// past dim in the last byte are 0. Hamming counts are exact; the asymmetric score of a float query q against a code
// c is sum_d q_d * (c_d ? +1 : -1), computed as 2 * (sum of q over set bits) - sum(q) in float32 (order differs by
// ISA: |error| <= ~2 n eps sum |q_d|).
inline constexpr std::size_t b1_bytes(std::size_t dim) noexcept { return (dim + 7) / 8; }
// Number of differing bits of two codes of nbytes bytes.
using HammingB1Fn = std::uint32_t (*)(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) noexcept;
// out[r] = hamming(q, x[r * nbytes : (r + 1) * nbytes]) for r < rows.
using HammingRowsB1Fn = void (*)(const std::uint8_t* q, const std::uint8_t* x, std::size_t rows, std::size_t nbytes,
                                 std::uint32_t* out) noexcept;
// The asymmetric score of q (dim floats) against one code.
using DotB1Fn = float (*)(const float* q, const std::uint8_t* code, std::size_t dim) noexcept;
// The single-query binary scan: out[r] = the sum of w over the set bits of row r (x + r * b1_bytes(dim)), for
// integer weights with |w_d| <= kB1WeightMax. Exact (int16 lanes, widened to int32 every kB1Chunk dimensions so no
// lane overflows), returned as float: every ISA returns the same value.
inline constexpr int kB1WeightMax = 511;
inline constexpr std::size_t kB1Chunk = 512;  // 512 / 8 lanes * 511 <= 32767
using SumsRowsB1Fn = void (*)(const std::int16_t* w, const std::uint8_t* x, std::size_t rows, std::size_t dim,
                              float* out) noexcept;

// The batch prefilter (Hamming between query sign bits and codes): rows are packed 8 to a panel, [panel][word][8]
// uint64 words (pack_panels_b1), queries are `words` uint64 words each. For each of nq <= kHammingSelectQueries
// queries j, the panel rows r (panel * 8 + lane) with distance <= thr[j] are written to idx[j] / dist[j] (room for
// n_panels * 8 each; padding rows of a last panel count too, the caller drops them) and their number to counts[j].
inline constexpr std::size_t kHammingPanelRows = 8, kHammingSelectQueries = 4;
using HammingSelectB1Fn = void (*)(const std::uint64_t* q, std::size_t nq, std::size_t words,
                                   const std::uint64_t* panels, std::size_t n_panels, const std::uint32_t* thr,
                                   std::uint32_t* const* idx, std::uint16_t* const* dist, std::size_t* counts) noexcept;
// Packs rows [0, rows) of codes (b1_bytes(dim) bytes each) into ceil(rows / 8) panels of words = ceil(dim / 64)
// words per row (zero past dim and for missing rows).
void pack_panels_b1(const std::uint8_t* x, std::size_t rows, std::size_t dim, std::uint64_t* out) noexcept;
inline constexpr std::size_t b1_words(std::size_t dim) noexcept { return (dim + 63) / 64; }
void hamming_select_b1_scalar(const std::uint64_t* q, std::size_t nq, std::size_t words, const std::uint64_t* panels,
                              std::size_t n_panels, const std::uint32_t* thr, std::uint32_t* const* idx,
                              std::uint16_t* const* dist, std::size_t* counts) noexcept;
void hamming_select_b1_avx512_vpopcntdq(const std::uint64_t* q, std::size_t nq, std::size_t words,
                                        const std::uint64_t* panels, std::size_t n_panels, const std::uint32_t* thr,
                                        std::uint32_t* const* idx, std::uint16_t* const* dist,
                                        std::size_t* counts) noexcept;

#define SIMDEX_DECLARE_B1_HAMMING(isa)                                                                       \
    std::uint32_t hamming_b1_##isa(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) noexcept; \
    void hamming_rows_b1_##isa(const std::uint8_t* q, const std::uint8_t* x, std::size_t rows, std::size_t nbytes, \
                               std::uint32_t* out) noexcept;
#define SIMDEX_DECLARE_B1_DOT(isa)                                                                            \
    float dot_b1_##isa(const float* q, const std::uint8_t* code, std::size_t dim) noexcept;                 \
    void sums_rows_b1_##isa(const std::int16_t* w, const std::uint8_t* x, std::size_t rows, std::size_t dim, \
                            float* out) noexcept;
SIMDEX_DECLARE_B1_HAMMING(scalar)
SIMDEX_DECLARE_B1_DOT(scalar)
SIMDEX_DECLARE_B1_HAMMING(avx2)
SIMDEX_DECLARE_B1_DOT(avx2)
SIMDEX_DECLARE_B1_DOT(avx512)
SIMDEX_DECLARE_B1_HAMMING(avx512_vpopcntdq)  // AVX-512 VPOPCNTDQ (Ice Lake, Zen 4 and later)
SIMDEX_DECLARE_B1_HAMMING(neon)
SIMDEX_DECLARE_B1_DOT(neon)
#undef SIMDEX_DECLARE_B1_HAMMING
#undef SIMDEX_DECLARE_B1_DOT

// Micro-kernel geometry per ISA: mr query rows x nr database rows per call.
inline constexpr std::size_t kScalarMr = 4, kScalarNr = 4;
inline constexpr std::size_t kAvx2Mr = 6, kAvx2Nr = 16;
inline constexpr std::size_t kAvx512Mr = 12, kAvx512Nr = 32;
inline constexpr std::size_t kNeonMr = 8, kNeonNr = 8;
// int8 micro-kernels (plain NEON uses the scalar one).
inline constexpr std::size_t kScalarI8Mr = 4, kScalarI8Nr = 4;
inline constexpr std::size_t kAvx2I8Mr = 4, kAvx2I8Nr = 16;
inline constexpr std::size_t kAvxVnniI8Mr = 6, kAvxVnniI8Nr = 16;
inline constexpr std::size_t kAvx512VnniI8Mr = 12, kAvx512VnniI8Nr = 32;
inline constexpr std::size_t kNeonDotI8Mr = 8, kNeonDotI8Nr = 8;

// Packs rows [0, rows) of a row-major (rows x dim) matrix into ceil(rows / width) panels, each laid out
// [k][width] over the full dim, zero-padding missing rows. out holds ceil(rows / width) * width * dim floats.
void pack_panels(const float* x, std::size_t rows, std::size_t dim, std::size_t width, float* out) noexcept;

// Depth of an int8 panel: dim rounded up to a multiple of 4 (the micro-kernels read 4 bytes per row per step).
inline constexpr std::size_t i8_depth(std::size_t dim) noexcept { return (dim + 3) & ~std::size_t(3); }
// Packs rows [0, rows) of a row-major (rows x dim) int8 matrix into ceil(rows / width) panels laid out
// [k / 4][width][4] over i8_depth(dim), zero-padding missing rows and depth; flip stores every byte ^ 0x80.
// out holds ceil(rows / width) * width * i8_depth(dim) bytes.
void pack_panels_i8(const std::int8_t* x, std::size_t rows, std::size_t dim, std::size_t width, bool flip,
                    std::int8_t* out) noexcept;

}  // namespace kernels
}  // namespace simdex
