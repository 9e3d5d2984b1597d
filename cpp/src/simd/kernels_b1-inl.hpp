// Binary (1-bit) kernels, each loop written once: Hamming distance and the asymmetric score (float query against
// +-1 codes), one pair and one query against many rows, as templates over per-ISA ops structs. Included only by
// kernels_b1_{avx2,avx512,avx512_vpopcntdq,neon}.cpp, which compile them under their own flags and define the exported
// names with SIMDEX_DEFINE_B1_HAMMING_KERNELS / SIMDEX_DEFINE_B1_DOT_KERNELS (linkage: see simd_common-inl.hpp).
// Code layout: kernels.hpp (bit d % 8 of byte d / 8, rows of b1_bytes(dim) bytes, bits past dim are 0).
//
// Hamming (ops H): popcount(a ^ b) per vector of H::kBytes bytes into integer lanes (vpopcntq; the AVX2 nibble
// lookup vpshufb + vpsadbw; NEON cnt + pairwise adds), 2 chains, one reduce, the bytes left over by masked loads or
// a scalar loop (64-bit popcounts, then bytes). Exact. hamming_rows: 4 rows per pass, each query vector loaded once
// and used four times.
// H: Bytes, Acc, kBytes, load(p), zero(), add(x, y), popcnt_add(acc, a, b) = acc + popcount(a ^ b) lanewise,
// reduce(acc) (the sum of the lanes), kMaskedTail; when kMaskedTail (AVX-512): tail_mask(n), load(p, mask)
// (masked-off bytes read 0 on both sides, so they add nothing), and no scalar loop.
//
// Asymmetric score (ops A), one row: sum_d q_d * (bit_d ? +1 : -1) = 2 * P - S with P the sum of q over the set
// bits and S the sum of q. P: per vector of A::kLanes floats (a multiple of 8) the matching kLanes / 8 code bytes
// select the lanes to add (AVX-512: the 16 bits are the k mask of vaddps; AVX2 / NEON: each bit expanded to a lane
// mask by broadcast, and, compare). Tail (dim % kLanes): with A::kMaskedTail masked loads and the remaining bits as
// the mask (bits past dim are masked off, whatever the code holds), else a scalar loop. Float32 lanes: the result
// differs from the scalar oracle by the order of the sums, |error| <= ~2 n eps sum |q_d|.
// A: V, kLanes, kMaskedTail, zero(), load(q), add(x, y), reduce(v), masked_add(acc, bits, q) = acc + q on the lanes
// whose bit is set (bits: kLanes / 8 bytes). When kMaskedTail: masked_add_tail(acc, bits, q, n) for the n < kLanes
// dimensions left (reads b1_bytes(n) bytes of bits and n floats of q).
//
// The scan (ops W): the same sum P for integer weights (|w| <= kB1WeightMax), W::kRows rows per pass (as many
// accumulators), then 4, then 1. Per W::kLanes int16 lanes the code bits select the weights to add (AVX-512BW:
// vpaddw under a 32-bit k mask, half the instructions of the float sum); every kB1Chunk dimensions the int16 lanes
// are widened into int32 lanes (pairwise), so no lane overflows and the result is exact on every ISA.
// W: Acc16, Acc32, kLanes (a divisor of kB1Chunk), kRows, zero16(), zero32(), load(w), masked_add(acc, bits, w)
// (kLanes / 8 bytes of bits), widen(acc32, acc16), reduce_rows<count>(const Acc32*, int32_t* out).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd_common-inl.hpp"
#include "simdex/kernels.hpp"

