// int8 kernels, each loop written once: dot, dot_rows (the single-query scan) and the GEMM micro-kernel, as templates
// over a per-ISA ops struct. Included only by kernels_i8_{avx2,avx_vnni,avx512_vnni,neon,neon_dotprod}.cpp, which
// compile them under their own flags and define the exported names with SIMDEX_DEFINE_I8_SCAN_KERNELS and
// SIMDEX_DEFINE_I8_GEMM_KERNEL (after facebookresearch/faiss:faiss/utils/simd_impl/*-inl.h; linkage: see
// simd_common-inl.hpp).
// Instructions: whatever Ops::mac uses (vpmaddubsw + vpmaddwd with the sign trick, vpdpbusd, smull + sadalp, sdot).
// Inputs are codes in [-127, 127] (kernels.hpp). Accumulator: int32 lanes; every sum is exact for
// n <= kMaxI8Depth (127 * 127 * n < 2^31), and the results equal the scalar reference exactly.
// Biased kernels (Ops::kBiased, vpdpbusd): the row side is read as x ^ 0x80 = x + 128 (unsigned), so the raw sum is
// <x, q> + 128 * sum(q); the bias is subtracted modulo 2^32, exact whenever the true sum fits int32. The micro-kernel
// gets its panels flipped at packing time (KernelTable::gemm_i8_flip) and the bias per query row from the caller.
// dot: Ops::kDotChains chains over as many vectors, then single vectors, one reduce. dot_rows: 4 database rows per
//   pass, each query vector loaded once and used four times; the rows % 4 left over go through dot.
// Tail: with Ops::kMaskedTail (AVX-512) byte-masked loads, which read 0 on both sides (adding 128 * 0 when biased),
//   no scalar loop; otherwise a scalar loop.
// gemm: Ops::kMr query rows x 2 vectors of database rows (4 bytes per row per step), 2 * kMr accumulators; per
//   4-byte step 2 panel loads and kMr broadcasts of A. Depth kc is a multiple of 4, panels are padded: no tail.
//
// Ops: Bytes, Acc, Sums4, F (float ops for the tile store), kBytes, load(p), zero(), add(x, y), to_f32(acc),
// reduce(acc), reduce4(s0, s1, s2, s3) (lane j = sum of s_j), store4(int32*, sums); kBiased, kMaskedTail, kDotChains,
// prepare(x) (the row operand as mac wants it), mac(acc, prepare(x), q) = acc + x * q in groups of 4 or 2 bytes.
// When kBiased: bias_step(bsum, q) (bsum + the sum of q), unbias(raw, bsum) = raw - 128 * bsum, sub(acc, v) and
// sub4(sums, v) (v in every lane), all lanewise modulo 2^32. When kMaskedTail: Mask, tail_mask(count), load(p, mask),
// store4(float*, sums). gemm: kMr, kNr, load_panel(b) (a panel vector as mac takes it: panels of biased kernels are
// packed flipped), load_a(a), broadcast<i>(load_a(a)) (query row i's 4 bytes as mac's q operand), keep(acc) (pins
// acc to a register).
#pragma once
#include <cstddef>
#include <cstdint>

#include "simd_common-inl.hpp"

