// The only file that includes pybind11. Inputs arrive already validated and converted by the Python layer
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

namespace py = pybind11;
using namespace simdex;

#define SIMDEX_STR2(x) #x
#define SIMDEX_STR(x) SIMDEX_STR2(x)

namespace {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
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

std::size_t rows_of(const F32Array& x, std::size_t dim, const char* what) {
    if (x.ndim() != 2)
        throw std::invalid_argument(std::string(what) + ": expected a 2-D array, got " + std::to_string(x.ndim()) + "-D");
    if (static_cast<std::size_t>(x.shape(1)) != dim)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(dim) + " columns, got " +
                                    std::to_string(x.shape(1)));
    return static_cast<std::size_t>(x.shape(0));
}

// Polls Python's signal handlers from a thread that has released the GIL (Ctrl-C during a long search).
bool python_interrupted() {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

template <class F>
auto with_interrupts(F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Interrupted&) {
        throw py::error_already_set();  // carries the KeyboardInterrupt that PyErr_CheckSignals raised
    }
}

const KernelTable& table_arg(const std::string& isa) {
    return isa.empty() ? active_kernels() : kernels_for(parse_isa(isa));
}

// A contiguous read-only view of any bytes-like object (bytes, bytearray, memoryview, mmap, NumPy array).
class ByteView {
  public:
    explicit ByteView(const py::object& obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
    }
    ~ByteView() { PyBuffer_Release(&view_); }
    ByteView(const ByteView&) = delete;
    ByteView& operator=(const ByteView&) = delete;
    const void* data() const { return view_.buf; }
    std::size_t size() const { return static_cast<std::size_t>(view_.len); }

