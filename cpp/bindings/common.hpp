// What the binding files share: array types, the row-count check, Ctrl-C polling and a view of bytes-like objects.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "simdex/dispatch.hpp"
#include "simdex/thread_pool.hpp"

namespace py = pybind11;

namespace simdex::bindings {

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

using I64Array = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

inline std::size_t rows_of(const F32Array& x, std::size_t dim, const char* what) {
    if (x.ndim() != 2)
        throw std::invalid_argument(std::string(what) + ": expected a 2-D array, got " + std::to_string(x.ndim()) + "-D");
    if (static_cast<std::size_t>(x.shape(1)) != dim)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(dim) + " columns, got " +
                                    std::to_string(x.shape(1)));
    return static_cast<std::size_t>(x.shape(0));
}

// Polls Python's signal handlers from a thread that has released the GIL (Ctrl-C during a long search).
inline bool python_interrupted() {
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

void bind_flat_index(py::module_& m);  // the FlatIndex class (index_bindings.cpp)
void bind_b1_kernels(py::module_& m);  // the binary kernels (b1_bindings.cpp)

// The kernel table a kernel function's isa argument names ("": the active one).
inline const KernelTable& table_arg(const std::string& isa) {
    return isa.empty() ? active_kernels() : kernels_for(parse_isa(isa));
}

}  // namespace simdex::bindings
