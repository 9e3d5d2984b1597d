// int8 kernels for plain NEON (AArch64 baseline, no extra flag): for cores without the dot-product extension.
// Instructions: smull / smull2 (s8 x s8 -> s16, exact: |product| <= 127 * 127 = 16129), sadalp (pairwise
// add-accumulate s16 -> s32). Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a scalar loop. The batch micro-kernel is the scalar one (gemm_i8_scalar geometry): cores without
// sdot are the low end, and the scan there is dominated by the single-query path. Results equal the scalar
// reference exactly.
#include <arm_neon.h>

#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

inline int32x4_t mac16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

}  // namespace

std::int32_t dot_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = mac16(s0, vld1q_s8(a + i), vld1q_s8(b + i));
        s1 = mac16(s1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
    }
    for (; i + 16 <= n; i += 16) s0 = mac16(s0, vld1q_s8(a + i), vld1q_s8(b + i));
    std::int32_t s = vaddvq_s32(vaddq_s32(s0, s1));
    for (; i < n; ++i) s += std::int32_t(a[i]) * std::int32_t(b[i]);
    return s;
}

void dot_rows_i8_neon(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
                      float* out) noexcept {
    const std::size_t full = dim & ~std::size_t(15);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::int8_t* x0 = x + r * dim;
        const std::int8_t* x1 = x0 + dim;
        const std::int8_t* x2 = x1 + dim;
        const std::int8_t* x3 = x2 + dim;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += 16) {
            const int8x16_t qv = vld1q_s8(q + i);
            s0 = mac16(s0, vld1q_s8(x0 + i), qv);
            s1 = mac16(s1, vld1q_s8(x1 + i), qv);
            s2 = mac16(s2, vld1q_s8(x2 + i), qv);
            s3 = mac16(s3, vld1q_s8(x3 + i), qv);
        }
        std::int32_t t[4] = {vaddvq_s32(s0), vaddvq_s32(s1), vaddvq_s32(s2), vaddvq_s32(s3)};
        for (std::size_t i = full; i < dim; ++i) {
            const std::int32_t qi = q[i];
            t[0] += qi * x0[i];
            t[1] += qi * x1[i];
            t[2] += qi * x2[i];
            t[3] += qi * x3[i];
        }
        for (int j = 0; j < 4; ++j) out[r + j] = static_cast<float>(t[j]);
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8_neon(q, x + r * dim, dim));
}

void gemm_i8_neon(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias, float* c,
                  std::size_t ldc, bool accumulate) noexcept {
    gemm_i8_scalar(kc, a, b, a_bias, c, ldc, accumulate);
}

}  // namespace simdex::kernels