  private:
    Py_buffer view_{};
};

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
            d["note"] = dispatch_note();
            return d;
        },
        "SIMD levels compiled into this build, supported by this CPU, and active now; 'int8' names the int8\n"
        "kernels the active level runs.");
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

    py::class_<FlatIndex>(m, "FlatIndex")
        .def(py::init([](std::size_t dim, const std::string& metric, const std::string& dtype, bool keep_originals,
                         std::size_t partitions) {
                 return std::make_unique<FlatIndex>(dim, parse_metric(metric), parse_dtype(dtype), keep_originals,
                                                    partitions);
             }),
             py::arg("dim"), py::arg("metric") = "cosine", py::arg("dtype") = "float32",
             py::arg("keep_originals") = false, py::arg("partitions") = 0)
        .def_property_readonly("partitions", &FlatIndex::partitions)
        .def_property_readonly("partitions_trained", py::cpp_function(&FlatIndex::partitions_trained,
                                                                      py::call_guard<py::gil_scoped_release>()))
        .def(
            "train_partitions",
            [](FlatIndex& self, F32Array x, std::size_t iterations, std::size_t max_rows_per_centroid,
               std::uint64_t seed, std::optional<py::function> progress) {
                const std::size_t n = rows_of(x, self.dim(), "training vectors");
                KMeansOptions opt;
                opt.iterations = iterations;
                opt.max_rows_per_centroid = max_rows_per_centroid;
                opt.seed = seed;
                if (progress)
                    opt.progress = [cb = *progress](std::size_t done, std::size_t total) {
                        py::gil_scoped_acquire gil;
                        cb(done, total);
                    };
                opt.interrupt = python_interrupted;
                with_interrupts([&] {
                    py::gil_scoped_release release;
                    self.train_partitions(x.data(), n, opt);
                });
            },
            py::arg("vectors"), py::arg("iterations") = 10, py::arg("max_rows_per_centroid") = 256,
            py::arg("seed") = 1234, py::arg("progress") = py::none(),
            "k-means centroids from the vectors; stored rows move to their nearest new centroid. progress(done, "
            "total) is called after seeding and after each iteration.")
        .def("centroids",
             [](const FlatIndex& self) {
                 std::vector<float> c;
                 {
                     py::gil_scoped_release release;
                     c = self.centroids();
                 }
                 const std::size_t rows = c.size() / self.dim();
                 py::array_t<float> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(self.dim())});
                 std::copy(c.begin(), c.end(), out.mutable_data());
                 return out;
             })
        .def("list_sizes",
             [](const FlatIndex& self) {
                 std::vector<std::uint64_t> v;
                 {
                     py::gil_scoped_release release;
                     v = self.list_sizes();
                 }
                 py::array_t<std::int64_t> out(static_cast<py::ssize_t>(v.size()));
                 std::copy(v.begin(), v.end(), out.mutable_data());
                 return out;
             })
        .def_property("nprobe",
                      py::cpp_function(&FlatIndex::default_nprobe, py::call_guard<py::gil_scoped_release>()),
                      py::cpp_function(&FlatIndex::set_default_nprobe, py::call_guard<py::gil_scoped_release>()))
        .def_property_readonly("dim", &FlatIndex::dim)
        .def_property_readonly("metric", [](const FlatIndex& self) { return metric_name(self.metric()); })
        .def_property_readonly("dtype", [](const FlatIndex& self) { return dtype_name(self.dtype()); })
        .def_property_readonly("keeps_originals", &FlatIndex::keeps_originals)
        .def_property_readonly("trained",
                               py::cpp_function(&FlatIndex::trained, py::call_guard<py::gil_scoped_release>()))
        .def(
            "train",
            [](FlatIndex& self, F32Array x) {
                const std::size_t n = rows_of(x, self.dim(), "training vectors");
                py::gil_scoped_release release;
                self.train(x.data(), n);
            },
            py::arg("vectors"))
        .def("calibration",
             [](const FlatIndex& self) {
                 std::vector<float> c;
                 {
                     py::gil_scoped_release release;
                     c = self.calibration();
                 }
                 py::array_t<float> out({py::ssize_t(2), static_cast<py::ssize_t>(self.dim())});
                 std::copy(c.begin(), c.end(), out.mutable_data());
                 return out;
             },
             "int8 calibration as a (2, dim) float32 array: offsets, then steps.")
        .def(
            "codes",
            [](const FlatIndex& self, I64Array ids) {
                if (ids.ndim() != 1) throw std::invalid_argument("ids: expected a 1-D array");
                py::array_t<std::int8_t> out(
                    {static_cast<py::ssize_t>(ids.shape(0)), static_cast<py::ssize_t>(self.dim())});
                std::int8_t* o = out.mutable_data();
                py::gil_scoped_release release;
                self.codes(ids.data(), static_cast<std::size_t>(ids.shape(0)), o);
                return out;
            },
            py::arg("ids"))
        // Everything that takes the index lock releases the GIL first: a search holding the lock may need the GIL
        // to poll for Ctrl-C, so waiting for the lock with the GIL held could deadlock.
        .def_property_readonly("next_id", py::cpp_function(&FlatIndex::next_id, py::call_guard<py::gil_scoped_release>()))
        .def_property_readonly("mapped", py::cpp_function(&FlatIndex::mapped, py::call_guard<py::gil_scoped_release>()))
        .def("__len__", &FlatIndex::size, py::call_guard<py::gil_scoped_release>())
        .def(
            "add",
            [](FlatIndex& self, F32Array x, std::optional<I64Array> ids) {
                const std::size_t n = rows_of(x, self.dim(), "vectors");
                if (ids && (ids->ndim() != 1 || static_cast<std::size_t>(ids->shape(0)) != n))
                    throw std::invalid_argument("ids: expected a 1-D array of " + std::to_string(n) + " ids");
                const std::int64_t* id = ids ? ids->data() : nullptr;
                py::gil_scoped_release release;
                return self.add(x.data(), n, id);  // the first automatic id
            },
            py::arg("vectors"), py::arg("ids") = py::none())
        .def(
            "remove",
            [](FlatIndex& self, I64Array ids) {
                if (ids.ndim() != 1) throw std::invalid_argument("ids: expected a 1-D array");
                py::gil_scoped_release release;
                return self.remove(ids.data(), static_cast<std::size_t>(ids.shape(0)));
            },
            py::arg("ids"))
        .def("reset", &FlatIndex::reset, py::call_guard<py::gil_scoped_release>())
        .def(
            "search",
            [](const FlatIndex& self, F32Array q, std::size_t k, float min_score, std::optional<I64Array> filter,
               std::size_t rescore, float max_distance, std::size_t nprobe, bool exact) -> py::tuple {
                const std::size_t nq = rows_of(q, self.dim(), "queries");
                if (k == 0) throw std::invalid_argument("k must be positive, got 0");
                py::array_t<float> scores({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
                py::array_t<std::int64_t> ids({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
                SearchParams p;
                p.k = k;
                p.min_score = min_score;
                p.max_distance = max_distance;
                p.rescore = rescore;
                p.nprobe = nprobe;
                p.exact = exact;
                py::array_t<std::uint64_t> rescored(static_cast<py::ssize_t>(exact ? nq : 0));
                if (exact) p.rescored = rescored.mutable_data();
                if (filter) {
                    if (filter->ndim() != 1) throw std::invalid_argument("filter: expected a 1-D array of ids");
                    p.has_filter = true;
                    p.filter = filter->data();
                    p.filter_size = static_cast<std::size_t>(filter->shape(0));
                }
                p.interrupt = python_interrupted;
                float* s = scores.mutable_data();
                std::int64_t* i = ids.mutable_data();
                with_interrupts([&] {
                    py::gil_scoped_release release;
                    self.search(q.data(), nq, p, s, i);
                });
                if (exact) return py::tuple(py::make_tuple(scores, ids, rescored));
                return py::tuple(py::make_tuple(scores, ids));
            },
            py::arg("queries"), py::arg("k"), py::arg("min_score") = -std::numeric_limits<float>::infinity(),
            py::arg("filter") = py::none(), py::arg("rescore") = 0,
            py::arg("max_distance") = std::numeric_limits<float>::infinity(), py::arg("nprobe") = 0,
            py::arg("exact") = false)
        .def("ids",
             [](const FlatIndex& self) {
                 std::vector<std::int64_t> v;
                 {
                     py::gil_scoped_release release;
                     v = self.ids();
                 }
                 py::array_t<std::int64_t> out(static_cast<py::ssize_t>(v.size()));
                 std::copy(v.begin(), v.end(), out.mutable_data());
                 return out;
             })
        .def("contains", &FlatIndex::contains, py::arg("id"), py::call_guard<py::gil_scoped_release>())
        .def(
            "reconstruct",
            [](const FlatIndex& self, I64Array ids) {
                if (ids.ndim() != 1) throw std::invalid_argument("ids: expected a 1-D array");
                py::array_t<float> out({static_cast<py::ssize_t>(ids.shape(0)), static_cast<py::ssize_t>(self.dim())});
                float* o = out.mutable_data();
                py::gil_scoped_release release;
                self.reconstruct(ids.data(), static_cast<std::size_t>(ids.shape(0)), o);
                return out;
            },
            py::arg("ids"))
        .def("memory_usage", &FlatIndex::memory_usage, py::call_guard<py::gil_scoped_release>())
        .def("memory_breakdown",
             [](const FlatIndex& self) {
                 MemoryUsage m;
                 {
                     py::gil_scoped_release release;
                     m = self.memory_breakdown();
                 }
                 py::dict d;
                 d["vectors"] = m.vectors;
                 d["calibration"] = m.calibration;
                 d["ids"] = m.ids;
                 d["metadata"] = m.metadata;
                 d["file_image"] = m.file_image;
                 d["partitions"] = m.partitions;
                 return d;
             })
        .def_property(
            "metadata",
            [](const FlatIndex& self) {
                std::string text;
                {
                    py::gil_scoped_release release;
                    text = self.metadata();
                }
                return text;
            },
            [](FlatIndex& self, std::string text) {
                py::gil_scoped_release release;
                self.set_metadata(std::move(text));
            })
        .def(
            "extra_sections",
            [](const FlatIndex& self) {
                std::vector<ExtraSection> v;
                {
                    py::gil_scoped_release release;
                    v = self.extra_sections();
                }
                py::list out;
                for (const ExtraSection& e : v)
                    out.append(py::make_tuple(e.name, format::dtype_name(e.dtype), e.rows, e.cols, e.required,
                                              py::bytes(reinterpret_cast<const char*>(e.data.data()), e.data.size())));
                return out;
            },
            "Sections kept with the index for the Python layer: (name, dtype, rows, cols, required, bytes) tuples.")
        .def(
            "set_extra_sections",
            [](FlatIndex& self, const py::list& items) {
                std::vector<ExtraSection> v;
                for (const py::handle& item : items) {
                    auto t = item.cast<py::tuple>();
                    if (t.size() != 6)
                        throw std::invalid_argument("expected (name, dtype, rows, cols, required, bytes) tuples");
                    ExtraSection e;
                    e.name = t[0].cast<std::string>();
                    const std::string dtype = t[1].cast<std::string>();
                    if (dtype == "bytes") e.dtype = format::DType::bytes;
                    else if (dtype == "float32") e.dtype = format::DType::f32;
                    else if (dtype == "float64") e.dtype = format::DType::f64;
                    else throw std::invalid_argument("section dtype: expected bytes, float32 or float64, got " + dtype);
                    e.rows = t[2].cast<std::uint64_t>();
                    e.cols = t[3].cast<std::uint64_t>();
                    e.required = t[4].cast<bool>();
                    const std::string data = t[5].cast<std::string>();
                    e.data.assign(data.begin(), data.end());
                    v.push_back(std::move(e));
                }
                py::gil_scoped_release release;
                self.set_extra_sections(std::move(v));
            },
            py::arg("sections"))
        .def("save", &FlatIndex::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
        .def(
            "to_bytes",
            [](const FlatIndex& self) {
                std::vector<std::uint8_t> b;
                {
                    py::gil_scoped_release release;
                    b = self.to_bytes();
                }
                return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
            },
            "The index file's bytes (what save writes), for load_bytes and tests.")
        .def_static(
            "load",
            [](const std::string& path, bool mmap) {
                py::gil_scoped_release release;
                return std::make_unique<FlatIndex>(FlatIndex::load(path, mmap));
            },
            py::arg("path"), py::arg("mmap") = false)
        .def_static(
            "load_bytes",
            [](const py::object& buf) {
                ByteView v(buf);
                py::gil_scoped_release release;  // the exporter cannot resize or free the buffer while viewed
                return std::make_unique<FlatIndex>(FlatIndex::load_bytes(v.data(), v.size()));
            },
            py::arg("buffer"));
}
