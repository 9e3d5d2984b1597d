// The element types the scans run on (scan.cpp's exact scan, ivf_scan.cpp's partition scan): what each needs
// from the kernel table to score rows one query at a time or in packed GEMM blocks (float32, int8; binary rows
// one query at a time only).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/kernels.hpp"

namespace simdex {
namespace detail {

template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// What the driver needs from an element type: the row and query element types, the elements between rows, and
// with kBlocked a packed micro-kernel. Packed panels are [depth][width] (float) or [depth / 4][width][4]
// (int8); the depth of a panel is depth(dim). A micro-kernel call covers depth [k0, k0 + kc).
struct F32Scorer {
    using Elem = float;
    using Query = float;
    static constexpr bool kBlocked = true;  // has a packed micro-kernel
    static std::size_t stride(std::size_t dim) { return dim; }  // elements between rows
    static constexpr std::size_t kTileBytes = 128 * 1024;  // packed database tile, stays in L2
    static constexpr std::size_t kKc = 192;                // depth of one call (B micro-panel in L1)
    const KernelTable& kt;
    std::size_t mr() const { return kt.gemm_mr; }
    std::size_t nr() const { return kt.gemm_nr; }
    static std::size_t depth(std::size_t dim) { return dim; }
    void rows(const float* q, const float* x, std::size_t n, std::size_t dim, float* out) const {
        kt.dot_rows_f32(q, x, n, dim, out);
    }
    void pack_db(const float* x, std::size_t n, std::size_t dim, float* out) const {
        kt.pack_nr_f32(x, n, dim, out);
    }
    struct Queries {
        Buffer<float> panels;
    };
    void pack_queries(const float* q, std::size_t nq, std::size_t dim, Queries& out) const {
        out.panels.resize((nq + mr() - 1) / mr() * mr() * dim);
        kernels::pack_panels(q, nq, dim, mr(), out.panels.data());
    }
    void micro(const Queries& pq, std::size_t dim, std::size_t ip, std::size_t k0, std::size_t kc, const float* b,
               float* c, std::size_t ldc) const {
        kt.gemm_f32(kc, pq.panels.data() + ip * mr() * dim + k0 * mr(), b, c, ldc, k0 > 0);
    }
};

struct I8Scorer {
    using Elem = std::int8_t;
    using Query = std::int8_t;
    static constexpr bool kBlocked = true;
    static std::size_t stride(std::size_t dim) { return dim; }
    static constexpr std::size_t kTileBytes = 128 * 1024;
    static constexpr std::size_t kKc = 1024;  // 32 database rows x 1 KiB stay in L1; 384-d is one call
    const KernelTable& kt;
    std::size_t mr() const { return kt.gemm_i8_mr; }
    std::size_t nr() const { return kt.gemm_i8_nr; }
    static std::size_t depth(std::size_t dim) { return kernels::i8_depth(dim); }
    void rows(const std::int8_t* q, const std::int8_t* x, std::size_t n, std::size_t dim, float* out) const {
        kt.dot_rows_i8(q, x, n, dim, out);
    }
    void pack_db(const std::int8_t* x, std::size_t n, std::size_t dim, std::int8_t* out) const {
        kernels::pack_panels_i8(x, n, dim, nr(), kt.gemm_i8_flip, out);
    }
    struct Queries {
        Buffer<std::int8_t> panels;
        std::vector<std::int32_t> bias;  // [depth chunk][query row]: 128 * sum of the row's codes in the chunk
        std::size_t rows = 0;
    };
    void pack_queries(const std::int8_t* q, std::size_t nq, std::size_t dim, Queries& out) const {
        const std::size_t d = depth(dim), rows = (nq + mr() - 1) / mr() * mr();
        out.rows = rows;
        out.panels.resize(rows * d);
        kernels::pack_panels_i8(q, nq, dim, mr(), false, out.panels.data());
        const std::size_t chunks = (d + kKc - 1) / kKc;
        out.bias.assign(chunks * rows, 0);
        if (!kt.gemm_i8_flip) return;
        for (std::size_t i = 0; i < nq; ++i)
            for (std::size_t c = 0; c < chunks; ++c) {  // a plain sum per chunk, which the compiler vectorizes
                const std::int8_t* row = q + i * dim;
                std::int32_t sum = 0;
                for (std::size_t k = c * kKc; k < std::min(dim, (c + 1) * kKc); ++k) sum += row[k];
                out.bias[c * rows + i] = 128 * sum;
            }
    }
    void micro(const Queries& pq, std::size_t dim, std::size_t ip, std::size_t k0, std::size_t kc,
               const std::int8_t* b, float* c, std::size_t ldc) const {
        const std::size_t d = depth(dim);
        const std::int32_t* bias = pq.bias.data() + (k0 / kKc) * pq.rows + ip * mr();
        kt.gemm_i8(kc, pq.panels.data() + ip * mr() * d + k0 * mr(), b, bias, c, ldc, k0 > 0);
    }
};

// Binary rows (1-bit codes, kernels::b1_bytes(dim) bytes apart) against int16 query weights: the integer sums one
// query at a time (kernels::SumsRowsB1Fn). No packed GEMM of its own.
struct B1Scorer {
    using Elem = std::uint8_t;
    using Query = std::int16_t;
    static constexpr bool kBlocked = false;
    static std::size_t stride(std::size_t dim) { return kernels::b1_bytes(dim); }
    // Rows scored per pass, every query in turn against them while they stay in L2 (at least 64).
    static constexpr std::size_t kTileBytes = 64 * 1024;
    static std::size_t tile_rows(std::size_t dim) { return std::max<std::size_t>(64, kTileBytes / stride(dim)); }
    struct Queries {};  // nothing to pack
    const KernelTable& kt;
    void rows(const std::int16_t* w, const std::uint8_t* x, std::size_t n, std::size_t dim, float* out) const {
        kt.sums_rows_b1(w, x, n, dim, out);
    }
};

}  // namespace detail
}  // namespace simdex
