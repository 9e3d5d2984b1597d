// int8 kernels for AVX-VNNI (x86-64, 256-bit VEX vpdpbusd: Alder Lake, Sapphire Rapids, Zen 5).
// Flags: -mavx2 -mavxvnni, this file only.
// dot, dot_rows, gemm: the loops of kernels_i8-inl.hpp over the ops below (2 chains in dot; the 6 x 16
// micro-kernel: 12 ymm accumulators, per 4-byte step 2 loads of (flipped) B and 6 broadcasts of A feed 12 vpdpbusd).
// Instructions: vpdpbusd ymm (u8 x s8, groups of 4 summed into i32 lanes, no saturation), vpxor.
// vpdpbusd needs one unsigned operand: the database side is read as (x ^ 0x80) = x + 128 in [1, 255], so the
// raw sum is <x, q> + 128 * sum(q); the bias 128 * sum(q) is computed once per query and subtracted.
// Exactness: the raw sum may exceed int32 for long vectors, but the lanes wrap modulo 2^32 and the final
// difference is exact whenever the true sum fits int32: n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a scalar loop (no byte-masked loads in AVX2). Results equal the scalar reference exactly.
#include <immintrin.h>

#include "kernels_i8-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_256-inl.hpp"

namespace simdex::kernels {
namespace {

struct AvxVnni : I8x32 {
    static constexpr bool kBiased = true;
    static constexpr std::size_t kDotChains = 2, kMr = kAvxVnniI8Mr, kNr = kAvxVnniI8Nr;
    static Bytes prepare(Bytes x) { return _mm256_xor_si256(x, _mm256_set1_epi8(static_cast<char>(0x80))); }
    static Acc mac(Acc acc, Bytes x, Bytes q) { return _mm256_dpbusd_avx_epi32(acc, x, q); }
    static Acc bias_step(Acc bsum, Bytes q) { return _mm256_dpbusd_avx_epi32(bsum, _mm256_set1_epi8(1), q); }
};

}  // namespace

SIMDEX_DEFINE_I8_SCAN_KERNELS(avx_vnni, AvxVnni)
SIMDEX_DEFINE_I8_GEMM_KERNEL(avx_vnni, AvxVnni)

}  // namespace simdex::kernels
