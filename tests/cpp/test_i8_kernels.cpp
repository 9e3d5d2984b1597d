// Standalone check of the int8 kernels of every level this CPU supports against the scalar reference:
// exact equality at the tail sizes the Python suite uses. Built with -DSIMDEX_BUILD_CPP_TESTS=ON (ctest), and
// useful where Python wheels are not at hand, e.g. AArch64 under qemu-user (see docs/int8.md).
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/kernels.hpp"

using namespace simdex;

namespace {

// The full (nq x n) score matrix through pack_panels_i8 + the micro-kernel, depth split in kc_step chunks.
std::vector<float> gemm_scores(const KernelTable& kt, const std::vector<std::int8_t>& q, std::size_t nq,
                               const std::vector<std::int8_t>& x, std::size_t n, std::size_t d, std::size_t kc_step) {
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

}  // namespace

int main() {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> code(-127, 127);
    auto codes = [&](std::size_t n) {
        std::vector<std::int8_t> v(n);
        for (auto& c : v) c = static_cast<std::int8_t>(code(rng));
        return v;
    };
    const KernelTable& ref = kernels_for(Isa::scalar);
    int failures = 0, checks = 0;
    for (Isa isa : supported_isas()) {
        const KernelTable& kt = kernels_for(isa);
        for (std::size_t n : {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 64, 97, 384, 768, 1023}) {
            const auto a = codes(n), b = codes(n);
            ++checks;
            if (kt.dot_i8(a.data(), b.data(), n) != ref.dot_i8(a.data(), b.data(), n)) {
                std::printf("FAIL dot_i8 %s n=%zu\n", isa_name(isa), n);
                ++failures;
            }
            const std::size_t rows = 13, nq = 29;
            const auto x = codes(rows * n), q = codes(nq * n);
            std::vector<float> got(rows), want(rows);
            kt.dot_rows_i8(a.data(), x.data(), rows, n, got.data());
            ref.dot_rows_i8(a.data(), x.data(), rows, n, want.data());
            ++checks;
            if (got != want) {
                std::printf("FAIL dot_rows_i8 %s n=%zu\n", isa_name(isa), n);
                ++failures;
            }
            for (std::size_t kc : {4, 64, 1024}) {
                ++checks;
                if (gemm_scores(kt, q, nq, x, rows, n, kc) != gemm_scores(ref, q, nq, x, rows, n, kc)) {
                    std::printf("FAIL gemm_i8 %s n=%zu kc=%zu\n", isa_name(isa), n, kc);
                    ++failures;
                }
            }
        }
        std::printf("%s (int8 kernels: %s) checked\n", isa_name(isa), kt.i8_name);
    }
    std::printf("%d of %d checks failed\n", failures, checks);
    return failures ? 1 : 0;
}
