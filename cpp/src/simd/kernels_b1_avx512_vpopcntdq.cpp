// Binary Hamming kernels for AVX-512 VPOPCNTDQ (x86-64: Ice Lake, Sapphire Rapids, Zen 4 and later). Flags:
// -mavx512f -mavx512bw -mavx512vpopcntdq, this file only; the dispatcher uses them at the avx512 levels when CPUID
// reports AVX512_VPOPCNTDQ, and the AVX2 ones otherwise.
// The loops of kernels_b1-inl.hpp: vpxorq, vpopcntq into 8 uint64 lanes, vpaddq; tails through byte-masked loads
// (vmovdqu8 with a k mask: masked-off bytes read 0 on both sides), no scalar loop. Exact.
#include <immintrin.h>

#include "kernels_b1-inl.hpp"
#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

struct HammingVpopcntdq {
    using Bytes = __m512i;
    using Acc = __m512i;
    using Mask = __mmask64;
    static constexpr std::size_t kBytes = 64;
    static constexpr bool kMaskedTail = true;
    static Mask tail_mask(std::size_t n) { return n >= 64 ? ~Mask(0) : (Mask(1) << n) - 1; }
    static Bytes load(const std::uint8_t* p) { return _mm512_loadu_si512(p); }
    static Bytes load(const std::uint8_t* p, Mask m) { return _mm512_maskz_loadu_epi8(m, p); }
    static Acc zero() { return _mm512_setzero_si512(); }
    static Acc add(Acc x, Acc y) { return _mm512_add_epi64(x, y); }
    static Acc popcnt_add(Acc acc, Bytes a, Bytes b) {
        return _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(a, b)));
    }
    static std::uint64_t reduce(Acc v) { return static_cast<std::uint64_t>(_mm512_reduce_add_epi64(v)); }
};

}  // namespace

SIMDEX_DEFINE_B1_HAMMING_KERNELS(avx512_vpopcntdq, HammingVpopcntdq)

}  // namespace simdex::kernels
