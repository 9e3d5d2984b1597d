// The module: kernels, transforms and helpers; the index classes are bound in index_bindings.cpp and the binary
// kernels in b1_bindings.cpp. Inputs arrive already validated and converted by the Python layer
// (python/simdex/_index.py); here shapes are checked again, outputs are allocated as NumPy arrays first, and
// the GIL is released around all C++ work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>

#include "simdex/dispatch.hpp"
#include "simdex/format.hpp"
#include "simdex/index.hpp"
#include "simdex/partitions.hpp"
#include "simdex/project.hpp"
#include "simdex/thread_pool.hpp"
#include "common.hpp"

using namespace simdex;
using namespace simdex::bindings;

#define SIMDEX_STR2(x) #x
#define SIMDEX_STR(x) SIMDEX_STR2(x)

namespace {

using I8Array = py::array_t<std::int8_t, py::array::c_style>;

// The int8 kernels take codes in [-127, 127]; -128 would break the AVX2 sign trick and the VNNI bias.
void check_codes(const I8Array& x, const char* what) {
    const std::int8_t* p = x.data();
    for (py::ssize_t i = 0; i < x.size(); ++i)
        if (p[i] == -128)
            throw std::invalid_argument(std::string(what) +
                                        ": int8 codes must be in [-127, 127], got -128 at flat index " +
                                        std::to_string(i));
}

std::size_t rows_of_i8(const I8Array& x, std::size_t dim, const char* what) {
    if (x.ndim() != 2)
        throw std::invalid_argument(std::string(what) + ": expected a 2-D array, got " + std::to_string(x.ndim()) +
                                    "-D");
    if (static_cast<std::size_t>(x.shape(1)) != dim)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(dim) + " columns, got " +
                                    std::to_string(x.shape(1)));
    check_codes(x, what);
    return static_cast<std::size_t>(x.shape(0));
}

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

py::array_t<double> square_f64(std::size_t d) {
    return py::array_t<double>({static_cast<py::ssize_t>(d), static_cast<py::ssize_t>(d)});
}

void check_size(const py::array& a, std::size_t want, const char* what) {
    if (static_cast<std::size_t>(a.size()) != want)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(want) + " values, got " +
                                    std::to_string(a.size()));
}

