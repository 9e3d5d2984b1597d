// 256-bit x86 vocabulary for the kernel templates: float lanes (AVX) and int8 / int32 lanes (AVX2). Needs -mavx2;
// included only by kernels_avx2.cpp, kernels_i8_avx2.cpp, kernels_i8_avx_vnni.cpp and (through vec_x86_512-inl.hpp)
// the AVX-512 files. Anonymous namespace: see simd_common-inl.hpp.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace simdex::kernels {
namespace {

// Eight float lanes; tails through a scalar loop (no cheap masked float load that is safe at the end of a buffer
// without vmaskmovps).
struct F32x8 {
    using V = __m256;
    static constexpr std::size_t kLanes = 8;
    static constexpr bool kMaskedTail = false;
    static V zero() { return _mm256_setzero_ps(); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static V add(V x, V y) { return _mm256_add_ps(x, y); }
    // Micro-kernel: A is read from memory, one query row's value broadcast at a time.
    static const float* load_a(const float* a) { return a; }
    template <std::size_t I>
    static V broadcast(const float* a) {
        return _mm256_broadcast_ss(a + I);
    }
    static float reduce(V v) {
        const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
    }
};

// 32 int8 lanes in, eight int32 accumulator lanes out; tails through a scalar loop (no byte-masked loads in AVX2).
struct I8x32 {
    using Bytes = __m256i;
    using Acc = __m256i;
    using Sums4 = __m128i;
    using F = F32x8;
    static constexpr std::size_t kBytes = 32;
    static constexpr bool kMaskedTail = false;
    static Bytes load(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
    static Acc zero() { return _mm256_setzero_si256(); }
    static Acc add(Acc x, Acc y) { return _mm256_add_epi32(x, y); }
    static Acc sub(Acc x, std::int32_t v) { return _mm256_sub_epi32(x, _mm256_set1_epi32(v)); }
    // raw - 128 * bsum
    static Acc unbias(Acc raw, Acc bsum) { return _mm256_sub_epi32(raw, _mm256_slli_epi32(bsum, 7)); }
    static F::V to_f32(Acc v) { return _mm256_cvtepi32_ps(v); }
    static std::int32_t reduce(Acc v) {
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
        return _mm_cvtsi128_si32(s);
    }
    // The sums of four accumulators, lane j from s_j.
    static Sums4 reduce4(Acc s0, Acc s1, Acc s2, Acc s3) {
        const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
        return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    }
    static Sums4 sub4(Sums4 s, std::int32_t v) { return _mm_sub_epi32(s, _mm_set1_epi32(v)); }
    static void store4(std::int32_t* out, Sums4 s) { _mm_storeu_si128(reinterpret_cast<__m128i*>(out), s); }
    static void store4(float* out, Sums4 s) { _mm_storeu_ps(out, _mm_cvtepi32_ps(s)); }
    // Micro-kernel: panels as packed; A read from memory, one query row's 4 bytes in every 32-bit group at a time.
    static Bytes load_panel(const std::int8_t* b) { return load(b); }
    static const std::int8_t* load_a(const std::int8_t* a) { return a; }
    template <std::size_t I>
    static Bytes broadcast(const std::int8_t* a) {
        std::int32_t v;
        std::memcpy(&v, a + 4 * I, 4);
        return _mm256_set1_epi32(v);
    }
    // An empty asm that "changes" an accumulator: without it GCC 12 spills the micro-kernel's accumulators inside
    // the loop when the epilogue computes with them (seen with vpdpbusd); with it the loop keeps every one in a
    // register.
    static void keep(Acc& v) { __asm__("" : "+v"(v)); }
};

}  // namespace
}  // namespace simdex::kernels
