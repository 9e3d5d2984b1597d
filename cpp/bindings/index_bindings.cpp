// Python bindings of FlatIndex: the exact and partitioned index, its search, training and files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "simdex/format.hpp"
#include "simdex/index.hpp"
#include "simdex/partitions.hpp"

namespace simdex::bindings {

void bind_flat_index(py::module_& m) {
    py::class_<FlatIndex>(m, "FlatIndex")
        .def(py::init([](std::size_t dim, const std::string& metric, const std::string& dtype, bool keep_originals,
                         std::size_t partitions, bool keep_int8) {
                 return std::make_unique<FlatIndex>(dim, parse_metric(metric), parse_dtype(dtype), keep_originals,
                                                    partitions, keep_int8);
             }),
             py::arg("dim"), py::arg("metric") = "cosine", py::arg("dtype") = "float32",
             py::arg("keep_originals") = false, py::arg("partitions") = 0, py::arg("keep_int8") = false)
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
        .def_property_readonly("keeps_int8", &FlatIndex::keeps_int8)
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
             "int8 calibration as a (2, dim) float32 array: offsets, then steps (binary: centre, then scale).")
        .def(
            "codes",
            [](const FlatIndex& self, I64Array ids) {
                if (ids.ndim() != 1) throw std::invalid_argument("ids: expected a 1-D array");
                // int8: (n, dim) int8 codes; binary: (n, ceil(dim / 8)) uint8 bit rows.
                const auto n = static_cast<py::ssize_t>(ids.shape(0));
                const auto cols = static_cast<py::ssize_t>(self.code_cols() ? self.code_cols() : self.dim());
                if (self.dtype() == Dtype::binary) {
                    py::array_t<std::uint8_t> out({n, cols});
                    auto* o = reinterpret_cast<std::int8_t*>(out.mutable_data());
                    {
                        py::gil_scoped_release release;
                        self.codes(ids.data(), static_cast<std::size_t>(n), o);
                    }
                    return py::object(out);
                }
                py::array_t<std::int8_t> out({n, cols});
                std::int8_t* o = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    self.codes(ids.data(), static_cast<std::size_t>(n), o);
                }
                return py::object(out);
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

}  // namespace simdex::bindings
