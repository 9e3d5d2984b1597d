// AVX-512F kernels (x86-64). Flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma, this file only.
// Instructions: vfmadd231ps zmm, vcmpps k, vpcompressd, masked loads for tails (no scalar tail loops).
// Accumulators: float32 lanes; dot products keep 4 independent chains to hide FMA latency.
// Tolerance vs the scalar oracle: summation order differs, |error| <= ~n * eps * sum|a_i b_i|.
#include <immintrin.h>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {
inline __mmask16 tail_mask(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t n) noexcept {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

void dot_rows_f32_avx512(const float* q, const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    // Four rows per pass: each query chunk is loaded once and used four times.
    const std::size_t full = dim & ~std::size_t(15);
    const __mmask16 m = tail_mask(dim - full);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float* x0 = x + r * dim;
        const float* x1 = x0 + dim;
        const float* x2 = x1 + dim;
        const float* x3 = x2 + dim;
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
        for (std::size_t i = 0; i < full; i += 16) {
            const __m512 qv = _mm512_loadu_ps(q + i);
            s0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(x0 + i), s0);
            s1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(x1 + i), s1);
            s2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(x2 + i), s2);
            s3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(x3 + i), s3);
        }
        if (m) {
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + full);
            s0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, x0 + full), s0);
            s1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, x1 + full), s1);
            s2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, x2 + full), s2);
            s3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, x3 + full), s3);
        }
        out[r] = _mm512_reduce_add_ps(s0);
        out[r + 1] = _mm512_reduce_add_ps(s1);
        out[r + 2] = _mm512_reduce_add_ps(s2);
        out[r + 3] = _mm512_reduce_add_ps(s3);
    }
    for (; r < rows; ++r) out[r] = dot_f32_avx512(q, x + r * dim, dim);
}

void gemm_f32_avx512(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                     bool accumulate) noexcept {
    // 12 query rows x 32 database rows: 24 zmm accumulators, 2 loads + 12 broadcasts per k step.
    constexpr std::size_t mr = kAvx512Mr;
    __m512 lo[mr], hi[mr];
#pragma GCC unroll 12
    for (std::size_t i = 0; i < mr; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
    for (std::size_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
        for (std::size_t i = 0; i < mr; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
            hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
        }
        a += mr;
        b += 32;
    }
#pragma GCC unroll 12
    for (std::size_t i = 0; i < mr; ++i) {
        float* row = c + i * ldc;
        if (accumulate) {
            lo[i] = _mm512_add_ps(lo[i], _mm512_loadu_ps(row));
            hi[i] = _mm512_add_ps(hi[i], _mm512_loadu_ps(row + 16));
        }
        _mm512_storeu_ps(row, lo[i]);
        _mm512_storeu_ps(row + 16, hi[i]);
    }
}

std::size_t select_ge_f32_avx512(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept {
    const __m512 tv = _mm512_set1_ps(t);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    std::size_t count = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + j), tv, _CMP_GE_OQ);
        if (m) {
            _mm512_mask_compressstoreu_epi32(out + count, m, idx);
            count += static_cast<std::size_t>(__builtin_popcount(m));
        }
        idx = _mm512_add_epi32(idx, step);
    }
    if (j < n) {
        const __mmask16 live = tail_mask(n - j);
        const __mmask16 m = _mm512_mask_cmp_ps_mask(live, _mm512_maskz_loadu_ps(live, s + j), tv, _CMP_GE_OQ);
        _mm512_mask_compressstoreu_epi32(out + count, m, idx);
        count += static_cast<std::size_t>(__builtin_popcount(m));
    }
    return count;
}

namespace {
// In-register transpose of 16 rows x 16 columns (r[i] holds row i; afterwards r[k] holds column k).
inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {  // 128-bit lanes: rows {i, i+4, i+8, i+12}
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}
}  // namespace

void pack_nr_f32_avx512(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    // Panels of 32 rows, transposed 16 x 16 at a time; missing rows and the k tail read as zeros.
    constexpr std::size_t nr = kAvx512Nr;
    for (std::size_t p0 = 0; p0 < rows; p0 += nr) {
        const std::size_t live = rows - p0 < nr ? rows - p0 : nr;
        float* panel = out + p0 * dim;
        for (std::size_t k0 = 0; k0 < dim; k0 += 16) {
            const std::size_t kn = dim - k0 < 16 ? dim - k0 : 16;
            const __mmask16 km = tail_mask(kn);
            for (std::size_t half = 0; half < 2; ++half) {
                __m512 r[16];
                for (std::size_t i = 0; i < 16; ++i) {
                    const std::size_t row = half * 16 + i;
                    r[i] = row < live ? _mm512_maskz_loadu_ps(km, x + (p0 + row) * dim + k0) : _mm512_setzero_ps();
                }
                transpose16(r);
                for (std::size_t k = 0; k < kn; ++k) _mm512_storeu_ps(panel + (k0 + k) * nr + half * 16, r[k]);
            }
        }
    }
}

}  // namespace simdex::kernels
