// Float kernels, each loop written once: dot, dot_rows (the single-query scan) and the GEMM micro-kernel, as
// templates over a per-ISA ops struct. Included only by kernels_avx2.cpp, kernels_avx512.cpp and kernels_neon.cpp,
// which compile them under their own flags and define the exported names with SIMDEX_DEFINE_F32_KERNELS
// (after facebookresearch/faiss:faiss/utils/simd_impl/*-inl.h; linkage: see simd_common-inl.hpp).
// Instructions: whatever the ops use (vfmadd231ps ymm / zmm, fmla). Accumulator: float32 lanes.
// dot: a wide loop over 4 vectors into 4 chains (hides FMA latency), a loop over single vectors, one reduce
//   (ashvardanian/SimSIMD@v6.5.9:include/simsimd/spatial.h). dot_rows: 4 database rows per pass, each query vector
//   loaded once and used four times, one chain per row; the rows % 4 left over go through dot.
// Tail: with Ops::kMaskedTail (AVX-512) one masked load, no scalar loop; otherwise a scalar loop after the reduce.
// gemm: Ops::kMr query rows x 2 vectors of database rows, 2 * kMr accumulators; per k step 2 loads of B and kMr
//   broadcasts of A (from memory on x86, by lane from registers on NEON). No tail: panels are padded.
// Tolerance vs the scalar oracle (the summation order differs): |error| <= ~n * eps * sum |a_i b_i|.
//
// Ops: V, kLanes, zero(), load(p), store(p, v), add(x, y), fma(x, y, acc) = acc + x * y, reduce(v) = sum of lanes;
// kMaskedTail, and when true Mask, tail_mask(count), load(p, mask) (masked-off lanes read 0 and touch no memory);
// gemm: kMr, kNr = 2 * kLanes, load_a(a) (the kMr values of one k step), broadcast<i>(load_a(a)) (row i's value in
// every lane, or a by-lane operand that fma accepts).
#pragma once
#include <cstddef>

#include "simd_common-inl.hpp"

