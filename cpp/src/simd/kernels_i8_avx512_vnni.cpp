// int8 kernels for AVX-512 VNNI (x86-64: Ice Lake, Sapphire Rapids, Zen 4 and later).
// Flags: -mavx512f -mavx512bw -mavx512vl -mavx512vnni, this file only.
// dot, dot_rows, gemm: the loops of kernels_i8-inl.hpp over the ops below (2 chains in dot; the 12 x 32
// micro-kernel: 24 zmm accumulators, per 4-byte step 2 loads of (flipped) B and 12 broadcasts of A feed 24
// vpdpbusd).
// Instructions: vpdpbusd zmm (u8 x s8, groups of 4 summed into i32 lanes, no saturation), vpxord, byte-masked
// loads (vmovdqu8 with a k mask) for tails, so there is no scalar tail loop.
// vpdpbusd needs one unsigned operand: the database side is read as (x ^ 0x80) = x + 128 in [1, 255], so the
// raw sum is <x, q> + 128 * sum(q); the bias 128 * sum(q) is computed once per query and subtracted. Masked-off
// bytes load as 0 on both sides, so they add 128 * 0.
// Exactness: lanes wrap modulo 2^32 and the final difference is exact whenever the true sum fits int32:
// n <= kMaxI8Depth (127 * 127 * n < 2^31). Results equal the scalar reference exactly.
#include <immintrin.h>

#include "kernels_i8-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_512-inl.hpp"

namespace simdex::kernels {
namespace {

struct Avx512Vnni : I8x64 {
    static constexpr bool kBiased = true;
    static constexpr std::size_t kDotChains = 2, kMr = kAvx512VnniI8Mr, kNr = kAvx512VnniI8Nr;
    static Bytes prepare(Bytes x) { return _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80))); }
    static Acc mac(Acc acc, Bytes x, Bytes q) { return _mm512_dpbusd_epi32(acc, x, q); }
    static Acc bias_step(Acc bsum, Bytes q) { return _mm512_dpbusd_epi32(bsum, _mm512_set1_epi8(1), q); }
};

}  // namespace

SIMDEX_DEFINE_I8_SCAN_KERNELS(avx512_vnni, Avx512Vnni)
SIMDEX_DEFINE_I8_GEMM_KERNEL(avx512_vnni, Avx512Vnni)

}  // namespace simdex::kernels
