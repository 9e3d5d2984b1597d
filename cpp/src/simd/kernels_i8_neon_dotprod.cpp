// int8 kernels for NEON with the dot-product extension (ARMv8.2+ FEAT_DotProd: Apple M1+, Graviton 2+,
// Cortex-A55/A76 and later). Flags: -march=armv8.2-a+dotprod, this file only; dispatched on HWCAP_ASIMDDP
// (Linux) or hw.optional.arm.FEAT_DotProd (macOS).
// dot, dot_rows, gemm: the loops of kernels_i8-inl.hpp over the ops below (4 chains in dot; the 8 x 8
// micro-kernel: 16 accumulators, per 4-byte step B two vectors (4 rows x 4 bytes each), A two vectors (4 query rows
// each), sdot by element multiplying B by one query row's 4 bytes).
// Instructions: sdot (s8 x s8, groups of 4 summed into s32 lanes), its by-element form in the micro-kernel.
// Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31). Both operands are signed, so
// there is no bias. Tails: a scalar loop. Results equal the scalar reference exactly.
#include <arm_neon.h>

#include "kernels_i8-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_neon-inl.hpp"

namespace simdex::kernels {
namespace {

struct NeonDotprod : I8x16 {
    static constexpr bool kBiased = false;
    static constexpr std::size_t kDotChains = 4, kMr = kNeonDotI8Mr, kNr = kNeonDotI8Nr;
    static_assert(kMr == 8, "load_a reads two vectors of A");
    static Bytes prepare(Bytes x) { return x; }
    static Acc mac(Acc acc, Bytes x, Bytes q) { return vdotq_s32(acc, x, q); }
    template <int L>
    static Acc mac(Acc acc, Bytes x, Lane<Bytes, L> q) {
        return vdotq_laneq_s32(acc, x, q.v, L);
    }
    static Bytes load_panel(const std::int8_t* b) { return load(b); }
    struct Rows {
        Bytes lo, hi;  // query rows 0-3 and 4-7 of one 4-byte step
    };
    static Rows load_a(const std::int8_t* a) { return {vld1q_s8(a), vld1q_s8(a + 16)}; }
    template <std::size_t I>
    static Lane<Bytes, I % 4> broadcast(const Rows& a) {
        return {I < 4 ? a.lo : a.hi};
    }
};

}  // namespace

SIMDEX_DEFINE_I8_SCAN_KERNELS(neon_dotprod, NeonDotprod)
SIMDEX_DEFINE_I8_GEMM_KERNEL(neon_dotprod, NeonDotprod)

}  // namespace simdex::kernels