namespace simdex::kernels {
namespace {

template <class Ops>
float dot_f32(const float* a, const float* b, std::size_t n) noexcept {
    using V = typename Ops::V;
    constexpr std::size_t w = Ops::kLanes;
    V s0 = Ops::zero(), s1 = s0, s2 = s0, s3 = s0;
    std::size_t i = 0;
    for (; i + 4 * w <= n; i += 4 * w) {
        s0 = Ops::fma(Ops::load(a + i), Ops::load(b + i), s0);
        s1 = Ops::fma(Ops::load(a + i + w), Ops::load(b + i + w), s1);
        s2 = Ops::fma(Ops::load(a + i + 2 * w), Ops::load(b + i + 2 * w), s2);
        s3 = Ops::fma(Ops::load(a + i + 3 * w), Ops::load(b + i + 3 * w), s3);
    }
    for (; i + w <= n; i += w) s0 = Ops::fma(Ops::load(a + i), Ops::load(b + i), s0);
    if constexpr (Ops::kMaskedTail) {
        if (i < n) {
            const auto m = Ops::tail_mask(n - i);
            s1 = Ops::fma(Ops::load(a + i, m), Ops::load(b + i, m), s1);
        }
        return Ops::reduce(Ops::add(Ops::add(s0, s1), Ops::add(s2, s3)));
    } else {
        float s = Ops::reduce(Ops::add(Ops::add(s0, s1), Ops::add(s2, s3)));
        for (; i < n; ++i) s += a[i] * b[i];
        return s;
    }
}

template <class Ops>
void dot_rows_f32(const float* q, const float* x, std::size_t rows, std::size_t dim, float* out) noexcept {
    using V = typename Ops::V;
    constexpr std::size_t w = Ops::kLanes;
    const std::size_t full = dim / w * w;
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float* x0 = x + r * dim;
        const float* x1 = x0 + dim;
        const float* x2 = x1 + dim;
        const float* x3 = x2 + dim;
        V s0 = Ops::zero(), s1 = s0, s2 = s0, s3 = s0;
        for (std::size_t i = 0; i < full; i += w) {
            const V qv = Ops::load(q + i);
            s0 = Ops::fma(qv, Ops::load(x0 + i), s0);
            s1 = Ops::fma(qv, Ops::load(x1 + i), s1);
            s2 = Ops::fma(qv, Ops::load(x2 + i), s2);
            s3 = Ops::fma(qv, Ops::load(x3 + i), s3);
        }
        if constexpr (Ops::kMaskedTail) {
            if (full < dim) {
                const auto m = Ops::tail_mask(dim - full);
                const V qv = Ops::load(q + full, m);
                s0 = Ops::fma(qv, Ops::load(x0 + full, m), s0);
                s1 = Ops::fma(qv, Ops::load(x1 + full, m), s1);
                s2 = Ops::fma(qv, Ops::load(x2 + full, m), s2);
                s3 = Ops::fma(qv, Ops::load(x3 + full, m), s3);
            }
            out[r] = Ops::reduce(s0);
            out[r + 1] = Ops::reduce(s1);
            out[r + 2] = Ops::reduce(s2);
            out[r + 3] = Ops::reduce(s3);
        } else {
            float t0 = Ops::reduce(s0), t1 = Ops::reduce(s1), t2 = Ops::reduce(s2), t3 = Ops::reduce(s3);
            for (std::size_t i = full; i < dim; ++i) {
                t0 += q[i] * x0[i];
                t1 += q[i] * x1[i];
                t2 += q[i] * x2[i];
                t3 += q[i] * x3[i];
            }
            out[r] = t0;
            out[r + 1] = t1;
            out[r + 2] = t2;
            out[r + 3] = t3;
        }
    }
    for (; r < rows; ++r) out[r] = dot_f32<Ops>(q, x + r * dim, dim);
}

template <class Ops>
void gemm_f32(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc, bool accumulate) noexcept {
    using V = typename Ops::V;
    constexpr std::size_t mr = Ops::kMr, w = Ops::kLanes;
    static_assert(Ops::kNr == 2 * w, "the micro-kernel reads two vectors of database rows per k step");
    V lo[mr], hi[mr];
    static_for<mr>([&](auto i) { lo[i] = hi[i] = Ops::zero(); });
    for (std::size_t k = 0; k < kc; ++k) {
        const V b0 = Ops::load(b), b1 = Ops::load(b + w);
        const auto ak = Ops::load_a(a);
        static_for<mr>([&](auto i) {
            const auto ai = Ops::template broadcast<decltype(i)::value>(ak);
            lo[i] = Ops::fma(ai, b0, lo[i]);
            hi[i] = Ops::fma(ai, b1, hi[i]);
        });
        a += mr;
        b += 2 * w;
    }
    static_for<mr>([&](auto i) { store_row<Ops>(c + i * ldc, lo[i], hi[i], accumulate); });
}

}  // namespace
}  // namespace simdex::kernels

// The exported float kernels of one ISA (the names kernels.hpp declares), from the templates above; use inside
// namespace simdex::kernels, after the ops struct.
#define SIMDEX_DEFINE_F32_KERNELS(isa, Ops)                                                                           \
    SIMDEX_KERNEL_EXPORT float dot_f32_##isa(const float* a, const float* b, std::size_t n) noexcept {                \
        return dot_f32<Ops>(a, b, n);                                                                                 \
    }                                                                                                                 \
    SIMDEX_KERNEL_EXPORT void dot_rows_f32_##isa(const float* q, const float* x, std::size_t rows, std::size_t dim,   \
                                                 float* out) noexcept {                                               \
        dot_rows_f32<Ops>(q, x, rows, dim, out);                                                                      \
    }                                                                                                                 \
    SIMDEX_KERNEL_EXPORT void gemm_f32_##isa(std::size_t kc, const float* a, const float* b, float* c,                \
                                             std::size_t ldc, bool accumulate) noexcept {                             \
        gemm_f32<Ops>(kc, a, b, c, ldc, accumulate);                                                                  \
    }
