// Binary kernels for AVX2 (x86-64). Flags: -mavx2 -mfma, this file only. Also the binary kernels of the avx_vnni
// level, and the Hamming kernels of the avx512 levels on CPUs without VPOPCNTDQ.
// Hamming: the loops of kernels_b1-inl.hpp; popcount of 32 bytes by nibble lookup (vpshufb into a 16-entry table,
// low and high nibbles, vpaddb) then vpsadbw into 4 uint64 lanes. Exact; tail: 64-bit popcnt, then bytes.
// Asymmetric score: 8 float lanes per code byte: the byte broadcast to 8 int32 lanes, vpand with 1, 2, .., 128,
// vpcmpeqd gives the lane mask, vandps keeps the query lanes whose bit is set, vaddps. Tail: scalar loop.
// Tolerance vs the scalar oracle: |error| <= ~2 n eps sum |q_d| (order of the float sums).
#include <immintrin.h>

#include <cstring>

#include "kernels_b1-inl.hpp"
#include "simdex/kernels.hpp"
#include "vec_x86_256-inl.hpp"

namespace simdex::kernels {
namespace {

struct HammingAvx2 {
    using Bytes = __m256i;
    using Acc = __m256i;
    static constexpr std::size_t kBytes = 32;
    static constexpr bool kMaskedTail = false;
    static Bytes load(const std::uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
    static Acc zero() { return _mm256_setzero_si256(); }
    static Acc add(Acc x, Acc y) { return _mm256_add_epi64(x, y); }
    static Acc popcnt_add(Acc acc, Bytes a, Bytes b) {
        const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                             0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        const __m256i x = _mm256_xor_si256(a, b);
        const __m256i lo = _mm256_and_si256(x, low), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
        const __m256i cnt = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
        return _mm256_add_epi64(acc, _mm256_sad_epu8(cnt, _mm256_setzero_si256()));
    }
    static std::uint64_t reduce(Acc v) {
        const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        return static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) + static_cast<std::uint64_t>(_mm_extract_epi64(s, 1));
    }
};

struct DotAvx2 : F32x8 {
    static V masked_add(V acc, const std::uint8_t* bits, V q) {
        const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        const __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[0]), select);
        const __m256 keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, select));
        return _mm256_add_ps(acc, _mm256_and_ps(keep, q));
    }
};

// The scan: 16 int16 weights per 2 code bytes (the bits broadcast, vpand with 1, 2, .., 32768, vpcmpeqw, vpand,
// vpaddw), widened by vpmaddwd with ones.
struct SumsAvx2 {
    using Acc16 = __m256i;
    using Acc32 = __m256i;
    static constexpr std::size_t kLanes = 16, kRows = 4;
    static Acc16 zero16() { return _mm256_setzero_si256(); }
    static Acc32 zero32() { return _mm256_setzero_si256(); }
    static Acc16 load(const std::int16_t* w) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)); }
    static Acc16 masked_add(Acc16 acc, const std::uint8_t* bits, Acc16 w) {
        const __m256i select = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                                 16384, -32768);
        std::uint16_t m;
        std::memcpy(&m, bits, 2);
        const __m256i b = _mm256_and_si256(_mm256_set1_epi16(static_cast<short>(m)), select);
        return _mm256_add_epi16(acc, _mm256_and_si256(_mm256_cmpeq_epi16(b, select), w));
    }
    static Acc32 widen(Acc32 wide, Acc16 acc) {
        return _mm256_add_epi32(wide, _mm256_madd_epi16(acc, _mm256_set1_epi16(1)));
    }
    template <std::size_t count>
    static void reduce_rows(const Acc32* a, std::int32_t* out) {
        for (std::size_t j = 0; j < count; ++j) {
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a[j]), _mm256_extracti128_si256(a[j], 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
            out[j] = _mm_cvtsi128_si32(s);
        }
    }
};

}  // namespace

SIMDEX_DEFINE_B1_HAMMING_KERNELS(avx2, HammingAvx2)
SIMDEX_DEFINE_B1_DOT_KERNELS(avx2, DotAvx2, SumsAvx2)

}  // namespace simdex::kernels
