// Binary asymmetric-score kernels for AVX-512F (x86-64). Flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma,
// this file only (the Hamming kernels of the avx512 levels are kernels_b1_avx512_vpopcntdq.cpp, or AVX2's).
// The loops of kernels_b1-inl.hpp: per 16 dimensions the two code bytes are the k mask of one vaddps zmm{k}
// (acc += q on the set bits), so no bit is expanded; the scan's integer sums likewise, 32 int16 weights per
// vpaddw zmm{k}. Tail: the remaining bits, cut to the live lanes, mask a masked query load (no scalar loop).
// Tolerance vs the scalar oracle: |error| <= ~2 n eps sum |q_d|; the integer sums are exact.
#include <immintrin.h>

#include <cstring>

#include "kernels_b1-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_512-inl.hpp"

namespace simdex::kernels {
namespace {

struct DotAvx512 : F32x16 {
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

// The scan: 32 int16 weights per vpaddw under the 32 code bits as its k mask; 8 rows reduced together (pairwise
// unpacks and lane shuffles, one store of 8 sums) instead of one horizontal sum each.
struct SumsAvx512 {
    using Acc16 = __m512i;
    using Acc32 = __m512i;
    static constexpr std::size_t kLanes = 32, kRows = 8;
    static Acc16 zero16() { return _mm512_setzero_si512(); }
    static Acc32 zero32() { return _mm512_setzero_si512(); }
    static Acc16 load(const std::int16_t* w) { return _mm512_loadu_si512(w); }
    static Acc16 masked_add(Acc16 acc, const std::uint8_t* bits, Acc16 w) {
        std::uint32_t m;
        std::memcpy(&m, bits, 4);
        return _mm512_mask_add_epi16(acc, m, acc, w);
    }
    static Acc32 widen(Acc32 wide, Acc16 acc) {
        return _mm512_add_epi32(wide, _mm512_madd_epi16(acc, _mm512_set1_epi16(1)));
    }
    template <std::size_t count>
    static void reduce_rows(const Acc32* a, std::int32_t* out) {
        if constexpr (count == 8) {
            // Adjacent rows' lanes interleaved and added (32-bit, then 64-bit), then the four 128-bit blocks.
            auto pairs = [](__m512i x, __m512i y) {
                return _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
            };
            const __m512i s01 = pairs(a[0], a[1]), s23 = pairs(a[2], a[3]);
            const __m512i s45 = pairs(a[4], a[5]), s67 = pairs(a[6], a[7]);
            const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
            const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi64(s45, s67), _mm512_unpackhi_epi64(s45, s67));
            const __m512i u =
                _mm512_add_epi32(_mm512_shuffle_i32x4(t0, t1, 0x88), _mm512_shuffle_i32x4(t0, t1, 0xDD));
            const __m512i v = _mm512_shuffle_i32x4(u, u, 0xD8);
            const __m256i r = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), r);
        } else {
            for (std::size_t j = 0; j < count; ++j) out[j] = _mm512_reduce_add_epi32(a[j]);
        }
    }
};

}  // namespace

SIMDEX_DEFINE_B1_DOT_KERNELS(avx512, DotAvx512, SumsAvx512)

}  // namespace simdex::kernels
