// int8 kernels for AVX-512 VNNI (x86-64: Ice Lake, Sapphire Rapids, Zen 4 and later).
// Flags: -mavx512f -mavx512bw -mavx512vl -mavx512vnni, this file only.
// Instructions: vpdpbusd zmm (u8 x s8, groups of 4 summed into i32 lanes, no saturation), vpxord, byte-masked
// loads (vmovdqu8 with a k mask) for tails, so there is no scalar tail loop.
// vpdpbusd needs one unsigned operand: the database side is read as (x ^ 0x80) = x + 128 in [1, 255], so the
// raw sum is <x, q> + 128 * sum(q); the bias 128 * sum(q) is computed once per query and subtracted. Masked-off
// bytes load as 0 on both sides, so they add 128 * 0.
// Exactness: lanes wrap modulo 2^32 and the final difference is exact whenever the true sum fits int32:
// n <= kMaxI8Depth (127 * 127 * n < 2^31). Results equal the scalar reference exactly.
#include <immintrin.h>

#include <cstring>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

inline __mmask64 tail_mask(std::size_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }
inline __m512i load64(const std::int8_t* p) { return _mm512_loadu_si512(p); }
inline __m512i load64(const std::int8_t* p, __mmask64 m) { return _mm512_maskz_loadu_epi8(m, p); }

inline __m256i fold(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }

// Sums of four accumulators, one per lane of the result.
inline __m128i hsum4(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(fold(s0), fold(s1)), _mm256_hadd_epi32(fold(s2), fold(s3)));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

inline std::int32_t times128(std::int32_t v) {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(v) << 7);
}

}  // namespace

std::int32_t dot_i8_avx512_vnni(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), ones = _mm512_set1_epi8(1);
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, bsum = s0;
    std::size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        const __m512i b0 = load64(b + i), b1 = load64(b + i + 64);
        s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(load64(a + i), flip), b0);
        s1 = _mm512_dpbusd_epi32(s1, _mm512_xor_si512(load64(a + i + 64), flip), b1);
        bsum = _mm512_dpbusd_epi32(bsum, ones, b0);
        bsum = _mm512_dpbusd_epi32(bsum, ones, b1);
    }
    for (; i < n; i += 64) {
        const __mmask64 m = tail_mask(n - i);
        const __m512i b0 = load64(b + i, m);
        s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(load64(a + i, m), flip), b0);
        bsum = _mm512_dpbusd_epi32(bsum, ones, b0);
    }
    const __m512i raw = _mm512_add_epi32(s0, s1);
    return _mm512_reduce_add_epi32(_mm512_sub_epi32(raw, _mm512_slli_epi32(bsum, 7)));
}

void dot_rows_i8_avx512_vnni(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                             float* out) noexcept {
    // Four rows per pass, the query chunks stay in L1 (a 384-byte query is six zmm loads).
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const std::size_t full = dim & ~std::size_t(63);
    const __mmask64 m = tail_mask(dim - full);
    std::int32_t qsum = 0;
    for (std::size_t i = 0; i < dim; ++i) qsum += q[i];
    const __m128i bias = _mm_set1_epi32(times128(qsum));
    const __m512i qt = load64(q + full, m);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::int8_t* x0 = x + r * dim;
        const std::int8_t* x1 = x0 + dim;
        const std::int8_t* x2 = x1 + dim;
        const std::int8_t* x3 = x2 + dim;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += 64) {
            const __m512i qv = load64(q + i);
            s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(load64(x0 + i), flip), qv);
            s1 = _mm512_dpbusd_epi32(s1, _mm512_xor_si512(load64(x1 + i), flip), qv);
            s2 = _mm512_dpbusd_epi32(s2, _mm512_xor_si512(load64(x2 + i), flip), qv);
            s3 = _mm512_dpbusd_epi32(s3, _mm512_xor_si512(load64(x3 + i), flip), qv);
        }
        if (m) {
            s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(load64(x0 + full, m), flip), qt);
            s1 = _mm512_dpbusd_epi32(s1, _mm512_xor_si512(load64(x1 + full, m), flip), qt);
            s2 = _mm512_dpbusd_epi32(s2, _mm512_xor_si512(load64(x2 + full, m), flip), qt);
            s3 = _mm512_dpbusd_epi32(s3, _mm512_xor_si512(load64(x3 + full, m), flip), qt);
        }
        _mm_storeu_ps(out + r, _mm_cvtepi32_ps(_mm_sub_epi32(hsum4(s0, s1, s2, s3), bias)));
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8_avx512_vnni(x + r * dim, q, dim));
}

void gemm_i8_avx512_vnni(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias,
                         float* c, std::size_t ldc, bool accumulate) noexcept {
    // 12 query rows x 32 database rows: 24 zmm accumulators; per 4-byte step 2 loads of (flipped) B and
    // 12 broadcasts of A feed 24 vpdpbusd. Accumulators are named variables, not an array: GCC keeps an array
    // of vectors updated by vpdpbusd in memory (spills every step).
    static_assert(kAvx512VnniI8Mr == 12 && kAvx512VnniI8Nr == 32, "micro-kernel geometry");
#define SIMDEX_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define SIMDEX_ZERO(i) __m512i lo##i = _mm512_setzero_si512(), hi##i = _mm512_setzero_si512();
#define SIMDEX_STEP(i)                                                                   \
    {                                                                                    \
        std::int32_t ai;                                                                 \
        std::memcpy(&ai, a + 4 * (i), 4);                                                \
        const __m512i av = _mm512_set1_epi32(ai);                                        \
        lo##i = _mm512_dpbusd_epi32(lo##i, b0, av);                                      \
        hi##i = _mm512_dpbusd_epi32(hi##i, b1, av);                                      \
    }
#define SIMDEX_STORE(i)                                                                  \
    {                                                                                    \
        const __m512i bias = _mm512_set1_epi32(a_bias[i]);                               \
        float* row = c + (i) * ldc;                                                      \
        __m512 l = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo##i, bias));                    \
        __m512 h = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi##i, bias));                    \
        if (accumulate) {                                                                \
            l = _mm512_add_ps(l, _mm512_loadu_ps(row));                                  \
            h = _mm512_add_ps(h, _mm512_loadu_ps(row + 16));                             \
        }                                                                                \
        _mm512_storeu_ps(row, l);                                                        \
        _mm512_storeu_ps(row + 16, h);                                                   \
    }
    SIMDEX_ROWS(SIMDEX_ZERO)
    for (std::size_t k = 0; k < kc; k += 4) {
        const __m512i b0 = load64(b), b1 = load64(b + 64);
        SIMDEX_ROWS(SIMDEX_STEP)
        a += 48;
        b += 128;
    }
    // An empty asm that "changes" each accumulator: without it GCC 12 spills them inside the loop when the
    // epilogue computes with them (seen with vpdpbusd); with it the loop keeps every one in a register.
#define SIMDEX_KEEP(i) __asm__("" : "+v"(lo##i), "+v"(hi##i));
    SIMDEX_ROWS(SIMDEX_KEEP)
#undef SIMDEX_KEEP
    SIMDEX_ROWS(SIMDEX_STORE)
#undef SIMDEX_ROWS
#undef SIMDEX_ZERO
#undef SIMDEX_STEP
#undef SIMDEX_STORE
}

}  // namespace simdex::kernels