namespace simdex::kernels {
namespace {

// acc += x * q, and when biased bsum += q (the sum of q that the bias is made of).
template <class Ops>
inline void dot_i8_step(typename Ops::Acc& acc, typename Ops::Acc& bsum, typename Ops::Bytes x,
                        typename Ops::Bytes q) {
    acc = Ops::mac(acc, Ops::prepare(x), q);
    if constexpr (Ops::kBiased) bsum = Ops::bias_step(bsum, q);
}

template <class Ops>
std::int32_t dot_i8(const std::int8_t* a, const std::int8_t* b, std::size_t n) noexcept {
    using Acc = typename Ops::Acc;
    constexpr std::size_t w = Ops::kBytes, chains = Ops::kDotChains;
    Acc s[chains], bsum = Ops::zero();
    static_for<chains>([&](auto c) { s[c] = Ops::zero(); });
    std::size_t i = 0;
    for (; i + chains * w <= n; i += chains * w)
        static_for<chains>([&](auto c) {
            dot_i8_step<Ops>(s[c], bsum, Ops::load(a + i + c * w), Ops::load(b + i + c * w));
        });
    for (; i + w <= n; i += w) dot_i8_step<Ops>(s[0], bsum, Ops::load(a + i), Ops::load(b + i));
    if constexpr (Ops::kMaskedTail) {
        if (i < n) {
            const auto m = Ops::tail_mask(n - i);
            dot_i8_step<Ops>(s[0], bsum, Ops::load(a + i, m), Ops::load(b + i, m));
        }
    }
    static_for<chains - 1>([&](auto c) { s[0] = Ops::add(s[0], s[c + 1]); });
    if constexpr (Ops::kBiased) s[0] = Ops::unbias(s[0], bsum);
    std::int32_t sum = Ops::reduce(s[0]);
    if constexpr (!Ops::kMaskedTail)
        for (; i < n; ++i) sum += std::int32_t(a[i]) * std::int32_t(b[i]);
    return sum;
}

template <class Ops>
void dot_rows_i8(const std::int8_t* q, const std::int8_t* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    using Acc = typename Ops::Acc;
    using Bytes = typename Ops::Bytes;
    constexpr std::size_t w = Ops::kBytes;
    const std::size_t full = dim / w * w;
    std::int32_t bias = 0;  // 128 * the sum of the query bytes the vector loops read
    if constexpr (Ops::kBiased) {
        const std::size_t vector_end = Ops::kMaskedTail ? dim : full;
        std::int32_t qsum = 0;
        for (std::size_t i = 0; i < vector_end; ++i) qsum += q[i];
        bias = times128(qsum);
    }
    // The query's last, partial vector, loaded once (a float store may change int8 data, so the compiler would not
    // hoist the load out of the row loop itself).
    [[maybe_unused]] const auto q_tail = [&] {
        if constexpr (Ops::kMaskedTail) return Ops::load(q + full, Ops::tail_mask(dim - full));
        else return 0;
    }();
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const std::int8_t* x0 = x + r * dim;
        const std::int8_t* x1 = x0 + dim;
        const std::int8_t* x2 = x1 + dim;
        const std::int8_t* x3 = x2 + dim;
        Acc s0 = Ops::zero(), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += w) {
            const Bytes qv = Ops::load(q + i);
            s0 = Ops::mac(s0, Ops::prepare(Ops::load(x0 + i)), qv);
            s1 = Ops::mac(s1, Ops::prepare(Ops::load(x1 + i)), qv);
            s2 = Ops::mac(s2, Ops::prepare(Ops::load(x2 + i)), qv);
            s3 = Ops::mac(s3, Ops::prepare(Ops::load(x3 + i)), qv);
        }
        if constexpr (Ops::kMaskedTail) {
            if (full < dim) {
                const auto m = Ops::tail_mask(dim - full);
                s0 = Ops::mac(s0, Ops::prepare(Ops::load(x0 + full, m)), q_tail);
                s1 = Ops::mac(s1, Ops::prepare(Ops::load(x1 + full, m)), q_tail);
                s2 = Ops::mac(s2, Ops::prepare(Ops::load(x2 + full, m)), q_tail);
                s3 = Ops::mac(s3, Ops::prepare(Ops::load(x3 + full, m)), q_tail);
            }
        }
        auto sums = Ops::reduce4(s0, s1, s2, s3);
        if constexpr (Ops::kBiased) sums = Ops::sub4(sums, bias);
        if constexpr (Ops::kMaskedTail) {
            Ops::store4(out + r, sums);
        } else {
            alignas(16) std::int32_t t[4];
            Ops::store4(t, sums);
            for (std::size_t i = full; i < dim; ++i) {
                const std::int32_t qi = q[i];
                t[0] += qi * x0[i];
                t[1] += qi * x1[i];
                t[2] += qi * x2[i];
                t[3] += qi * x3[i];
            }
            for (int j = 0; j < 4; ++j) out[r + j] = static_cast<float>(t[j]);
        }
    }
    for (; r < rows; ++r) out[r] = static_cast<float>(dot_i8<Ops>(x + r * dim, q, dim));
}

template <class Ops>
void gemm_i8(std::size_t kc, const std::int8_t* a, const std::int8_t* b, const std::int32_t* a_bias, float* c,
             std::size_t ldc, bool accumulate) noexcept {
    using Acc = typename Ops::Acc;
    constexpr std::size_t mr = Ops::kMr, w = Ops::kBytes;
    static_assert(Ops::kNr * 4 == 2 * w, "the micro-kernel reads two vectors of database rows per 4-byte step");
    Acc lo[mr], hi[mr];
    static_for<mr>([&](auto i) { lo[i] = hi[i] = Ops::zero(); });
    for (std::size_t k = 0; k < kc; k += 4) {
        const auto b0 = Ops::load_panel(b), b1 = Ops::load_panel(b + w);
        const auto ak = Ops::load_a(a);
        static_for<mr>([&](auto i) {
            const auto ai = Ops::template broadcast<decltype(i)::value>(ak);
            lo[i] = Ops::mac(lo[i], b0, ai);
            hi[i] = Ops::mac(hi[i], b1, ai);
        });
        a += 4 * mr;
        b += 2 * w;
    }
    static_for<mr>([&](auto i) {
        Acc l = lo[i], h = hi[i];
        Ops::keep(l);  // on copies: asm on the array elements themselves makes GCC 12 spill them in the loop
        Ops::keep(h);
        if constexpr (Ops::kBiased) {
            l = Ops::sub(l, a_bias[i]);
            h = Ops::sub(h, a_bias[i]);
        }
        store_row<typename Ops::F>(c + i * ldc, Ops::to_f32(l), Ops::to_f32(h), accumulate);
    });
}

}  // namespace
}  // namespace simdex::kernels

// The exported int8 kernels of one ISA (the names kernels.hpp declares), from the templates above; use inside
// namespace simdex::kernels, after the ops struct.
#define SIMDEX_DEFINE_I8_SCAN_KERNELS(isa, Ops)                                                                       \
    SIMDEX_KERNEL_EXPORT std::int32_t dot_i8_##isa(const std::int8_t* a, const std::int8_t* b,                        \
                                                   std::size_t n) noexcept {                                          \
        return dot_i8<Ops>(a, b, n);                                                                                  \
    }                                                                                                                 \
    SIMDEX_KERNEL_EXPORT void dot_rows_i8_##isa(const std::int8_t* q, const std::int8_t* x, std::size_t rows,         \
                                                std::size_t dim, float* out) noexcept {                               \
        dot_rows_i8<Ops>(q, x, rows, dim, out);                                                                       \
    }
#define SIMDEX_DEFINE_I8_GEMM_KERNEL(isa, Ops)                                                                        \
    SIMDEX_KERNEL_EXPORT void gemm_i8_##isa(std::size_t kc, const std::int8_t* a, const std::int8_t* b,               \
                                            const std::int32_t* a_bias, float* c, std::size_t ldc,                    \
                                            bool accumulate) noexcept {                                               \
        gemm_i8<Ops>(kc, a, b, a_bias, c, ldc, accumulate);                                                           \
    }
