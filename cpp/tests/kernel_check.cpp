// Stand-alone check of every compiled SIMD level against the scalar reference, without Python: used to run the
// NEON kernels under qemu-aarch64 on x86 hosts (see docs/testing.md). Exits non-zero on the first mismatch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/kernels.hpp"

using namespace simdex;

namespace {

int failures = 0;

void expect(bool ok, const char* what, const char* isa, std::size_t n) {
    if (!ok) {
        std::printf("FAIL %s isa=%s n=%zu\n", what, isa, n);
        ++failures;
    }
}

// The full (nq x n) int8 score matrix through pack_panels_i8 + the micro-kernel, the depth split in kc_step
// chunks with the per-chunk bias the flipped (vpdpbusd) kernels subtract, as the batch scan calls it.
std::vector<float> gemm_scores_i8(const KernelTable& kt, const std::vector<std::int8_t>& q, std::size_t nq,
                                  const std::vector<std::int8_t>& x, std::size_t n, std::size_t d,
                                  std::size_t kc_step) {
    const std::size_t mr = kt.gemm_i8_mr, nr = kt.gemm_i8_nr, qp = (nq + mr - 1) / mr, xp = (n + nr - 1) / nr;
    const std::size_t depth = kernels::i8_depth(d), ldc = xp * nr;
    std::vector<std::int8_t> a(qp * mr * depth), b(xp * nr * depth);
    std::vector<float> c(qp * mr * ldc), out(nq * n);
    kernels::pack_panels_i8(q.data(), nq, d, mr, false, a.data());
    kernels::pack_panels_i8(x.data(), n, d, nr, kt.gemm_i8_flip, b.data());
    std::vector<std::int32_t> bias(mr);
    for (std::size_t k0 = 0; k0 < depth; k0 += kc_step) {
        const std::size_t kc = std::min(kc_step, depth - k0);
        for (std::size_t i = 0; i < qp; ++i) {
            const std::int8_t* ap = a.data() + i * mr * depth + k0 * mr;
            for (std::size_t r = 0; r < mr; ++r) {
                std::int32_t s = 0;
                for (std::size_t k = 0; k < kc; ++k) s += ap[(k / 4) * mr * 4 + r * 4 + k % 4];
                bias[r] = s * 128;
            }
            for (std::size_t j = 0; j < xp; ++j)
                kt.gemm_i8(kc, ap, b.data() + j * nr * depth + k0 * nr, bias.data(), c.data() + i * mr * ldc + j * nr,
                           ldc, k0 > 0);
        }
    }
    for (std::size_t i = 0; i < nq; ++i)
        for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
    return out;
}

// int8 kernels must equal the scalar reference exactly (which is checked against a 64-bit sum here).
void check_i8(const KernelTable& kt, const KernelTable& ref, std::size_t n, std::mt19937& gen) {
    std::uniform_int_distribution<int> code(-127, 127);
    auto codes = [&](std::size_t count) {
        std::vector<std::int8_t> v(count);
        for (auto& c : v) c = static_cast<std::int8_t>(code(gen));
        return v;
    };
    const auto a = codes(n), b = codes(n);
    long long wide = 0;
    for (std::size_t i = 0; i < n; ++i) wide += static_cast<long long>(a[i]) * b[i];
    expect(ref.dot_i8(a.data(), b.data(), n) == wide, "dot_i8_scalar", kt.name, n);
    expect(kt.dot_i8(a.data(), b.data(), n) == ref.dot_i8(a.data(), b.data(), n), "dot_i8", kt.name, n);
    const std::size_t rows = 13, nq = 29;
    const auto x = codes(rows * n), q = codes(nq * n);
    std::vector<float> got(rows), want(rows);
    kt.dot_rows_i8(a.data(), x.data(), rows, n, got.data());
    ref.dot_rows_i8(a.data(), x.data(), rows, n, want.data());
    expect(got == want, "dot_rows_i8", kt.name, n);
    for (std::size_t kc : {4, 64, 1024})
        expect(gemm_scores_i8(kt, q, nq, x, rows, n, kc) == gemm_scores_i8(ref, q, nq, x, rows, n, kc), "gemm_i8",
               kt.name, n);
}

// Binary kernels: Hamming equals the scalar reference exactly; the asymmetric score within float rounding of it.
// n is the number of dimensions (bits); codes are n / 8 rounded up bytes with the bits past n cleared.
void check_b1(const KernelTable& kt, const KernelTable& ref, std::size_t n, std::mt19937& gen) {
    const std::size_t nb = kernels::b1_bytes(n), rows = 13;
    std::uniform_int_distribution<int> byte(0, 255);
    std::normal_distribution<float> normal;
    std::vector<std::uint8_t> x(rows * nb);
    for (auto& c : x) c = static_cast<std::uint8_t>(byte(gen));
    if (n % 8)
        for (std::size_t r = 0; r < rows; ++r) x[r * nb + nb - 1] &= static_cast<std::uint8_t>((1u << (n % 8)) - 1);
    std::vector<float> q(n), got(rows), want(rows);
    double mag = 0;
    for (float& f : q) {
        f = normal(gen);
        mag += std::fabs(f);
    }
    std::vector<std::int16_t> w(n);
    std::uniform_int_distribution<int> weight(-kernels::kB1WeightMax, kernels::kB1WeightMax);
    for (auto& v : w) v = static_cast<std::int16_t>(weight(gen));
    kt.sums_rows_b1(w.data(), x.data(), rows, n, got.data());
    ref.sums_rows_b1(w.data(), x.data(), rows, n, want.data());
    expect(got == want, "sums_rows_b1", kt.name, n);
    const float one = ref.dot_b1(q.data(), x.data(), n);
    expect(std::fabs(kt.dot_b1(q.data(), x.data(), n) - one) <= 8.0 * n * 1.2e-7 * mag + 1e-30, "dot_b1", kt.name,
           n);
    std::vector<std::uint32_t> h1(rows), h2(rows);
    kt.hamming_rows_b1(x.data(), x.data(), rows, nb, h1.data());
    ref.hamming_rows_b1(x.data(), x.data(), rows, nb, h2.data());
    expect(h1 == h2, "hamming_rows_b1", kt.name, n);
    expect(kt.hamming_b1(x.data(), x.data() + nb, nb) == h2[1], "hamming_b1", kt.name, n);
}

}  // namespace

