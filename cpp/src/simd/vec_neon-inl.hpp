// NEON vocabulary for the kernel templates (AArch64, where Advanced SIMD is baseline: no flag of its own): float and
// int8 / int32 lanes, and the by-element operands of fmla / sdot. Included only by kernels_neon.cpp,
// kernels_i8_neon.cpp and kernels_i8_neon_dotprod.cpp. Anonymous namespace: see simd_common-inl.hpp.
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

namespace simdex::kernels {
namespace {

// Lane L of v, as the by-element operand of fmla / sdot (the lane is an immediate).
template <class V, int L>
struct Lane {
    V v;
};

// Four float lanes; tails through a scalar loop.
struct F32x4 {
    using V = float32x4_t;
    static constexpr std::size_t kLanes = 4;
    static constexpr bool kMaskedTail = false;
    static V zero() { return vdupq_n_f32(0); }
    static V load(const float* p) { return vld1q_f32(p); }
    static void store(float* p, V v) { vst1q_f32(p, v); }
    static V add(V x, V y) { return vaddq_f32(x, y); }
    static V fma(V x, V y, V acc) { return vfmaq_f32(acc, x, y); }
    template <int L>
    static V fma(Lane<V, L> x, V y, V acc) {
        return vfmaq_laneq_f32(acc, y, x.v, L);
    }
    static float reduce(V v) { return vaddvq_f32(v); }
};

// Sixteen int8 lanes in, four int32 accumulator lanes out; tails through a scalar loop.
struct I8x16 {
    using Bytes = int8x16_t;
    using Acc = int32x4_t;
    using Sums4 = int32x4_t;
    using F = F32x4;
    static constexpr std::size_t kBytes = 16;
    static constexpr bool kMaskedTail = false;
    static Bytes load(const std::int8_t* p) { return vld1q_s8(p); }
    static Acc zero() { return vdupq_n_s32(0); }
    static Acc add(Acc x, Acc y) { return vaddq_s32(x, y); }
    static F::V to_f32(Acc v) { return vcvtq_f32_s32(v); }
    static std::int32_t reduce(Acc v) { return vaddvq_s32(v); }
    // The sums of four accumulators, lane j from s_j: one pairwise-add tree.
    static Sums4 reduce4(Acc s0, Acc s1, Acc s2, Acc s3) { return vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3)); }
    static void store4(std::int32_t* out, Sums4 s) { vst1q_s32(out, s); }
    static void keep(Acc&) {}  // GCC keeps the NEON micro-kernel's accumulators in registers without help
};

}  // namespace
}  // namespace simdex::kernels
