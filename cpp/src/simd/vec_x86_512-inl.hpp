// 512-bit x86 vocabulary for the kernel templates: float and int8 / int32 lanes with mask registers for tails. Needs
// -mavx512f -mavx512bw; included only by kernels_avx512.cpp and kernels_i8_avx512_vnni.cpp. Anonymous namespace: see
// simd_common-inl.hpp.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "vec_x86_256-inl.hpp"

namespace simdex::kernels {
namespace {

// Sixteen float lanes; tails through masked loads (masked-off lanes read 0 and touch no memory).
struct F32x16 {
    using V = __m512;
    using Mask = __mmask16;
    static constexpr std::size_t kLanes = 16;
    static constexpr bool kMaskedTail = true;
    static Mask tail_mask(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }  // n <= 16
    static V zero() { return _mm512_setzero_ps(); }
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    static V add(V x, V y) { return _mm512_add_ps(x, y); }
    static const float* load_a(const float* a) { return a; }  // see F32x8
    template <std::size_t I>
    static V broadcast(const float* a) {
        return _mm512_set1_ps(a[I]);
    }
    static float reduce(V v) { return _mm512_reduce_add_ps(v); }
};

// 64 int8 lanes in, sixteen int32 accumulator lanes out; tails through byte-masked loads (vmovdqu8).
struct I8x64 {
    using Bytes = __m512i;
    using Acc = __m512i;
    using Sums4 = __m128i;
    using Mask = __mmask64;
    using F = F32x16;
    static constexpr std::size_t kBytes = 64;
    static constexpr bool kMaskedTail = true;
    static Mask tail_mask(std::size_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }
    static Bytes load(const std::int8_t* p) { return _mm512_loadu_si512(p); }
    static Bytes load(const std::int8_t* p, Mask m) { return _mm512_maskz_loadu_epi8(m, p); }
    static Acc zero() { return _mm512_setzero_si512(); }
    static Acc add(Acc x, Acc y) { return _mm512_add_epi32(x, y); }
    static Acc sub(Acc x, std::int32_t v) { return _mm512_sub_epi32(x, _mm512_set1_epi32(v)); }
    // raw - 128 * bsum
    static Acc unbias(Acc raw, Acc bsum) { return _mm512_sub_epi32(raw, _mm512_slli_epi32(bsum, 7)); }
    static F::V to_f32(Acc v) { return _mm512_cvtepi32_ps(v); }
    static std::int32_t reduce(Acc v) { return _mm512_reduce_add_epi32(v); }
    static Sums4 reduce4(Acc s0, Acc s1, Acc s2, Acc s3) {
        return I8x32::reduce4(fold(s0), fold(s1), fold(s2), fold(s3));
    }
    static Sums4 sub4(Sums4 s, std::int32_t v) { return I8x32::sub4(s, v); }
    static void store4(std::int32_t* out, Sums4 s) { I8x32::store4(out, s); }
    static void store4(float* out, Sums4 s) { I8x32::store4(out, s); }
    static Bytes load_panel(const std::int8_t* b) { return load(b); }  // see I8x32
    static const std::int8_t* load_a(const std::int8_t* a) { return a; }
    template <std::size_t I>
    static Bytes broadcast(const std::int8_t* a) {
        std::int32_t v;
        std::memcpy(&v, a + 4 * I, 4);
        return _mm512_set1_epi32(v);
    }
    static void keep(Acc& v) { __asm__("" : "+v"(v)); }  // see I8x32::keep

  private:
    static __m256i fold(Acc v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }
};

}  // namespace
}  // namespace simdex::kernels
