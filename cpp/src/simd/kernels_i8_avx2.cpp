// int8 kernels for AVX2 (x86-64). Flags: -mavx2, this file only.
// dot, dot_rows, gemm: the loops of kernels_i8-inl.hpp over the ops below (2 chains in dot; the 4 x 16 micro-kernel:
// 8 ymm accumulators, per 4-byte step 2 loads of B, |B| once, then per query row one broadcast and per vector
// vpsignb, vpmaddubsw, vpmaddwd, vpaddd).
// Instructions: vpabsb + vpsignb (the sign trick: a * b == |a| * sign(b, a)), vpmaddubsw (u8 x s8 -> pairs summed to
// i16), vpmaddwd with ones (i16 pairs -> i32), vpaddd.
// Exactness: codes are in [-127, 127], so |a| fits u8 and each i16 pair sum is at most 2 * 127 * 127 = 32258:
// vpmaddubsw never saturates. Accumulators: int32 lanes; exact for n <= kMaxI8Depth (127 * 127 * n < 2^31).
// Tails: a scalar loop. Results equal the scalar reference exactly.
#include <immintrin.h>

#include "kernels_i8-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_256-inl.hpp"

namespace simdex::kernels {
namespace {

struct Avx2I8 : I8x32 {
    static constexpr bool kBiased = false;
    static constexpr std::size_t kDotChains = 2, kMr = kAvx2I8Mr, kNr = kAvx2I8Nr;
    // The row operand of the sign trick: |x| and x (for the signs).
    struct Prepared {
        Bytes abs, raw;
    };
    static Prepared prepare(Bytes x) { return {_mm256_abs_epi8(x), x}; }
    static Acc mac(Acc acc, Prepared x, Bytes q) {
        const __m256i pairs = _mm256_maddubs_epi16(x.abs, _mm256_sign_epi8(q, x.raw));
        return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
    }
    static Prepared load_panel(const std::int8_t* b) { return prepare(load(b)); }
};

}  // namespace

SIMDEX_DEFINE_I8_SCAN_KERNELS(avx2, Avx2I8)
SIMDEX_DEFINE_I8_GEMM_KERNEL(avx2, Avx2I8)

}  // namespace simdex::kernels
