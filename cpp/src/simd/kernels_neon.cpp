// NEON kernels (AArch64, where Advanced SIMD is baseline: no extra flag).
// dot, dot_rows, gemm: the loops of kernels_f32-inl.hpp over the ops below (fmla, 4 chains; the 8 x 8 micro-kernel:
// 16 q-register accumulators, A read 4 lanes at a time and used by element: vfmaq_laneq_f32).
// Selection: fcmge. Accumulators: float32 lanes, 4 chains. Tails: scalar loop.
// Tolerance vs scalar: |error| <= ~n * eps * sum |a_i b_i| (summation order differs), as for the x86 kernels.
#include <arm_neon.h>

#include "kernels_f32-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_neon-inl.hpp"

namespace simdex::kernels {
namespace {
struct Neon : F32x4 {
    static constexpr std::size_t kMr = kNeonMr, kNr = kNeonNr;
    static_assert(kMr == 8, "load_a reads two vectors of A");
    struct Rows {
        V lo, hi;  // query rows 0-3 and 4-7 of one k step
    };
    static Rows load_a(const float* a) { return {vld1q_f32(a), vld1q_f32(a + 4)}; }
    template <std::size_t I>
    static Lane<V, I % 4> broadcast(const Rows& a) {
        return {I < 4 ? a.lo : a.hi};
    }
};
}  // namespace

SIMDEX_DEFINE_F32_KERNELS(neon, Neon)

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
