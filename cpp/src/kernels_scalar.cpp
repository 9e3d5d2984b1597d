// Scalar reference kernels: the oracle every SIMD kernel is tested against. Baseline flags, no intrinsics.
// Accumulation is in float, in index order, like the SIMD kernels' per-lane sums.
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

}  // namespace simdex::kernels