int main() {
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    const std::size_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 64, 97, 384, 768, 1023};
    const KernelTable& ref = kernels_for(Isa::scalar);
    for (Isa isa : supported_isas()) {
        const KernelTable& kt = kernels_for(isa);
        for (std::size_t n : sizes) {
            std::vector<float> a(n), b(n), x(9 * n);
            for (auto* v : {&a, &b, &x})
                for (float& f : *v) f = normal(gen);
            double mag = 0;
            for (std::size_t i = 0; i < n; ++i) mag += std::fabs(a[i] * b[i]);
            const double tol = 8.0 * n * 1.2e-7 * mag + 1e-30;
            expect(std::fabs(kt.dot_f32(a.data(), b.data(), n) - ref.dot_f32(a.data(), b.data(), n)) <= tol, "dot_f32",
                   kt.name, n);
            std::vector<float> r1(9), r2(9);
            kt.dot_rows_f32(a.data(), x.data(), 9, n, r1.data());
            ref.dot_rows_f32(a.data(), x.data(), 9, n, r2.data());
            for (std::size_t r = 0; r < 9; ++r) {
                double m = 0;
                for (std::size_t i = 0; i < n; ++i) m += std::fabs(a[i] * x[r * n + i]);
                expect(std::fabs(r1[r] - r2[r]) <= 8.0 * n * 1.2e-7 * m + 1e-30, "dot_rows_f32", kt.name, n);
            }
            // Micro-kernel on packed panels against a direct double sum.
            const std::size_t mr = kt.gemm_mr, nr = kt.gemm_nr;
            std::vector<float> q(mr * n), pa(mr * n), pb(nr * n), c(mr * nr), db(nr * n);
            for (float& f : q) f = normal(gen);
            for (float& f : db) f = normal(gen);
            kernels::pack_panels(q.data(), mr, n, mr, pa.data());
            kt.pack_nr_f32(db.data(), nr, n, pb.data());
            std::vector<float> pb_ref(nr * n);
            kernels::pack_panels(db.data(), nr, n, nr, pb_ref.data());
            expect(pb == pb_ref, "pack_nr_f32", kt.name, n);
            kt.gemm_f32(n, pa.data(), pb.data(), c.data(), nr, false);
            for (std::size_t i = 0; i < mr; ++i)
                for (std::size_t j = 0; j < nr; ++j) {
                    double s = 0, m = 0;
                    for (std::size_t k = 0; k < n; ++k) {
                        s += double(q[i * n + k]) * db[j * n + k];
                        m += std::fabs(double(q[i * n + k]) * db[j * n + k]);
                    }
                    expect(std::fabs(c[i * nr + j] - s) <= 8.0 * n * 1.2e-7 * m + 1e-30, "gemm_f32", kt.name, n);
                }
            std::vector<std::uint32_t> i1(9 * n), i2(9 * n);
            const std::size_t c1 = kt.select_ge_f32(x.data(), 9 * n, 0.5f, i1.data());
            const std::size_t c2 = ref.select_ge_f32(x.data(), 9 * n, 0.5f, i2.data());
            expect(c1 == c2 && std::equal(i1.begin(), i1.begin() + c1, i2.begin()), "select_ge_f32", kt.name, n);
            check_i8(kt, ref, n, gen);
            for (std::size_t bits : {n, 8 * n, 8 * n + 3}) check_b1(kt, ref, bits, gen);
        }
        std::printf("%s: checked (int8 kernels: %s, binary kernels: %s)\n", kt.name, kt.i8_name, kt.b1_name);
    }
    std::printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
