// AVX2 + FMA kernels (x86-64). Flags: -mavx2 -mfma, this file only.
// dot, dot_rows, gemm: the loops of kernels_f32-inl.hpp over the ops below (vfmadd231ps ymm, 4 chains; the 6 x 16
// micro-kernel: 12 ymm accumulators, 2 loads + 6 vbroadcastss per k step). Selection: vcmpps + vmovmskps. Packing:
// 8 x 8 in-register transposes (vunpcklps, vshufps, vperm2f128).
// Tails: a scalar loop (AVX2 has no cheap masked float load that is safe at the end of a buffer without maskload).
// Accumulators: float32 lanes. Tolerance vs scalar: |error| <= ~n * eps * sum |a_i b_i| (summation order differs).
#include <immintrin.h>

#include "kernels_f32-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_256-inl.hpp"

namespace simdex::kernels {
namespace {
struct Avx2 : F32x8 {
    static constexpr std::size_t kMr = kAvx2Mr, kNr = kAvx2Nr;
    static V fma(V x, V y, V acc) { return _mm256_fmadd_ps(x, y, acc); }
};
}  // namespace

SIMDEX_DEFINE_F32_KERNELS(avx2, Avx2)

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
