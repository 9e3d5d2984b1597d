// int8 kernels for AVX2 (x86-64). Flags: -mavx2, this file only.
// Instructions: vpabsb + vpsignb (the sign trick: a * b == |a| * sign(b, a)), vpmaddubsw (u8 x s8 -> pairs
// summed to i16), vpmaddwd with ones (i16 pairs -> i32), vpaddd.
// Exactness: codes are in [-127, 127], so |a| fits u8 and each i16 pair sum is at most 2 * 127 * 127 = 32258:
// vpmaddubsw never saturates. Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a 16-byte SSE step, then a scalar loop. Results equal the scalar reference exactly.
#include <immintrin.h>

#include <cstring>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

// Eight int32 partial sums of a * b over 32 byte pairs.
inline __m256i dot32(__m256i a, __m256i b, __m256i ones16) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a)), ones16);
}

inline __m128i dot16(__m128i a, __m128i b) {
    return _mm_madd_epi16(_mm_maddubs_epi16(_mm_abs_epi8(a), _mm_sign_epi8(b, a)), _mm_set1_epi16(1));
}

inline std::int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Sums of four accumulators, one per lane of the result.
inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

inline __m256i load32(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load16(const std::int8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

}  // namespace

std::int32_t dot_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm256_add_epi32(s0, dot32(load32(a + i), load32(b + i), ones));
        s1 = _mm256_add_epi32(s1, dot32(load32(a + i + 32), load32(b + i + 32), ones));
    }
    if (i + 32 <= n) {
        s0 = _mm256_add_epi32(s0, dot32(load32(a + i), load32(b + i), ones));
        i += 32;
    }
    if (i + 16 <= n) {
        s1 = _mm256_add_epi32(s1, _mm256_castsi128_si256(dot16(load16(a + i), load16(b + i))));
        i += 16;
    }
    std::int32_t s = hsum(_mm256_add_epi32(s0, s1));
    for (; i < n; ++i) s += std::int32_t(a[i]) * std::int32_t(b[i]);
    return s;
}

void dot_rows_i8_avx2(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                      float* out) noexcept {
    // Four rows per pass: each query chunk is loaded once and used four times.
    const __m256i ones = _mm256_set1_epi16(1);
    const std::size_t full = dim & ~std::size_t(31);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::int8_t* x0 = x + r * dim;
        const std::int8_t* x1 = x0 + dim;
        const std::int8_t* x2 = x1 + dim;
        const std::int8_t* x3 = x2 + dim;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += 32) {
            const __m256i qv = load32(q + i);
            // sign trick with the row as the |.| operand: |x| * sign(q, x)
            s0 = _mm256_add_epi32(s0, dot32(load32(x0 + i), qv, ones));
            s1 = _mm256_add_epi32(s1, dot32(load32(x1 + i), qv, ones));
            s2 = _mm256_add_epi32(s2, dot32(load32(x2 + i), qv, ones));
            s3 = _mm256_add_epi32(s3, dot32(load32(x3 + i), qv, ones));
        }
        alignas(16) std::int32_t t[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(t), hsum4(s0, s1, s2, s3));
        for (std::size_t i = full; i < dim; ++i) {
            const std::int32_t qi = q[i];
            t[0] += qi * x0[i];
            t[1] += qi * x1[i];
            t[2] += qi * x2[i];
            t[3] += qi * x3[i];
        }
        for (int j = 0; j < 4; ++j) out[r + j] = static_cast<float>(t[j]);
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8_avx2(q, x + r * dim, dim));
}

void gemm_i8_avx2(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t*, float* c,
                  std::size_t ldc, bool accumulate) noexcept {
    // 4 query rows x 16 database rows: 8 ymm accumulators. Per 4-byte step: 2 loads of B (8 rows x 4 bytes
    // each), |B| once, then per query row one broadcast, and per vector vpsignb, vpmaddubsw, vpmaddwd, vpaddd.
    // Named accumulators, not an array, so GCC keeps them in registers.
    static_assert(kAvx2I8Mr == 4 && kAvx2I8Nr == 16, "micro-kernel geometry");
    const __m256i ones = _mm256_set1_epi16(1);
#define SIMDEX_ROWS(X) X(0) X(1) X(2) X(3)
#define SIMDEX_ZERO(i) __m256i lo##i = _mm256_setzero_si256(), hi##i = _mm256_setzero_si256();
#define SIMDEX_STEP(i)                                                                                 \
    {                                                                                                  \
        std::int32_t ai;                                                                               \
        std::memcpy(&ai, a + 4 * (i), 4);                                                              \
        const __m256i av = _mm256_set1_epi32(ai);                                                      \
        const __m256i p0 = _mm256_maddubs_epi16(abs0, _mm256_sign_epi8(av, b0));                       \
        const __m256i p1 = _mm256_maddubs_epi16(abs1, _mm256_sign_epi8(av, b1));                       \
        lo##i = _mm256_add_epi32(lo##i, _mm256_madd_epi16(p0, ones));                                  \
        hi##i = _mm256_add_epi32(hi##i, _mm256_madd_epi16(p1, ones));                                  \
    }
#define SIMDEX_STORE(i)                                                                  \
    {                                                                                    \
        float* row = c + (i) * ldc;                                                      \
        __m256 l = _mm256_cvtepi32_ps(lo##i), h = _mm256_cvtepi32_ps(hi##i);             \
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
        const __m256i abs0 = _mm256_abs_epi8(b0), abs1 = _mm256_abs_epi8(b1);
        SIMDEX_ROWS(SIMDEX_STEP)
        a += 16;
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
