// NEON kernels (AArch64, where Advanced SIMD is baseline: no extra flag).
// Instructions: fmla (vfmaq_f32 / vfmaq_laneq_f32), fcmge for selection. Accumulators: float32 lanes, 4 chains.
// Tails: scalar loop. Tolerance vs scalar: as for the x86 kernels.
#include <arm_neon.h>

#include "simdex/kernels.hpp"

namespace simdex::kernels {

float dot_f32_neon(const float* a, const float* b, std::size_t n) noexcept {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

void dot_rows_f32_neon(const float* q, const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    const std::size_t full = dim & ~std::size_t(3);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float* x0 = x + r * dim;
        const float* x1 = x0 + dim;
        const float* x2 = x1 + dim;
        const float* x3 = x2 + dim;
        float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
        for (std::size_t i = 0; i < full; i += 4) {
            const float32x4_t qv = vld1q_f32(q + i);
            s0 = vfmaq_f32(s0, qv, vld1q_f32(x0 + i));
            s1 = vfmaq_f32(s1, qv, vld1q_f32(x1 + i));
            s2 = vfmaq_f32(s2, qv, vld1q_f32(x2 + i));
            s3 = vfmaq_f32(s3, qv, vld1q_f32(x3 + i));
        }
        float t0 = vaddvq_f32(s0), t1 = vaddvq_f32(s1), t2 = vaddvq_f32(s2), t3 = vaddvq_f32(s3);
        for (std::size_t i = full; i < dim; ++i) {
            t0 += q[i] * x0[i];
            t1 += q[i] * x1[i];
            t2 += q[i] * x2[i];
            t3 += q[i] * x3[i];
        }
        out[r] = t0;
        out[r + 1] = t1;
        out[r + 2] = t2;
        out[r + 3] = t3;
    }
    for (; r < rows; ++r) out[r] = dot_f32_neon(q, x + r * dim, dim);
}

void gemm_f32_neon(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                   bool accumulate) noexcept {
    // 8 query rows x 8 database rows: 16 q-register accumulators; a is read 4 lanes at a time (fmla by lane).
    float32x4_t lo[8], hi[8];
    for (int i = 0; i < 8; ++i) lo[i] = hi[i] = vdupq_n_f32(0);
    for (std::size_t k = 0; k < kc; ++k) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        lo[0] = vfmaq_laneq_f32(lo[0], b0, a0, 0); hi[0] = vfmaq_laneq_f32(hi[0], b1, a0, 0);
        lo[1] = vfmaq_laneq_f32(lo[1], b0, a0, 1); hi[1] = vfmaq_laneq_f32(hi[1], b1, a0, 1);
        lo[2] = vfmaq_laneq_f32(lo[2], b0, a0, 2); hi[2] = vfmaq_laneq_f32(hi[2], b1, a0, 2);
        lo[3] = vfmaq_laneq_f32(lo[3], b0, a0, 3); hi[3] = vfmaq_laneq_f32(hi[3], b1, a0, 3);
        lo[4] = vfmaq_laneq_f32(lo[4], b0, a1, 0); hi[4] = vfmaq_laneq_f32(hi[4], b1, a1, 0);
        lo[5] = vfmaq_laneq_f32(lo[5], b0, a1, 1); hi[5] = vfmaq_laneq_f32(hi[5], b1, a1, 1);
        lo[6] = vfmaq_laneq_f32(lo[6], b0, a1, 2); hi[6] = vfmaq_laneq_f32(hi[6], b1, a1, 2);
        lo[7] = vfmaq_laneq_f32(lo[7], b0, a1, 3); hi[7] = vfmaq_laneq_f32(hi[7], b1, a1, 3);
        a += kNeonMr;
        b += kNeonNr;
    }
    for (int i = 0; i < 8; ++i) {
        float* row = c + static_cast<std::size_t>(i) * ldc;
        if (accumulate) {
            lo[i] = vaddq_f32(lo[i], vld1q_f32(row));
            hi[i] = vaddq_f32(hi[i], vld1q_f32(row + 4));
        }
        vst1q_f32(row, lo[i]);
        vst1q_f32(row + 4, hi[i]);
    }
}

std::size_t select_ge_f32_neon(const float* s, std::size_t n, float t, std::uint32_t* out) noexcept {
    const float32x4_t tv = vdupq_n_f32(t);
    std::size_t count = 0, j = 0;
    for (; j + 4 <= n; j += 4) {
        // Any lane set? Skip the common case of no candidates with one horizontal max.
        if (vmaxvq_u32(vcgeq_f32(vld1q_f32(s + j), tv)) == 0) continue;
        for (std::size_t l = 0; l < 4; ++l)
            if (s[j + l] >= t) out[count++] = static_cast<std::uint32_t>(j + l);
    }
    for (; j < n; ++j)
        if (s[j] >= t) out[count++] = static_cast<std::uint32_t>(j);
    return count;
}

void pack_nr_f32_neon(const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    pack_panels(x, rows, dim, kNeonNr, out);
}

}  // namespace simdex::kernels
