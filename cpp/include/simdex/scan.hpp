// The exact scan behind FlatIndex::search, shared by float32, int8 and binary: single queries stream rows through a
// dot_rows kernel across the thread pool; batches run a packed GEMM micro-kernel over query-tile x
// database-tile blocks. Both keep per-worker top-k lists while they scan (no nq x n score matrix) and merge
// them at the end. The element type only changes the kernels and the panel packing (see scan.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"

namespace simdex {

// A single query's scan runs on the calling thread when it is small both in bytes read and in work (rows x dims):
// waking the pool then costs more than the second core saves. Measured on the 2-vCPU Intel Xeon
// (bench/README_ivf.md, "Single queries on one thread"): float32 and int8 scans, bound by memory, were faster on
// one thread up to about 5 MB read and on two from about 20 MB; binary scans, bound by the adds (about 6 ns a
// 384-d row), were faster on two threads already at 100K rows (4.8 MB).
inline constexpr std::size_t kSerialScanBytes = std::size_t(6) << 20;
inline constexpr std::size_t kSerialScanWork = std::size_t(16) << 20;  // rows x dims
inline bool serial_scan(std::size_t rows, std::size_t dim, std::size_t bytes) noexcept {
    return bytes < kSerialScanBytes && rows * dim < kSerialScanWork;
}

// The rows a search scans: the whole index, or a gathered subset when a filter is very selective.
template <class T>
struct RowsView {
    const T* data;
    const std::int64_t* ids;
    std::size_t n;
    std::size_t dim;
    const std::vector<bool>* allow;  // by row of this view; nullptr: all rows qualify
    // l2: squared norm of each row of this view; a row then scores dot - norm_scale[query] * norms[row]
    // (float32: norm_scale 1/2, so the best score is the nearest row). nullptr: the dot product alone.
    const float* norms = nullptr;
    const float* norm_scale = nullptr;  // one per query of the search call
};
using ScanView = RowsView<float>;
using ScanViewI8 = RowsView<std::int8_t>;
using ScanViewB1 = RowsView<std::uint8_t>;  // rows of kernels::b1_bytes(dim) bytes

// queries: nq x dim (already normalized when the metric asks for it); scores / ids: nq x p.k.
void run_search(const KernelTable& kt, const ScanView& v, const float* queries, std::size_t nq,
                const SearchParams& p, float* scores, std::int64_t* ids);

// queries: nq x dim int8 codes in [-127, 127]. scores: the exact integer dot products <query code, row code>
// (as float, exact while |sum| < 2^24), best first, ties to the lower id; p.min_score applies to them.
void run_search_i8(const KernelTable& kt, const ScanViewI8& v, const std::int8_t* queries, std::size_t nq,
                   const SearchParams& p, float* scores, std::int64_t* ids);

// One query's rows within a margin of its k-th best score (run_search_i8_near).
struct NearList {
    std::vector<std::pair<float, std::int64_t>> entries;  // (integer dot, id), best first
    bool complete = false;                                 // false: more than near_cap rows qualified; entries empty
};
using NearLists = std::vector<NearList>;
// As run_search_i8, but out[q] receives every row whose dot product is at least the k-th best minus margins[q]
// (the k best included), up to k + near_cap rows: certified-exact int8 search rescores them (index_exact.cpp).
void run_search_i8_near(const KernelTable& kt, const ScanViewI8& v, const std::int8_t* queries, std::size_t nq,
                        const SearchParams& p, const float* margins, std::size_t near_cap, NearLists* out);

}  // namespace simdex

namespace simdex {
// queries: nq x dim int16 weights (|w| <= kernels::kB1WeightMax), rows of 1-bit codes. scores: the sums of w over
// each row's set bits (kernels::SumsRowsB1Fn), best first, ties to the lower id; p.min_score applies to them.
void run_search_b1(const KernelTable& kt, const ScanViewB1& v, const std::int16_t* weights, std::size_t nq,
                   const SearchParams& p, float* scores, std::int64_t* ids);
// The batch prefilter where popcount is fast (KernelTable::hamming_prefilter): for each of nq queries (sign bits,
// kernels::b1_words(dim) words each), the rows of v (allowed ones) nearest in Hamming distance: the `pool`
// nearest, with rows tied at the cut kept up to 2 * pool (the lower ids first). (*out)[q] in no order; fewer than
// `pool` entries means every allowed row.
struct HammingNear {
    std::int64_t id;
    std::uint32_t dist;
};
void run_hamming_pool_b1(const KernelTable& kt, const ScanViewB1& v, const std::uint64_t* qbits, std::size_t nq,
                         std::size_t pool, std::vector<std::vector<HammingNear>>* out, const InterruptFn& interrupt);
// The batch path: queries are nq x dim int8 weights (at most kernels::kMaxI8Depth dims), the rows' bits expanded
// to +-1 int8 per database tile and scored by the int8 GEMM micro-kernel. scores: the integer sums <u, +-1>.
void run_search_b1_gemm(const KernelTable& kt, const ScanViewB1& v, const std::int8_t* queries, std::size_t nq,
                        const SearchParams& p, float* scores, std::int64_t* ids);
}  // namespace simdex
