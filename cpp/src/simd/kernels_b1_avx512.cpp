// Binary asymmetric-score kernels for AVX-512F (x86-64). Flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma,
// this file only (the Hamming kernels of the avx512 levels are kernels_b1_avx512_vpopcntdq.cpp, or AVX2's).
// The loops of kernels_b1-inl.hpp: per 16 dimensions the two code bytes are the k mask of one vaddps zmm{k}
// (acc += q on the set bits), so no bit is expanded. Tail: the remaining bits, cut to the live lanes, mask a
// masked query load (no scalar loop). Tolerance vs the scalar oracle: |error| <= ~2 n eps sum |q_d|.
#include <immintrin.h>

#include <cstring>

#include "kernels_b1-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_512-inl.hpp"

namespace simdex::kernels {
namespace {

struct DotAvx512 : F32x16 {
    static constexpr std::size_t kRows = 8;
    static V masked_add(V acc, const std::uint8_t* bits, V q) {
        std::uint16_t m;
        std::memcpy(&m, bits, 2);
        return _mm512_mask_add_ps(acc, m, acc, q);
    }
    static V masked_add_tail(V acc, const std::uint8_t* bits, const float* q, std::size_t n) {
        unsigned m = bits[0];
        if (n > 8) m |= unsigned(bits[1]) << 8;
        const Mask live = tail_mask(n);
        return _mm512_mask_add_ps(acc, static_cast<Mask>(m & live), acc, _mm512_maskz_loadu_ps(live, q));
    }
};

}  // namespace

SIMDEX_DEFINE_B1_DOT_KERNELS(avx512, DotAvx512)

}  // namespace simdex::kernels
