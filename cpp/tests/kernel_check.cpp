// Stand-alone check of every compiled SIMD level against the scalar reference, without Python: used to run the
// NEON kernels under qemu-aarch64 on x86 hosts (see docs/testing.md). Exits non-zero on the first mismatch.
#include <cmath>
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
        }
        std::printf("%s: checked\n", kt.name);
    }
    std::printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
