// AVX2 + FMA kernels (x86-64). Flags: -mavx2 -mfma, this file only.
// Instructions: vfmadd231ps ymm, vcmpps + vmovmskps for selection; tails handled with a scalar loop
// (AVX2 has no cheap masked float load that is safe at the end of a buffer without maskload).
// Accumulators: float32 lanes, 4 chains. Tolerance vs scalar: as for AVX-512.
#include <immintrin.h>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {
inline float hsum(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t n) noexcept {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

void dot_rows_f32_avx2(const float* q, const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    const std::size_t full = dim & ~std::size_t(7);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float* x0 = x + r * dim;
        const float* x1 = x0 + dim;
        const float* x2 = x1 + dim;
        const float* x3 = x2 + dim;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (std::size_t i = 0; i < full; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            s0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(x0 + i), s0);
            s1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(x1 + i), s1);
            s2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(x2 + i), s2);
            s3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(x3 + i), s3);
        }
        float t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
        for (std::size_t i = full; i < dim; ++i) {
            t0 += q[i] * x0[i];
            t1 += q[i] * x1[i];
            t2 += q[i] * x2[i];
            t3 += q[i] * x3[i];
        }
        out[r] = t0;
        out[r + 1] = t1;
        out[r + 2] = t2;
        out[r + 3] = t3;
    }
    for (; r < rows; ++r) out[r] = dot_f32_avx2(q, x + r * dim, dim);
}

void gemm_f32_avx2(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                   bool accumulate) noexcept {
    // 6 query rows x 16 database rows: 12 ymm accumulators, 2 loads + 6 broadcasts per k step.
    constexpr std::size_t mr = kAvx2Mr;
    __m256 lo[mr], hi[mr];
#pragma GCC unroll 6
    for (std::size_t i = 0; i < mr; ++i) lo[i] = hi[i] = _mm256_setzero_ps();
    for (std::size_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (std::size_t i = 0; i < mr; ++i) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            lo[i] = _mm256_fmadd_ps(ai, b0, lo[i]);
            hi[i] = _mm256_fmadd_ps(ai, b1, hi[i]);
        }
        a += mr;
        b += 16;
    }
#pragma GCC unroll 6
    for (std::size_t i = 0; i < mr; ++i) {
        float* row = c + i * ldc;
        if (accumulate) {
            lo[i] = _mm256_add_ps(lo[i], _mm256_loadu_ps(row));
            hi[i] = _mm256_add_ps(hi[i], _mm256_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, lo[i]);
        _mm256_storeu_ps(row + 8, hi[i]);
    }
}

std::size_t select_ge_f32_avx2(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept {
    const __m256 tv = _mm256_set1_ps(t);
    std::size_t count = 0, j = 0;
    for (; j + 8 <= n; j += 8) {
        unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j), tv, _CMP_GE_OQ)));
        while (m) {
            out[count++] = static_cast<std::uint32_t>(j + static_cast<std::size_t>(__builtin_ctz(m)));
            m &= m - 1;
        }
    }
    for (; j < n; ++j)
        if (s[j] >= t) out[count++] = static_cast<std::uint32_t>(j);
    return count;
}

namespace {
// In-register transpose of 8 rows x 8 columns.
inline void transpose8(__m256 r[8]) {
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; ++i) r[i] = t[i];
}
}  // namespace

void pack_nr_f32_avx2(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    // Panels of 16 rows, transposed 8 x 8 at a time; the k tail (dim % 8) and missing rows go through the
    // scalar packer's rules: zeros for missing rows.
    constexpr std::size_t nr = kAvx2Nr;
    const std::size_t full = dim & ~std::size_t(7);
    for (std::size_t p0 = 0; p0 < rows; p0 += nr) {
        const std::size_t live = rows - p0 < nr ? rows - p0 : nr;
        float* panel = out + p0 * dim;
        for (std::size_t k0 = 0; k0 < full; k0 += 8) {
            for (std::size_t half = 0; half < 2; ++half) {
                __m256 r[8];
                for (std::size_t i = 0; i < 8; ++i) {
                    const std::size_t row = half * 8 + i;
                    r[i] = row < live ? _mm256_loadu_ps(x + (p0 + row) * dim + k0) : _mm256_setzero_ps();
                }
                transpose8(r);
                for (std::size_t k = 0; k < 8; ++k) _mm256_storeu_ps(panel + (k0 + k) * nr + half * 8, r[k]);
            }
        }
        for (std::size_t k = full; k < dim; ++k)
            for (std::size_t j = 0; j < nr; ++j) panel[k * nr + j] = j < live ? x[(p0 + j) * dim + k] : 0.0f;
    }
}

}  // namespace simdex::kernels
