// The binary (1-bit) kernels (kernels.hpp: bit d % 8 of byte d / 8) as Python functions, for tests and
// benchmarks; isa picks a level ("" the active one).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "simdex/dispatch.hpp"
#include "simdex/kernels.hpp"

namespace simdex::bindings {

void bind_b1_kernels(py::module_& m) {
    using namespace simdex;
    using U8Array = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;
    auto b1_rows = [](const U8Array& x, std::size_t nbytes, const char* what) {
        if (x.ndim() != 2 || static_cast<std::size_t>(x.shape(1)) != nbytes)
            throw std::invalid_argument(std::string(what) + ": expected a 2-D uint8 array with " +
                                        std::to_string(nbytes) + " columns");
        return static_cast<std::size_t>(x.shape(0));
    };
    m.def(
        "hamming_b1",
        [](U8Array a, U8Array b, const std::string& isa) {
            if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != b.shape(0))
                throw std::invalid_argument("hamming_b1: expected two 1-D uint8 arrays of the same length");
            const KernelTable& kt = table_arg(isa);
            py::gil_scoped_release release;
            return kt.hamming_b1(a.data(), b.data(), static_cast<std::size_t>(a.shape(0)));
        },
        py::arg("a"), py::arg("b"), py::arg("isa") = "");
    m.def(
        "hamming_rows_b1",
        [b1_rows](U8Array q, U8Array x, const std::string& isa) {
            if (q.ndim() != 1) throw std::invalid_argument("hamming_rows_b1: q must be 1-D");
            const std::size_t nb = static_cast<std::size_t>(q.shape(0)), n = b1_rows(x, nb, "x");
            const KernelTable& kt = table_arg(isa);
            py::array_t<std::uint32_t> out(static_cast<py::ssize_t>(n));
            std::uint32_t* o = out.mutable_data();
            py::gil_scoped_release release;
            kt.hamming_rows_b1(q.data(), x.data(), n, nb, o);
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("isa") = "");
    m.def(
        "hamming_select_b1",
        [b1_rows](U8Array q, U8Array x, std::size_t dim, std::uint32_t thr, const std::string& isa) {
            // Every query against every row through pack_panels_b1 and the panel kernel, queries in blocks of
            // kernels::kHammingSelectQueries: per query, (rows, distances) of the rows within thr, in row order.
            const std::size_t nb = kernels::b1_bytes(dim), words = kernels::b1_words(dim);
            if (q.ndim() != 2 || static_cast<std::size_t>(q.shape(1)) != nb)
                throw std::invalid_argument("hamming_select_b1: q must be (nq, ceil(dim / 8)) uint8");
            const std::size_t nq = static_cast<std::size_t>(q.shape(0)), n = b1_rows(x, nb, "x");
            const KernelTable& kt = table_arg(isa);
            const std::size_t panels = (n + 7) / 8;
            std::vector<std::uint64_t> packed(panels * words * 8), qs(nq * words, 0);
            kernels::pack_panels_b1(x.data(), n, dim, packed.data());
            for (std::size_t i = 0; i < nq; ++i)  // a query's words are its bytes, zero past them (little-endian)
                std::memcpy(qs.data() + i * words, q.data() + i * nb, nb);
            constexpr std::size_t kQ = kernels::kHammingSelectQueries;
            std::vector<std::uint32_t> idx(kQ * panels * 8);
            std::vector<std::uint16_t> dist(kQ * panels * 8);
            py::list out;
            for (std::size_t q0 = 0; q0 < nq; q0 += kQ) {
                const std::size_t m = std::min(kQ, nq - q0);
                std::uint32_t* ip[kQ];
                std::uint16_t* dp[kQ];
                std::uint32_t th[kQ];
                std::size_t counts[kQ];
                for (std::size_t j = 0; j < kQ; ++j) {
                    ip[j] = idx.data() + j * panels * 8;
                    dp[j] = dist.data() + j * panels * 8;
                    th[j] = thr;
                }
                kt.hamming_select_b1(qs.data() + q0 * words, m, words, packed.data(), panels, th, ip, dp, counts);
                for (std::size_t j = 0; j < m; ++j) {  // padding rows of the last panel are dropped, as the scan does
                    std::vector<std::uint32_t> r;
                    std::vector<std::uint16_t> d;
                    for (std::size_t c = 0; c < counts[j]; ++c)
                        if (ip[j][c] < n) {
                            r.push_back(ip[j][c]);
                            d.push_back(dp[j][c]);
                        }
                    out.append(py::make_tuple(py::array_t<std::uint32_t>(r.size(), r.data()),
                                              py::array_t<std::uint16_t>(d.size(), d.data())));
                }
            }
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("dim"), py::arg("thr"), py::arg("isa") = "");
    m.def(
        "dot_b1",
        [](F32Array q, U8Array code, const std::string& isa) {
            if (q.ndim() != 1 || code.ndim() != 1 ||
                static_cast<std::size_t>(code.shape(0)) != kernels::b1_bytes(static_cast<std::size_t>(q.shape(0))))
                throw std::invalid_argument("dot_b1: expected a 1-D float query of dim d and 1-D uint8 code of "
                                            "ceil(d / 8) bytes");
            const KernelTable& kt = table_arg(isa);
            py::gil_scoped_release release;
            return kt.dot_b1(q.data(), code.data(), static_cast<std::size_t>(q.shape(0)));
        },
        py::arg("q"), py::arg("code"), py::arg("isa") = "");
    m.def(
        "sums_rows_b1",
        [b1_rows](py::array_t<std::int16_t, py::array::c_style> w, U8Array x, const std::string& isa) {
            if (w.ndim() != 1) throw std::invalid_argument("sums_rows_b1: w must be 1-D");
            const std::size_t d = static_cast<std::size_t>(w.shape(0)), n = b1_rows(x, kernels::b1_bytes(d), "x");
            for (std::size_t i = 0; i < d; ++i)
                if (w.data()[i] < -kernels::kB1WeightMax || w.data()[i] > kernels::kB1WeightMax)
                    throw std::invalid_argument("sums_rows_b1: weights must lie in -" +
                                                std::to_string(kernels::kB1WeightMax) + ".." +
                                                std::to_string(kernels::kB1WeightMax) + ", got " +
                                                std::to_string(w.data()[i]) + " at " + std::to_string(i));
            const KernelTable& kt = table_arg(isa);
            py::array_t<float> out(static_cast<py::ssize_t>(n));
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            kt.sums_rows_b1(w.data(), x.data(), n, d, o);
            return out;
        },
        py::arg("w"), py::arg("x"), py::arg("isa") = "");
}

}  // namespace simdex::bindings