namespace simdex::kernels {
namespace {

inline std::uint32_t hamming_tail(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
    std::uint32_t count = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t x, y;
        std::memcpy(&x, a + i, 8);
        std::memcpy(&y, b + i, 8);
        count += static_cast<std::uint32_t>(__builtin_popcountll(x ^ y));
    }
    for (; i < n; ++i) count += static_cast<std::uint32_t>(__builtin_popcount(unsigned(a[i] ^ b[i])));
    return count;
}

template <class H>
std::uint32_t hamming_b1(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) noexcept {
    constexpr std::size_t w = H::kBytes;
    typename H::Acc s0 = H::zero(), s1 = H::zero();
    std::size_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        s0 = H::popcnt_add(s0, H::load(a + i), H::load(b + i));
        s1 = H::popcnt_add(s1, H::load(a + i + w), H::load(b + i + w));
    }
    for (; i + w <= n; i += w) s0 = H::popcnt_add(s0, H::load(a + i), H::load(b + i));
    if constexpr (H::kMaskedTail) {
        if (i < n) {
            const auto m = H::tail_mask(n - i);
            s0 = H::popcnt_add(s0, H::load(a + i, m), H::load(b + i, m));
        }
        return static_cast<std::uint32_t>(H::reduce(H::add(s0, s1)));
    }
    return static_cast<std::uint32_t>(H::reduce(H::add(s0, s1))) + hamming_tail(a + i, b + i, n - i);
}

template <class H>
void hamming_rows_b1(const std::uint8_t* q, const std::uint8_t* x, std::size_t rows, std::size_t n,
                     std::uint32_t* out) noexcept {
    constexpr std::size_t w = H::kBytes;
    const std::size_t full = n / w * w;
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::uint8_t* x0 = x + r * n;
        typename H::Acc s[4];
        static_for<4>([&](auto j) { s[j] = H::zero(); });
        for (std::size_t i = 0; i < full; i += w) {
            const typename H::Bytes qv = H::load(q + i);
            static_for<4>([&](auto j) { s[j] = H::popcnt_add(s[j], qv, H::load(x0 + j * n + i)); });
        }
        if constexpr (H::kMaskedTail) {
            if (full < n) {
                const auto m = H::tail_mask(n - full);
                const typename H::Bytes qv = H::load(q + full, m);
                static_for<4>([&](auto j) { s[j] = H::popcnt_add(s[j], qv, H::load(x0 + j * n + full, m)); });
            }
            static_for<4>([&](auto j) { out[r + j] = static_cast<std::uint32_t>(H::reduce(s[j])); });
            continue;
        }
        static_for<4>([&](auto j) {
            out[r + j] =
                static_cast<std::uint32_t>(H::reduce(s[j])) + hamming_tail(q + full, x0 + j * n + full, n - full);
        });
    }
    for (; r < rows; ++r) out[r] = hamming_b1<H>(q, x + r * n, n);
}

// The sum of q over dimensions [from, dim) whose bit is set (the scalar tail).
inline float set_bits_sum(const float* q, const std::uint8_t* code, std::size_t from, std::size_t dim) {
    float s = 0.0f;
    for (std::size_t d = from; d < dim; ++d)
        if ((code[d / 8] >> (d % 8)) & 1u) s += q[d];
    return s;
}

// S: the sum of q (same lane order as P).
template <class A>
float sum_f32(const float* q, std::size_t dim) {
    constexpr std::size_t L = A::kLanes;
    typename A::V s = A::zero();
    std::size_t d = 0;
    for (; d + L <= dim; d += L) s = A::add(s, A::load(q + d));
    float total = A::reduce(s);
    for (; d < dim; ++d) total += q[d];
    return total;
}

// P for one row: the sum of q over the set bits of the code.
template <class A>
float set_sum(const float* q, const std::uint8_t* code, std::size_t dim) {
    constexpr std::size_t L = A::kLanes;
    const std::size_t full = dim / L * L;
    typename A::V acc = A::zero();
    for (std::size_t d = 0; d < full; d += L) acc = A::masked_add(acc, code + d / 8, A::load(q + d));
    if constexpr (A::kMaskedTail) {
        if (full < dim) acc = A::masked_add_tail(acc, code + full / 8, q + full, dim - full);
        return A::reduce(acc);
    }
    return A::reduce(acc) + set_bits_sum(q, code, full, dim);
}

