// AVX-512F kernels (x86-64). Flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma, this file only.
// dot, dot_rows, gemm: the loops of kernels_f32-inl.hpp over the ops below (vfmadd231ps zmm, 4 chains; the 12 x 32
// micro-kernel: 24 zmm accumulators, 2 loads + 12 broadcasts per k step). Selection: vcmpps k + vpcompressd.
// Packing: 16 x 16 in-register transposes. Tails: masked loads (no scalar tail loops).
// Accumulators: float32 lanes. Tolerance vs the scalar oracle: summation order differs,
// |error| <= ~n * eps * sum |a_i b_i|.
#include <immintrin.h>

#include "kernels_f32-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_512-inl.hpp"

namespace simdex::kernels {
namespace {
struct Avx512 : F32x16 {
    static constexpr std::size_t kMr = kAvx512Mr, kNr = kAvx512Nr;
    static V fma(V x, V y, V acc) { return _mm512_fmadd_ps(x, y, acc); }
};
}  // namespace

SIMDEX_DEFINE_F32_KERNELS(avx512, Avx512)

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
        const __mmask16 live = F32x16::tail_mask(n - j);
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
            const __mmask16 km = F32x16::tail_mask(kn);
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
