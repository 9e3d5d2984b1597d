// The partition scan behind a partitioned FlatIndex's search (docs/ivf.md). A batch is processed partition-major:
// every query that probes a partition is scored against it together, with the packed GEMM micro-kernel, so each
// probed list is read once per batch however many queries probe it; a single query's lists are spread over the
// thread pool. Rows are read through the lists' slot numbers, in tiles gathered next to each other.
#pragma once
#include <cstddef>
#include <cstdint>

#include "simdex/partitions.hpp"
#include "simdex/scan.hpp"

namespace simdex {

struct KernelTable;

// What each query probes: nq x nprobe partition numbers (Partitions::probe).
struct Probes {
    const Partitions& parts;
    const std::uint32_t* lists;
    std::size_t nprobe;
};

// As run_search / run_search_i8 (scan.hpp), over the rows of the probed partitions only. v is the whole index
// (its rows are the slots the lists name); v.allow, v.norms are by slot.
void run_search_ivf(const KernelTable& kt, const ScanView& v, const Probes& probes, const float* queries,
                    std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids);
void run_search_ivf_i8(const KernelTable& kt, const ScanViewI8& v, const Probes& probes, const std::int8_t* queries,
                       std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids);
// Binary rows: as run_search_b1 (int16 weights, the integer sums), one query at a time per list tile.
void run_search_ivf_b1(const KernelTable& kt, const ScanViewB1& v, const Probes& probes, const std::int16_t* weights,
                       std::size_t nq, const SearchParams& p, float* scores, std::int64_t* ids);

}  // namespace simdex
