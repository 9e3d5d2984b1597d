// AMX-BF16 kernels (x86-64 Linux). Flags: -mamx-tile -mamx-bf16 -mavx512f -mavx512bw, this file only; called only
// after amx_bf16_usable() (CPUID, XCR0 tile state, arch_prctl permission, active level avx512: every AMX CPU has
// AVX-512F/BW, which the packing uses).
// Instructions: ldtilecfg, tileloadd, tdpbf16ps, tilestored, tilerelease. Eight tiles: four 16 x 16 fp32
// accumulators (a 32 x 32 block of C), two A tiles (16 rows x 32 bf16) and two B tiles (16 pair-rows x 16 columns
// x 2 bf16, the VNNI layout). Accumulator: fp32; each bf16 x bf16 product is exact in fp32, sums round in fp32.
// Tolerance: inputs were rounded to bf16 (8-bit mantissa, relative error <= 2^-9) by the caller's packing; callers
// keep sums short (one chunk of rows) and add them into double.
#include <immintrin.h>

#include <cstring>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

struct TileConfig {
    std::uint8_t palette;
    std::uint8_t start_row;
    std::uint8_t reserved[14];
    std::uint16_t colsb[16];
    std::uint8_t rows[16];
};

}  // namespace

void syrk_block_bf16_amx(const std::uint32_t* a, const std::uint32_t* b, std::size_t k_pairs, float* c,
                         std::size_t ldc, bool accumulate) noexcept {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    const std::size_t sc = ldc * 4;
    if (accumulate) {
        _tile_loadd(0, c, sc);
        _tile_loadd(1, c + 16, sc);
        _tile_loadd(2, c + 16 * ldc, sc);
        _tile_loadd(3, c + 16 * ldc + 16, sc);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (std::size_t p = 0; p < k_pairs; p += 16, a += 32 * 16, b += 16 * 32) {
        _tile_loadd(4, a, 64);            // block rows 0..15: 16 pairs (32 bf16) each
        _tile_loadd(5, a + 16 * 16, 64);  // block rows 16..31
        _tile_loadd(6, b, 128);           // pair rows p..p+15, columns 0..15
        _tile_loadd(7, b + 16, 128);      // columns 16..31
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, sc);
    _tile_stored(1, c + 16, sc);
    _tile_stored(2, c + 16 * ldc, sc);
    _tile_stored(3, c + 16 * ldc + 16, sc);
    _tile_release();
}

namespace {

// bf16 bits (round to nearest even) of 16 floats, in the low halves of 32-bit lanes.
inline __m512i bf16_lanes(__m512 v) {
    const __m512i b = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    return _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
}

}  // namespace

void pack_pair_bf16_amx(const float* lo, const float* hi, const float* shift, std::size_t d, std::uint32_t* b,
                        std::size_t b_stride, std::uint32_t* a, std::size_t a_stride, double* sum) noexcept {
    // a's words for 16 consecutive columns are 16 words apart: one scatter per 16 columns.
    const __m512i a_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(16));
    const std::size_t padded = (d + 31) / 32 * 32;
    for (std::size_t j = 0; j < padded; j += 16) {
        const std::size_t jb = j / 32, jj = j % 32;
        std::uint32_t* bo = b + jb * b_stride + jj;
        std::uint32_t* ao = a + jb * a_stride + jj * 16;
        if (j >= d) {
            _mm512_storeu_si512(bo, _mm512_setzero_si512());
            _mm512_i32scatter_epi32(ao, a_index, _mm512_setzero_si512(), 4);
            continue;
        }
        const __mmask16 m = d - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (d - j)) - 1u);
        const __m512 sh = _mm512_maskz_loadu_ps(m, shift + j);
        const __m512 zl = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, lo + j), sh);
        const __m512 zh = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, hi + j), sh);
        const __m512d l0 = _mm512_cvtps_pd(_mm512_castps512_ps256(zl));
        const __m512d l1 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(zl), 1)));
        const __m512d h0 = _mm512_cvtps_pd(_mm512_castps512_ps256(zh));
        const __m512d h1 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(zh), 1)));
        const __mmask8 m0 = static_cast<__mmask8>(m), m1 = static_cast<__mmask8>(m >> 8);
        _mm512_mask_storeu_pd(sum + j, m0, _mm512_add_pd(_mm512_maskz_loadu_pd(m0, sum + j), _mm512_add_pd(l0, h0)));
        _mm512_mask_storeu_pd(sum + j + 8, m1,
                              _mm512_add_pd(_mm512_maskz_loadu_pd(m1, sum + j + 8), _mm512_add_pd(l1, h1)));
        const __m512i word = _mm512_or_si512(bf16_lanes(zl), _mm512_slli_epi32(bf16_lanes(zh), 16));
        _mm512_storeu_si512(bo, word);
        _mm512_i32scatter_epi32(ao, a_index, word, 4);
    }
}

}  // namespace simdex::kernels