py::list isa_list(const std::vector<Isa>& isas) {
    py::list out;
    for (Isa i : isas) out.append(isa_name(i));
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "simdex C++ core: SIMD kernels, exact search, top-k";
    // File-system errors become OSError with errno set, like Python's own I/O.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::system_error& e) {
            PyErr_SetObject(PyExc_OSError, py::make_tuple(e.code().value(), e.what()).ptr());
        }
    });
    // Defined once here; simdex.FormatError is this class.
    auto& format_error = py::register_exception<FormatError>(m, "FormatError", PyExc_ValueError);
    format_error.attr("__module__") = "simdex";
    format_error.doc() = "An index file (or buffer) that is damaged, truncated, not a simdex index, or from a newer "
                         "format version. A ValueError; the message says what was expected and what was found.";
    m.attr("__version__") = SIMDEX_STR(VERSION_INFO);

    m.def(
        "crc32c",
        [](const py::object& buf, std::uint32_t crc, bool portable) {
            ByteView v(buf);
            py::gil_scoped_release release;
            return portable ? format::crc32c_portable(v.data(), v.size(), crc) : format::crc32c(v.data(), v.size(), crc);
        },
        py::arg("data"), py::arg("crc") = 0, py::arg("portable") = false,
        "CRC32C of a bytes-like object, as index files use it (for tests and tools).");
    m.def("crc32c_hardware", &format::crc32c_hardware, "True when CRC32C uses the CPU's crc32 instruction.");

    m.def(
        "simd_info",
        [] {
            py::dict d;
            d["compiled"] = isa_list(compiled_isas());
            d["supported"] = isa_list(supported_isas());
            d["active"] = isa_name(active_kernels().isa);
            d["int8"] = active_kernels().i8_name;
            d["binary"] = active_kernels().b1_name;
            d["note"] = dispatch_note();
            return d;
        },
        "SIMD levels compiled into this build, supported by this CPU, and active now; 'int8' names the int8\n"
        "kernels the active level runs, 'binary' the 1-bit kernels.");
    m.def(
        "set_simd", [](const std::string& isa) { set_active_isa(parse_isa(isa)); }, py::arg("isa"),
        "Selects the SIMD level used from now on (for tests and benchmarks).");
    m.def("amx_bf16_usable", &amx_bf16_usable,
          "True when PCA can accumulate its covariance with bf16 products on AMX tiles here and now.");
    m.def("get_num_threads", [] { return num_threads(); }, "Threads used by heavy calls.");
    m.def(
        "set_num_threads", [](std::size_t n) { set_num_threads(n); }, py::arg("n"),
        "Sets the threads used by heavy calls; 0 means all cores this process may use.");

    // Kernel entry points, for tests that compare every level with the scalar reference.
    m.def(
        "dot_f32",
        [](F32Array a, F32Array b, const std::string& isa) {
            if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != b.shape(0))
                throw std::invalid_argument("dot_f32: expected two 1-D arrays of the same length");
            const KernelTable& kt = table_arg(isa);
            py::gil_scoped_release release;
            return kt.dot_f32(a.data(), b.data(), static_cast<std::size_t>(a.shape(0)));
        },
        py::arg("a"), py::arg("b"), py::arg("isa") = "");
    m.def(
        "dot_rows_f32",
        [](F32Array q, F32Array x, const std::string& isa) {
            if (q.ndim() != 1) throw std::invalid_argument("dot_rows_f32: q must be 1-D");
            const std::size_t d = static_cast<std::size_t>(q.shape(0)), n = rows_of(x, d, "x");
            const KernelTable& kt = table_arg(isa);
            py::array_t<float> out(static_cast<py::ssize_t>(n));
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            kt.dot_rows_f32(q.data(), x.data(), n, d, o);
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("isa") = "");
    m.def(
        "gemm_scores_f32",
        [](F32Array q, F32Array x, const std::string& isa) {
            // Full (nq x n) score matrix through the packed micro-kernel, with the depth split like search does.
            if (q.ndim() != 2) throw std::invalid_argument("gemm_scores_f32: q must be 2-D");
            const std::size_t d = static_cast<std::size_t>(q.shape(1)), nq = static_cast<std::size_t>(q.shape(0));
            const std::size_t n = rows_of(x, d, "x");
            const KernelTable& kt = table_arg(isa);
            const std::size_t mr = kt.gemm_mr, nr = kt.gemm_nr, qp = (nq + mr - 1) / mr, xp = (n + nr - 1) / nr;
            py::array_t<float> out({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(n)});
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            FloatBuffer a(qp * mr * d), b(xp * nr * d), c(qp * mr * xp * nr);
            kernels::pack_panels(q.data(), nq, d, mr, a.data());
            kt.pack_nr_f32(x.data(), n, d, b.data());
            const std::size_t ldc = xp * nr, kc_step = 64;
            for (std::size_t k0 = 0; k0 < d; k0 += kc_step)
                for (std::size_t i = 0; i < qp; ++i)
                    for (std::size_t j = 0; j < xp; ++j)
                        kt.gemm_f32(std::min(kc_step, d - k0), a.data() + i * mr * d + k0 * mr,
                                    b.data() + j * nr * d + k0 * nr, c.data() + i * mr * ldc + j * nr, ldc, k0 > 0);
            for (std::size_t i = 0; i < nq; ++i)
                for (std::size_t j = 0; j < n; ++j) o[i * n + j] = c[i * ldc + j];
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("isa") = "");
    m.def(
        "pack_nr_f32",
        [](F32Array x, const std::string& isa) {
            // The database-side panel layout of the micro-kernel: (panels, dim, nr), zero-padded rows.
            if (x.ndim() != 2) throw std::invalid_argument("pack_nr_f32: x must be 2-D");
            const std::size_t n = static_cast<std::size_t>(x.shape(0)), d = static_cast<std::size_t>(x.shape(1));
            const KernelTable& kt = table_arg(isa);
            const std::size_t nr = kt.gemm_nr, panels = (n + nr - 1) / nr;
            py::array_t<float> out({static_cast<py::ssize_t>(panels), static_cast<py::ssize_t>(d),
                                    static_cast<py::ssize_t>(nr)});
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            kt.pack_nr_f32(x.data(), n, d, o);
            return out;
        },
        py::arg("x"), py::arg("isa") = "");
    m.def(
        "select_ge_f32",
        [](F32Array s, float t, const std::string& isa) {
            if (s.ndim() != 1) throw std::invalid_argument("select_ge_f32: s must be 1-D");
            const std::size_t n = static_cast<std::size_t>(s.shape(0));
            const KernelTable& kt = table_arg(isa);
            std::vector<std::uint32_t> idx(n);
            std::size_t count;
            {
                py::gil_scoped_release release;
                count = kt.select_ge_f32(s.data(), n, t, idx.data());
            }
            py::array_t<std::int64_t> out(static_cast<py::ssize_t>(count));
            for (std::size_t i = 0; i < count; ++i) out.mutable_data()[i] = idx[i];
            return out;
        },
        py::arg("s"), py::arg("t"), py::arg("isa") = "");

    py::class_<MomentAccumulator>(m, "MomentAccumulator",
                                  "Count, mean and scatter of float32 rows, accumulated over batches in double.")
        .def(py::init<std::size_t, bool>(), py::arg("dim"), py::arg("bf16") = false)
        .def_property_readonly("dim", &MomentAccumulator::dim)
        .def_property_readonly("bf16", &MomentAccumulator::bf16)
        .def_property_readonly("count", &MomentAccumulator::count)
        .def(
            "add",
            [](MomentAccumulator& self, F32Array x) {
                const std::size_t n = rows_of(x, self.dim(), "x");
                with_interrupts([&] {
                    py::gil_scoped_release release;
                    self.add(x.data(), n, python_interrupted);
                });
            },
            py::arg("x"))
        .def("reset", &MomentAccumulator::reset)
        .def("mean",
             [](const MomentAccumulator& self) {
                 py::array_t<double> out(static_cast<py::ssize_t>(self.dim()));
                 self.mean(out.mutable_data());
                 return out;
             })
        .def("scatter",
             [](const MomentAccumulator& self) {
                 auto out = square_f64(self.dim());
                 double* o = out.mutable_data();
                 py::gil_scoped_release release;
                 self.scatter(o);
                 return out;
             })
        .def("second_moment",
             [](const MomentAccumulator& self) {
                 auto out = square_f64(self.dim());
                 double* o = out.mutable_data();
                 py::gil_scoped_release release;
                 self.second_moment(o);
                 return out;
             })
        .def("get_state",
             [](const MomentAccumulator& self) {
                 const std::size_t d = self.dim();
                 py::array_t<float> shift(static_cast<py::ssize_t>(d));
                 py::array_t<double> sum(static_cast<py::ssize_t>(d));
                 auto scatter = square_f64(d);
                 std::copy(self.shift().begin(), self.shift().end(), shift.mutable_data());
                 std::copy(self.shifted_sum().begin(), self.shifted_sum().end(), sum.mutable_data());
                 std::copy(self.shifted_scatter().begin(), self.shifted_scatter().end(), scatter.mutable_data());
                 return py::make_tuple(self.count(), shift, sum, scatter);
             })
        .def(
            "set_state",
            [](MomentAccumulator& self, std::size_t count, F32Array shift, F64Array sum, F64Array scatter) {
                const std::size_t d = self.dim();
                check_size(shift, d, "shift");
                check_size(sum, d, "sum");
                check_size(scatter, d * d, "scatter");
                self.restore(count, shift.data(), sum.data(), scatter.data());
            },
            py::arg("count"), py::arg("shift"), py::arg("sum"), py::arg("scatter"));

    py::class_<LinearProjection>(m, "LinearProjection", "y = x W^T - bias on the blocked SIMD GEMM.")
        .def(py::init([](F32Array w, std::optional<F32Array> bias) {
                 if (w.ndim() != 2) throw std::invalid_argument("matrix: expected a 2-D array");
                 const std::size_t out = static_cast<std::size_t>(w.shape(0)), in = static_cast<std::size_t>(w.shape(1));
                 if (bias) check_size(*bias, out, "bias");
                 return std::make_unique<LinearProjection>(w.data(), out, in, bias ? bias->data() : nullptr);
             }),
             py::arg("matrix"), py::arg("bias") = py::none())
        .def_property_readonly("in_dim", &LinearProjection::in_dim)
        .def_property_readonly("out_dim", &LinearProjection::out_dim)
        .def(
            "apply",
            [](const LinearProjection& self, F32Array x) {
                const std::size_t n = rows_of(x, self.in_dim(), "x");
                py::array_t<float> y({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(self.out_dim())});
                float* o = y.mutable_data();
                with_interrupts([&] {
                    py::gil_scoped_release release;
                    self.apply(x.data(), n, o, python_interrupted);
                });
                return y;
            },
            py::arg("x"));
    m.def(
        "dot_i8",
        [](I8Array a, I8Array b, const std::string& isa) {
            if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != b.shape(0))
                throw std::invalid_argument("dot_i8: expected two 1-D int8 arrays of the same length");
            check_codes(a, "a");
            check_codes(b, "b");
            const KernelTable& kt = table_arg(isa);
            py::gil_scoped_release release;
            return kt.dot_i8(a.data(), b.data(), static_cast<std::size_t>(a.shape(0)));
        },
        py::arg("a"), py::arg("b"), py::arg("isa") = "");
    m.def(
        "dot_rows_i8",
        [](I8Array q, I8Array x, const std::string& isa) {
            if (q.ndim() != 1) throw std::invalid_argument("dot_rows_i8: q must be 1-D");
            check_codes(q, "q");
            const std::size_t d = static_cast<std::size_t>(q.shape(0)), n = rows_of_i8(x, d, "x");
            const KernelTable& kt = table_arg(isa);
            py::array_t<float> out(static_cast<py::ssize_t>(n));
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            kt.dot_rows_i8(q.data(), x.data(), n, d, o);
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("isa") = "");
    m.def(
        "gemm_scores_i8",
        [](I8Array q, I8Array x, std::size_t kc_step, const std::string& isa) {
            // Full (nq x n) score matrix through the packed int8 micro-kernel, the depth split in kc_step chunks.
            if (q.ndim() != 2) throw std::invalid_argument("gemm_scores_i8: q must be 2-D");
            if (kc_step == 0 || kc_step % 4 != 0)
                throw std::invalid_argument("gemm_scores_i8: kc_step must be a positive multiple of 4, got " +
                                            std::to_string(kc_step));
            check_codes(q, "q");
            const std::size_t d = static_cast<std::size_t>(q.shape(1)), nq = static_cast<std::size_t>(q.shape(0));
            const std::size_t n = rows_of_i8(x, d, "x");
            const KernelTable& kt = table_arg(isa);
            const std::size_t mr = kt.gemm_i8_mr, nr = kt.gemm_i8_nr, qp = (nq + mr - 1) / mr, xp = (n + nr - 1) / nr;
            const std::size_t depth = kernels::i8_depth(d);
            py::array_t<float> out({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(n)});
            float* o = out.mutable_data();
            py::gil_scoped_release release;
            std::vector<std::int8_t> a(qp * mr * depth), b(xp * nr * depth);
            std::vector<float> c(qp * mr * xp * nr);
            kernels::pack_panels_i8(q.data(), nq, d, mr, false, a.data());
            kernels::pack_panels_i8(x.data(), n, d, nr, kt.gemm_i8_flip, b.data());
            const std::size_t ldc = xp * nr;
            std::vector<std::int32_t> bias(mr);
            for (std::size_t k0 = 0; k0 < depth; k0 += kc_step) {
                const std::size_t kc = std::min(kc_step, depth - k0);
                for (std::size_t i = 0; i < qp; ++i) {
                    const std::int8_t* ap = a.data() + i * mr * depth + k0 * mr;
                    for (std::size_t r = 0; r < mr; ++r) {
                        std::int32_t sum = 0;
                        for (std::size_t k = 0; k < kc; ++k) sum += ap[(k / 4) * mr * 4 + r * 4 + k % 4];
                        bias[r] = sum * 128;
                    }
                    for (std::size_t j = 0; j < xp; ++j)
                        kt.gemm_i8(kc, ap, b.data() + j * nr * depth + k0 * nr, bias.data(),
                                   c.data() + i * mr * ldc + j * nr, ldc, k0 > 0);
                }
            }
            for (std::size_t i = 0; i < nq; ++i)
                for (std::size_t j = 0; j < n; ++j) o[i * n + j] = c[i * ldc + j];
            return out;
        },
        py::arg("q"), py::arg("x"), py::arg("kc_step") = 64, py::arg("isa") = "");
    bind_b1_kernels(m);
    m.def(
        "read_bandwidth",
        [](std::size_t nbytes, int repeats) {
            // Streams a buffer with the active kernel on all threads, like a single-query scan does, and returns
            // the best bytes/second seen: the floor the benchmarks compare a scan against.
            const std::size_t n = nbytes / sizeof(float), chunk = std::size_t(1) << 20;
            FloatBuffer buf(n, 1.0f);
            const KernelTable& kt = active_kernels();
            const std::size_t workers = num_threads(), tasks = (n + chunk - 1) / chunk;
            std::vector<float> sink(workers);
            double best = 0;
            py::gil_scoped_release release;
            for (int r = 0; r < repeats; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                parallel_for(tasks, workers, [&](std::size_t t, std::size_t w) {
                    const std::size_t b = t * chunk, len = std::min(chunk, n - b);
                    sink[w] += kt.dot_f32(buf.data() + b, buf.data() + b, len);
                });
                const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                best = std::max(best, static_cast<double>(n * sizeof(float)) / dt);
            }
            return best;
        },
        py::arg("nbytes") = std::size_t(1) << 30, py::arg("repeats") = 5,
        "Measured RAM read bandwidth in bytes/s with all threads (a benchmark helper).");

    bind_flat_index(m);
}