template <class A>
float dot_b1(const float* q, const std::uint8_t* code, std::size_t dim) noexcept {
    return 2.0f * set_sum<A>(q, code, dim) - sum_f32<A>(q, dim);
}

// The integer sums of `count` rows (1 <= count <= W::kRows) starting at x0, rows nb bytes apart: int16 lanes per
// kB1Chunk dimensions, then widened into int32 lanes; the dim % kLanes dimensions left in scalar code.
template <class W, std::size_t count>
void int_sums(const std::int16_t* w, const std::uint8_t* x0, std::size_t nb, std::size_t dim, float* out) {
    constexpr std::size_t L = W::kLanes;
    static_assert(kB1Chunk % L == 0);
    const std::size_t full = dim / L * L;
    typename W::Acc32 wide[count];
    static_for<count>([&](auto j) { wide[j] = W::zero32(); });
    for (std::size_t c0 = 0; c0 < full; c0 += kB1Chunk) {
        const std::size_t c1 = c0 + kB1Chunk < full ? c0 + kB1Chunk : full;
        typename W::Acc16 acc[count];
        static_for<count>([&](auto j) { acc[j] = W::zero16(); });
        for (std::size_t d = c0; d < c1; d += L) {
            const typename W::Acc16 wv = W::load(w + d);
            static_for<count>([&](auto j) { acc[j] = W::masked_add(acc[j], x0 + j * nb + d / 8, wv); });
        }
        static_for<count>([&](auto j) { wide[j] = W::widen(wide[j], acc[j]); });
    }
    std::int32_t s[count];
    W::template reduce_rows<count>(wide, s);
    static_for<count>([&](auto j) {
        const std::uint8_t* code = x0 + j * nb;
        for (std::size_t d = full; d < dim; ++d)
            if ((code[d / 8] >> (d % 8)) & 1u) s[j] += w[d];
        out[j] = static_cast<float>(s[j]);
    });
}

template <class W>
void sums_rows_b1(const std::int16_t* w, const std::uint8_t* x, std::size_t rows, std::size_t dim,
                  float* out) noexcept {
    const std::size_t nb = b1_bytes(dim);
    constexpr std::size_t R = W::kRows;
    std::size_t r = 0;
    for (; r + R <= rows; r += R) int_sums<W, R>(w, x + r * nb, nb, dim, out + r);
    if constexpr (R > 4)
        for (; r + 4 <= rows; r += 4) int_sums<W, 4>(w, x + r * nb, nb, dim, out + r);
    for (; r < rows; ++r) int_sums<W, 1>(w, x + r * nb, nb, dim, out + r);
}

}  // namespace
}  // namespace simdex::kernels

#define SIMDEX_DEFINE_B1_HAMMING_KERNELS(isa, H)                                                                   \
    SIMDEX_KERNEL_EXPORT std::uint32_t hamming_b1_##isa(const std::uint8_t* a, const std::uint8_t* b,             \
                                                        std::size_t nbytes) noexcept {                            \
        return hamming_b1<H>(a, b, nbytes);                                                                        \
    }                                                                                                              \
    SIMDEX_KERNEL_EXPORT void hamming_rows_b1_##isa(const std::uint8_t* q, const std::uint8_t* x, std::size_t rows, \
                                                    std::size_t nbytes, std::uint32_t* out) noexcept {            \
        hamming_rows_b1<H>(q, x, rows, nbytes, out);                                                               \
    }

#define SIMDEX_DEFINE_B1_DOT_KERNELS(isa, A, W)                                                                    \
    SIMDEX_KERNEL_EXPORT float dot_b1_##isa(const float* q, const std::uint8_t* code, std::size_t dim) noexcept {  \
        return dot_b1<A>(q, code, dim);                                                                            \
    }                                                                                                              \
    SIMDEX_KERNEL_EXPORT void sums_rows_b1_##isa(const std::int16_t* w, const std::uint8_t* x, std::size_t rows,   \
                                                 std::size_t dim, float* out) noexcept {                           \
        sums_rows_b1<W>(w, x, rows, dim, out);                                                                     \
    }
