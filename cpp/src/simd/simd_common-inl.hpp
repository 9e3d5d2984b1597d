// What the kernel templates (kernels_f32-inl.hpp, kernels_i8-inl.hpp) share: compile-time unrolling and the row
// store of a micro-kernel tile. No intrinsics and no flags of its own: it is compiled into each per-ISA file under
// that file's flags.
// Linkage: everything in these -inl headers sits in an anonymous namespace, and the per-ISA ops structs too, so each
// per-ISA file gets its own internal copy of every instantiation. Identical inline templates in files compiled with
// different flags would otherwise be merged by the linker, and an AVX-512 copy could end up serving an AVX2 caller.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

namespace simdex::kernels {
namespace {

template <class F, std::size_t... I>
inline void static_for_impl(F& f, std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
}

// f(std::integral_constant<std::size_t, I>{}) for I = 0 .. N - 1, unrolled in the source: accumulator indices and
// NEON lane numbers are constants (decltype(i)::value), so arrays of accumulators become registers.
template <std::size_t N, class F>
inline void static_for(F&& f) {
    static_for_impl(f, std::make_index_sequence<N>{});
}

// On the exported wrappers that SIMDEX_DEFINE_*_KERNELS write: the template's body is compiled into the exported
// function itself (otherwise it is a jump to a local copy, a cycle per call that the short dot kernels notice).
#define SIMDEX_KERNEL_EXPORT [[gnu::flatten]]

// One row of a micro-kernel tile, two float vectors of the ops F (V, kLanes, load, store, add): written, or added to
// what the row holds when accumulate (a later depth slice of the same tile).
template <class F>
inline void store_row(float* row, typename F::V lo, typename F::V hi, bool accumulate) {
    if (accumulate) {
        lo = F::add(lo, F::load(row));
        hi = F::add(hi, F::load(row + F::kLanes));
    }
    F::store(row, lo);
    F::store(row + F::kLanes, hi);
}

// 128 * v with the wrap-around of unsigned arithmetic (the bias of the vpdpbusd kernels, see kernels_i8-inl.hpp).
inline std::int32_t times128(std::int32_t v) { return static_cast<std::int32_t>(static_cast<std::uint32_t>(v) << 7); }

}  // namespace
}  // namespace simdex::kernels
