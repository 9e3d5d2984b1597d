// Binary kernels for NEON (AArch64 baseline, no flag). Also the binary kernels of the neon_dotprod level.
// Hamming: the loops of kernels_b1-inl.hpp; veor, cnt (per-byte popcount), uaddlp + uadalp into 4 uint32 lanes,
// addv. Exact; tail: 64-bit popcounts, then bytes.
// Asymmetric score: 8 float lanes (two q registers) per code byte: the byte duplicated into 4 uint32 lanes, cmtst
// against 1, 2, 4, 8 and 16, 32, 64, 128 gives the lane masks, and keeps the query lanes whose bit is set, fadd.
// Tail: scalar loop. Tolerance vs the scalar oracle: |error| <= ~2 n eps sum |q_d|.
#include <arm_neon.h>

#include "kernels_b1-inl.hpp"
#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

struct HammingNeon {
    using Bytes = uint8x16_t;
    using Acc = uint32x4_t;
    static constexpr std::size_t kBytes = 16;
    static constexpr bool kMaskedTail = false;
    static Bytes load(const std::uint8_t* p) { return vld1q_u8(p); }
    static Acc zero() { return vdupq_n_u32(0); }
    static Acc add(Acc x, Acc y) { return vaddq_u32(x, y); }
    static Acc popcnt_add(Acc acc, Bytes a, Bytes b) { return vpadalq_u16(acc, vpaddlq_u8(vcntq_u8(veorq_u8(a, b)))); }
    static std::uint64_t reduce(Acc v) { return vaddvq_u32(v); }
};

struct DotNeon {
    struct V {
        float32x4_t lo, hi;
    };
    static constexpr std::size_t kLanes = 8;
    static constexpr bool kMaskedTail = false;
    static V zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
    static V load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
    static V add(V x, V y) { return {vaddq_f32(x.lo, y.lo), vaddq_f32(x.hi, y.hi)}; }
    static float reduce(V v) { return vaddvq_f32(vaddq_f32(v.lo, v.hi)); }
    static V masked_add(V acc, const std::uint8_t* bits, V q) {
        static const std::uint32_t kLo[4] = {1, 2, 4, 8}, kHi[4] = {16, 32, 64, 128};
        const uint32x4_t b = vdupq_n_u32(bits[0]);
        const uint32x4_t keep_lo = vtstq_u32(b, vld1q_u32(kLo)), keep_hi = vtstq_u32(b, vld1q_u32(kHi));
        const float32x4_t lo = vreinterpretq_f32_u32(vandq_u32(keep_lo, vreinterpretq_u32_f32(q.lo)));
        const float32x4_t hi = vreinterpretq_f32_u32(vandq_u32(keep_hi, vreinterpretq_u32_f32(q.hi)));
        return {vaddq_f32(acc.lo, lo), vaddq_f32(acc.hi, hi)};
    }
};

// The scan: 8 int16 weights per code byte (the byte duplicated, cmtst against 1, 2, .., 128, and, add), widened by
// sadalp (pairwise add into int32 lanes).
struct SumsNeon {
    using Acc16 = int16x8_t;
    using Acc32 = int32x4_t;
    static constexpr std::size_t kLanes = 8, kRows = 4;
    static Acc16 zero16() { return vdupq_n_s16(0); }
    static Acc32 zero32() { return vdupq_n_s32(0); }
    static Acc16 load(const std::int16_t* w) { return vld1q_s16(w); }
    static Acc16 masked_add(Acc16 acc, const std::uint8_t* bits, Acc16 w) {
        static const std::uint16_t kSelect[8] = {1, 2, 4, 8, 16, 32, 64, 128};
        const uint16x8_t keep = vtstq_u16(vdupq_n_u16(bits[0]), vld1q_u16(kSelect));
        return vaddq_s16(acc, vandq_s16(vreinterpretq_s16_u16(keep), w));
    }
    static Acc32 widen(Acc32 wide, Acc16 acc) { return vpadalq_s16(wide, acc); }
    template <std::size_t count>
    static void reduce_rows(const Acc32* a, std::int32_t* out) {
        for (std::size_t j = 0; j < count; ++j) out[j] = vaddvq_s32(a[j]);
    }
};

}  // namespace

SIMDEX_DEFINE_B1_HAMMING_KERNELS(neon, HammingNeon)
SIMDEX_DEFINE_B1_DOT_KERNELS(neon, DotNeon, SumsNeon)

}  // namespace simdex::kernels
