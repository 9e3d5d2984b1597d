// int8 kernels for NEON with the dot-product extension (ARMv8.2+ FEAT_DotProd: Apple M1+, Graviton 2+,
// Cortex-A55/A76 and later). Flags: -march=armv8.2-a+dotprod, this file only; dispatched on HWCAP_ASIMDDP
// (Linux) or hw.optional.arm.FEAT_DotProd (macOS).
// Instructions: sdot (s8 x s8, groups of 4 summed into s32 lanes), its by-element form in the micro-kernel.
// Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31). Both operands are signed, so
// there is no bias. Tails: a scalar loop. Results equal the scalar reference exactly.
#include <arm_neon.h>

#include "simdex/kernels.hpp"

namespace simdex::kernels {

std::int32_t dot_i8_neon_dotprod(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = vdotq_s32(s0, vld1q_s8(a + i), vld1q_s8(b + i));
        s1 = vdotq_s32(s1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
        s2 = vdotq_s32(s2, vld1q_s8(a + i + 32), vld1q_s8(b + i + 32));
        s3 = vdotq_s32(s3, vld1q_s8(a + i + 48), vld1q_s8(b + i + 48));
    }
    for (; i + 16 <= n; i += 16) s0 = vdotq_s32(s0, vld1q_s8(a + i), vld1q_s8(b + i));
    std::int32_t s = vaddvq_s32(vaddq_s32(vaddq_s32(s0, s1), vaddq_s32(s2, s3)));
    for (; i < n; ++i) s += std::int32_t(a[i]) * std::int32_t(b[i]);
    return s;
}

void dot_rows_i8_neon_dotprod(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim,
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
            s0 = vdotq_s32(s0, vld1q_s8(x0 + i), qv);
            s1 = vdotq_s32(s1, vld1q_s8(x1 + i), qv);
            s2 = vdotq_s32(s2, vld1q_s8(x2 + i), qv);
            s3 = vdotq_s32(s3, vld1q_s8(x3 + i), qv);
        }
        // One pairwise-add tree for the four row sums.
        int32x4_t t = vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
        std::int32_t v[4];
        vst1q_s32(v, t);
        for (std::size_t i = full; i < dim; ++i) {
            const std::int32_t qi = q[i];
            v[0] += qi * x0[i];
            v[1] += qi * x1[i];
            v[2] += qi * x2[i];
            v[3] += qi * x3[i];
        }
        for (int j = 0; j < 4; ++j) out[r + j] = static_cast<float>(v[j]);
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8_neon_dotprod(q, x + r * dim, dim));
}

void gemm_i8_neon_dotprod(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t*,
                          float* c, std::size_t ldc, bool accumulate) noexcept {
    // 8 query rows x 8 database rows: 16 accumulators. Per 4-byte step: B is two vectors (4 rows x 4 bytes each),
    // A two vectors (4 query rows each); sdot by element multiplies B by one query row's 4 bytes.
    int32x4_t acc[8][2];
    for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = vdupq_n_s32(0);
    for (std::size_t k = 0; k < kc; k += 4) {
        const int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16);
        const int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
#define SIMDEX_STEP(i, av, lane)                                \
    acc[i][0] = vdotq_laneq_s32(acc[i][0], b0, av, lane);       \
    acc[i][1] = vdotq_laneq_s32(acc[i][1], b1, av, lane);
        SIMDEX_STEP(0, a0, 0)
        SIMDEX_STEP(1, a0, 1)
        SIMDEX_STEP(2, a0, 2)
        SIMDEX_STEP(3, a0, 3)
        SIMDEX_STEP(4, a1, 0)
        SIMDEX_STEP(5, a1, 1)
        SIMDEX_STEP(6, a1, 2)
        SIMDEX_STEP(7, a1, 3)
#undef SIMDEX_STEP
        a += 32;
        b += 32;
    }
    for (int i = 0; i < 8; ++i) {
        float* row = c + i * ldc;
        float32x4_t l = vcvtq_f32_s32(acc[i][0]), h = vcvtq_f32_s32(acc[i][1]);
        if (accumulate) {
            l = vaddq_f32(l, vld1q_f32(row));
            h = vaddq_f32(h, vld1q_f32(row + 4));
        }
        vst1q_f32(row, l);
        vst1q_f32(row + 4, h);
    }
}

}  // namespace simdex::kernels
