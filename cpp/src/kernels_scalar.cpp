// Scalar reference kernels: the oracle every SIMD kernel is tested against. Baseline flags, no intrinsics.
// float: accumulation in float, in index order, like the SIMD kernels' per-lane sums.
// int8: products of codes in [-127, 127] summed in int32, exact for n <= kMaxI8Depth (127 * 127 * n < 2^31);
// every SIMD level must return the same integers.
#include <cstring>

#include "simdex/kernels.hpp"

namespace simdex::kernels {

float dot_f32_scalar(const float* a, const float* b, std::size_t n) noexcept {
    float s = 0.0f;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

void dot_rows_f32_scalar(const float* q, const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    for (std::size_t r = 0; r < rows; ++r) out[r] = dot_f32_scalar(q, x + r * dim, dim);
}

void gemm_f32_scalar(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                     bool accumulate) noexcept {
    constexpr std::size_t mr = kScalarMr, nr = kScalarNr;
    float acc[mr][nr] = {};
    for (std::size_t k = 0; k < kc; ++k)
        for (std::size_t i = 0; i < mr; ++i)
            for (std::size_t j = 0; j < nr; ++j) acc[i][j] += a[k * mr + i] * b[k * nr + j];
    for (std::size_t i = 0; i < mr; ++i)
        for (std::size_t j = 0; j < nr; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

std::size_t select_ge_f32_scalar(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept {
    std::size_t count = 0;
    for (std::size_t j = 0; j < n; ++j)
        if (s[j] >= t) out[count++] = static_cast<std::uint32_t>(j);
    return count;
}

void pack_nr_f32_scalar(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    pack_panels(x, rows, dim, kScalarNr, out);
}

void pack_panels(const float* x, std::size_t rows, std::size_t dim, std::size_t width, float* out) noexcept {
    // Writes stay sequential; the reads walk `width` rows side by side, each cache line of them reused for
    // 16 consecutive k, so the whole panel is transposed from L1.
    for (std::size_t p0 = 0; p0 < rows; p0 += width) {
        const std::size_t live = rows - p0 < width ? rows - p0 : width;
        const float* src = x + p0 * dim;
        float* panel = out + p0 * dim;
        for (std::size_t k = 0; k < dim; ++k) {
            float* dst = panel + k * width;
            for (std::size_t j = 0; j < live; ++j) dst[j] = src[j * dim + k];
            for (std::size_t j = live; j < width; ++j) dst[j] = 0.0f;
        }
    }
}

std::int32_t dot_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    std::int32_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s += std::int32_t(a[i]) * std::int32_t(b[i]);
    return s;
}

void dot_rows_i8_scalar(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                        float* out) noexcept {
    for (std::size_t r = 0; r < rows; ++r) out[r] = static_cast<float>(dot_i8_scalar(q, x + r * dim, dim));
}

void gemm_i8_scalar(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t*, float* c,
                    std::size_t ldc, bool accumulate) noexcept {
    constexpr std::size_t mr = kScalarI8Mr, nr = kScalarI8Nr;
    std::int32_t acc[mr][nr] = {};
    for (std::size_t k = 0; k < kc; k += 4, a += 4 * mr, b += 4 * nr)
        for (std::size_t i = 0; i < mr; ++i)
            for (std::size_t j = 0; j < nr; ++j)
                for (std::size_t t = 0; t < 4; ++t)
                    acc[i][j] += std::int32_t(a[4 * i + t]) * std::int32_t(b[4 * j + t]);
    for (std::size_t i = 0; i < mr; ++i)
        for (std::size_t j = 0; j < nr; ++j) {
            const float v = static_cast<float>(acc[i][j]);
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + v : v;
        }
}

void pack_panels_i8(const std::int8_t* x, std::size_t rows, std::size_t dim, std::size_t width, bool flip,
                    std::int8_t* out) noexcept {
    // Moves 4-byte groups (one micro-kernel step of one row); the ragged last group and missing rows are zeros.
    const std::size_t depth = i8_depth(dim), groups = depth / 4, full = dim / 4;
    const std::uint32_t mask = flip ? 0x80808080u : 0u;
    for (std::size_t p0 = 0; p0 < rows; p0 += width) {
        const std::size_t live = rows - p0 < width ? rows - p0 : width;
        std::int8_t* panel = out + p0 * depth;
        for (std::size_t j = 0; j < width; ++j) {
            const std::int8_t* row = x + (p0 + j) * dim;
            for (std::size_t g = 0; g < groups; ++g) {
                std::uint32_t v = 0;
                if (j < live) {
                    if (g < full) {
                        std::memcpy(&v, row + 4 * g, 4);
                    } else {
                        std::uint8_t tail[4] = {0, 0, 0, 0};
                        std::memcpy(tail, row + 4 * g, dim - 4 * g);
                        std::memcpy(&v, tail, 4);
                    }
                }
                v ^= mask;
                std::memcpy(panel + (g * width + j) * 4, &v, 4);
            }
        }
    }
}

}  // namespace simdex::kernels

// Binary codes (kernels.hpp): popcounts of 64-bit words, then bytes; the asymmetric score in index order.
namespace simdex::kernels {

std::uint32_t hamming_b1_scalar(const std::uint8_t* a, const std::uint8_t* b, std::size_t nbytes) noexcept {
    std::uint32_t count = 0;
    std::size_t i = 0;
    for (; i + 8 <= nbytes; i += 8) {
        std::uint64_t x, y;
        std::memcpy(&x, a + i, 8);
        std::memcpy(&y, b + i, 8);
        count += static_cast<std::uint32_t>(__builtin_popcountll(x ^ y));
    }
    for (; i < nbytes; ++i) count += static_cast<std::uint32_t>(__builtin_popcount(unsigned(a[i] ^ b[i])));
    return count;
}

void hamming_rows_b1_scalar(const std::uint8_t* q, const std::uint8_t* x, std::size_t rows, std::size_t nbytes,
                            std::uint32_t* out) noexcept {
    for (std::size_t r = 0; r < rows; ++r) out[r] = hamming_b1_scalar(q, x + r * nbytes, nbytes);
}

void pack_panels_b1(const std::uint8_t* x, std::size_t rows, std::size_t dim, std::uint64_t* out) noexcept {
    const std::size_t nbytes = b1_bytes(dim), words = b1_words(dim), panels = (rows + 7) / 8;
    if (nbytes % 8 == 0) {  // whole words (dim a multiple of 64): copied as they are (little-endian, like the bytes)
        for (std::size_t p = 0; p < panels; ++p)
            for (std::size_t lane = 0; lane < kHammingPanelRows; ++lane) {
                const std::size_t r = p * kHammingPanelRows + lane;
                for (std::size_t w = 0; w < words; ++w) {
                    std::uint64_t v = 0;
                    if (r < rows) std::memcpy(&v, x + r * nbytes + 8 * w, 8);
                    out[(p * words + w) * kHammingPanelRows + lane] = v;
                }
            }
        return;
    }
    for (std::size_t p = 0; p < panels; ++p)
        for (std::size_t lane = 0; lane < kHammingPanelRows; ++lane) {
            const std::size_t r = p * kHammingPanelRows + lane;
            for (std::size_t w = 0; w < words; ++w) {
                std::uint64_t v = 0;
                if (r < rows) {
                    const std::size_t b0 = w * 8, nb = nbytes - b0 < 8 ? nbytes - b0 : 8;
                    for (std::size_t b = 0; b < nb; ++b) v |= std::uint64_t(x[r * nbytes + b0 + b]) << (8 * b);
                }
                out[(p * words + w) * kHammingPanelRows + lane] = v;
            }
        }
}

void hamming_select_b1_scalar(const std::uint64_t* q, std::size_t nq, std::size_t words, const std::uint64_t* panels,
                              std::size_t n_panels, const std::uint32_t* thr, std::uint32_t* const* idx,
                              std::uint16_t* const* dist, std::size_t* counts) noexcept {
    for (std::size_t j = 0; j < nq; ++j) {
        std::size_t c = 0;
        for (std::size_t p = 0; p < n_panels; ++p)
            for (std::size_t lane = 0; lane < kHammingPanelRows; ++lane) {
                std::uint32_t d = 0;
                for (std::size_t w = 0; w < words; ++w) {
                    std::uint64_t v = q[j * words + w] ^ panels[(p * words + w) * kHammingPanelRows + lane];
                    for (; v; v &= v - 1) ++d;
                }
                if (d <= thr[j]) {
                    idx[j][c] = static_cast<std::uint32_t>(p * kHammingPanelRows + lane);
                    dist[j][c++] = static_cast<std::uint16_t>(d);
                }
            }
        counts[j] = c;
    }
}

float dot_b1_scalar(const float* q, const std::uint8_t* code, std::size_t dim) noexcept {
    float s = 0.0f;
    for (std::size_t d = 0; d < dim; ++d) s += (code[d / 8] >> (d % 8)) & 1u ? q[d] : -q[d];
    return s;
}

void sums_rows_b1_scalar(const std::int16_t* w, const std::uint8_t* x, std::size_t rows, std::size_t dim,
                         float* out) noexcept {
    const std::size_t nbytes = b1_bytes(dim);
    for (std::size_t r = 0; r < rows; ++r) {
        const std::uint8_t* code = x + r * nbytes;
        std::int32_t s = 0;
        for (std::size_t d = 0; d < dim; ++d)
            if ((code[d / 8] >> (d % 8)) & 1u) s += w[d];
        out[r] = static_cast<float>(s);
    }
}

}  // namespace simdex::kernels
