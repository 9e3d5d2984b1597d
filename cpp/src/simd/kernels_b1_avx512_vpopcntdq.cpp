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

// The batch prefilter: one zmm holds word w of a panel's 8 rows, so a query's distances to 8 rows are 3 ops per
// word (vpxorq, vpopcntq, vpaddq) with no horizontal sum, and each row word loaded once serves up to
// kHammingSelectQueries queries. kW > 0: the query words stay broadcast in registers (up to 6 words, 384 bits);
// kW = 0: any number of words, each broadcast as it is used.
namespace {
template <std::size_t kW>
void hamming_select(const std::uint64_t* q, std::size_t nq, std::size_t words, const std::uint64_t* panels,
                    std::size_t n_panels, const std::uint32_t* thr, std::uint32_t* const* idx,
                    std::uint16_t* const* dist, std::size_t* counts) noexcept {
    constexpr std::size_t kQ = kHammingSelectQueries;
    const std::size_t nw = kW ? kW : words;
    __m512i limit[kQ];
    std::size_t c[kQ] = {};
    for (std::size_t j = 0; j < kQ; ++j) limit[j] = _mm512_set1_epi64(j < nq ? static_cast<long long>(thr[j]) : 0);
    __m512i qv[kQ][kW ? kW : 1];
    if constexpr (kW > 0)
        for (std::size_t j = 0; j < kQ; ++j)
            for (std::size_t w = 0; w < kW; ++w)  // unused query slots repeat query 0: their results are ignored
                qv[j][w] = _mm512_set1_epi64(static_cast<long long>(q[(j < nq ? j : 0) * words + w]));
    for (std::size_t p = 0; p < n_panels; ++p) {
        const std::uint64_t* panel = panels + p * nw * kHammingPanelRows;
        __m512i acc[kQ];
        for (std::size_t j = 0; j < kQ; ++j) acc[j] = _mm512_setzero_si512();
        for (std::size_t w = 0; w < nw; ++w) {
            const __m512i r = _mm512_loadu_si512(panel + w * kHammingPanelRows);
            for (std::size_t j = 0; j < kQ; ++j) {
                const __m512i b = kW ? qv[j][kW ? w : 0]
                                     : _mm512_set1_epi64(static_cast<long long>(q[(j < nq ? j : 0) * words + w]));
                acc[j] = _mm512_add_epi64(acc[j], _mm512_popcnt_epi64(_mm512_xor_si512(r, b)));
            }
        }
        __mmask8 hit[kQ];
        __mmask8 any = 0;
        for (std::size_t j = 0; j < kQ; ++j) {
            hit[j] = j < nq ? _mm512_cmple_epu64_mask(acc[j], limit[j]) : 0;
            any |= hit[j];
        }
        if (!any) continue;  // the common case: no row of the panel qualifies
        for (std::size_t j = 0; j < nq; ++j) {
            __mmask8 m = hit[j];
            if (!m) continue;
            alignas(64) std::uint64_t d[kHammingPanelRows];
            _mm512_store_si512(d, acc[j]);
            for (; m; m &= m - 1) {
                const unsigned lane = static_cast<unsigned>(__builtin_ctz(m));
                idx[j][c[j]] = static_cast<std::uint32_t>(p * kHammingPanelRows + lane);
                dist[j][c[j]++] = static_cast<std::uint16_t>(d[lane]);
            }
        }
    }
    for (std::size_t j = 0; j < nq; ++j) counts[j] = c[j];
}
}  // namespace

void hamming_select_b1_avx512_vpopcntdq(const std::uint64_t* q, std::size_t nq, std::size_t words,
                                        const std::uint64_t* panels, std::size_t n_panels, const std::uint32_t* thr,
                                        std::uint32_t* const* idx, std::uint16_t* const* dist,
                                        std::size_t* counts) noexcept {
    switch (words) {
        case 1: return hamming_select<1>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        case 2: return hamming_select<2>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        case 3: return hamming_select<3>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        case 4: return hamming_select<4>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        case 5: return hamming_select<5>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        case 6: return hamming_select<6>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
        default: return hamming_select<0>(q, nq, words, panels, n_panels, thr, idx, dist, counts);
    }
}

}  // namespace simdex::kernels
