// int8 kernels for plain NEON (AArch64 baseline, no extra flag): for cores without the dot-product extension.
// dot, dot_rows: the loops of kernels_i8-inl.hpp over the ops below (2 chains in dot).
// Instructions: smull / smull2 (s8 x s8 -> s16, exact: |product| <= 127 * 127 = 16129), sadalp (pairwise
// add-accumulate s16 -> s32). Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a scalar loop. The batch micro-kernel is the scalar one (gemm_i8_scalar geometry): cores without
// sdot are the low end, and the scan there is dominated by the single-query path. Results equal the scalar
// reference exactly.
#include <arm_neon.h>

#include "kernels_i8-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_neon-inl.hpp"

namespace simdex::kernels {
namespace {

struct NeonI8 : I8x16 {
    static constexpr bool kBiased = false;
    static constexpr std::size_t kDotChains = 2;
    static Bytes prepare(Bytes x) { return x; }
    static Acc mac(Acc acc, Bytes x, Bytes q) {
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(q)));
        return vpadalq_s16(acc, vmull_high_s8(x, q));
    }
};

}  // namespace

SIMDEX_DEFINE_I8_SCAN_KERNELS(neon, NeonI8)

void gemm_i8_neon(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias, float* c,
                  std::size_t ldc, bool accumulate) noexcept {
    gemm_i8_scalar(kc, a, b, a_bias, c, ldc, accumulate);
}

}  // namespace simdex::kernels
