// int8 kernels for AVX-VNNI (x86-64, 256-bit VEX vpdpbusd: Alder Lake, Sapphire Rapids, Zen 5).
// Flags: -mavx2 -mavxvnni, this file only.
// Instructions: vpdpbusd ymm (u8 x s8, groups of 4 summed into i32 lanes, no saturation), vpxor.
// vpdpbusd needs one unsigned operand: the database side is read as (x ^ 0x80) = x + 128 in [1, 255], so the
// raw sum is <x, q> + 128 * sum(q); the bias 128 * sum(q) is computed once per query and subtracted.
// Exactness: the raw sum may exceed int32 for long vectors, but the lanes wrap modulo 2^32 and the final
// difference is exact whenever the true sum fits int32: n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a scalar loop (no byte-masked loads in AVX2). Results equal the scalar reference exactly.
#include <immintrin.h>

#include <cstring>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

inline __m256i load32(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

inline std::int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

// Unsigned arithmetic: the wrap-around the bias relies on is defined behaviour there.
inline std::int32_t unbias(std::int32_t raw, std::int32_t bias) {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(raw) - static_cast<std::uint32_t>(bias));
}

}  // namespace

std::int32_t dot_i8_avx_vnni(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi8(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, bsum = s0;
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m256i b0 = load32(b + i), b1 = load32(b + i + 32);
        s0 = _mm256_dpbusd_avx_epi32(s0, _mm256_xor_si256(load32(a + i), flip), b0);
        s1 = _mm256_dpbusd_avx_epi32(s1, _mm256_xor_si256(load32(a + i + 32), flip), b1);
        bsum = _mm256_dpbusd_avx_epi32(bsum, ones, b0);
        bsum = _mm256_dpbusd_avx_epi32(bsum, ones, b1);
    }
    for (; i + 32 <= n; i += 32) {
        const __m256i b0 = load32(b + i);
        s0 = _mm256_dpbusd_avx_epi32(s0, _mm256_xor_si256(load32(a + i), flip), b0);
        bsum = _mm256_dpbusd_avx_epi32(bsum, ones, b0);
    }
    const std::int32_t raw = hsum(_mm256_add_epi32(s0, s1));
    std::int32_t s = unbias(raw, static_cast<std::int32_t>(static_cast<std::uint32_t>(hsum(bsum)) << 7));
    for (; i < n; ++i) s += std::int32_t(a[i]) * std::int32_t(b[i]);
    return s;
}

void dot_rows_i8_avx_vnni(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                          float* out) noexcept {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    const std::size_t full = dim & ~std::size_t(31);
    std::int32_t qsum = 0;
    for (std::size_t i = 0; i < full; ++i) qsum += q[i];
    const __m128i bias = _mm_set1_epi32(static_cast<std::int32_t>(static_cast<std::uint32_t>(qsum) << 7));
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::int8_t* x0 = x + r * dim;
        const std::int8_t* x1 = x0 + dim;
        const std::int8_t* x2 = x1 + dim;
        const std::int8_t* x3 = x2 + dim;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += 32) {
            const __m256i qv = load32(q + i);
            s0 = _mm256_dpbusd_avx_epi32(s0, _mm256_xor_si256(load32(x0 + i), flip), qv);
            s1 = _mm256_dpbusd_avx_epi32(s1, _mm256_xor_si256(load32(x1 + i), flip), qv);
            s2 = _mm256_dpbusd_avx_epi32(s2, _mm256_xor_si256(load32(x2 + i), flip), qv);
            s3 = _mm256_dpbusd_avx_epi32(s3, _mm256_xor_si256(load32(x3 + i), flip), qv);
        }
        alignas(16) std::int32_t t[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(t), _mm_sub_epi32(hsum4(s0, s1, s2, s3), bias));
        for (std::size_t i = full; i < dim; ++i) {
            const std::int32_t qi = q[i];
            t[0] += qi * x0[i];
            t[1] += qi * x1[i];
            t[2] += qi * x2[i];
            t[3] += qi * x3[i];
        }
        for (int j = 0; j < 4; ++j) out[r + j] = static_cast<float>(t[j]);
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8_avx_vnni(x + r * dim, q, dim));
}

void gemm_i8_avx_vnni(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias,
                      float* c, std::size_t ldc, bool accumulate) noexcept {
    // 6 query rows x 16 database rows: 12 ymm accumulators; per 4-byte step 2 loads of (flipped) B and
    // 6 broadcasts of A feed 12 vpdpbusd. Named accumulators, not an array, so GCC keeps them in registers.
    static_assert(kAvxVnniI8Mr == 6 && kAvxVnniI8Nr == 16, "micro-kernel geometry");
#define SIMDEX_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define SIMDEX_ZERO(i) __m256i lo##i = _mm256_setzero_si256(), hi##i = _mm256_setzero_si256();
#define SIMDEX_STEP(i)                                                                   \
    {                                                                                    \
        std::int32_t ai;                                                                 \
        std::memcpy(&ai, a + 4 * (i), 4);                                                \
        const __m256i av = _mm256_set1_epi32(ai);                                        \
        lo##i = _mm256_dpbusd_avx_epi32(lo##i, b0, av);                                  \
        hi##i = _mm256_dpbusd_avx_epi32(hi##i, b1, av);                                  \
    }
#define SIMDEX_STORE(i)                                                                  \
    {                                                                                    \
        const __m256i bias = _mm256_set1_epi32(a_bias[i]);                               \
        float* row = c + (i) * ldc;                                                      \
        __m256 l = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo##i, bias));                    \
        __m256 h = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi##i, bias));                    \
        if (accumulate) {                                                                \
            l = _mm256_add_ps(l, _mm256_loadu_ps(row));                                  \
            h = _mm256_add_ps(h, _mm256_loadu_ps(row + 8));                              \
        }                                                                                \
        _mm256_storeu_ps(row, l);                                                        \
        _mm256_storeu_ps(row + 8, h);                                                    \
    }
    SIMDEX_ROWS(SIMDEX_ZERO)
    for (std::size_t k = 0; k < kc; k += 4) {
        const __m256i b0 = load32(b), b1 = load32(b + 32);
        SIMDEX_ROWS(SIMDEX_STEP)
        a += 24;
        b += 64;
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
