// The exact scan behind FlatIndex::search: single queries stream rows through dot_rows_f32 across the thread
// pool; batches run the packed GEMM micro-kernel over query-tile x database-tile blocks. Both keep per-worker
// top-k lists while they scan (no nq x n score matrix) and merge them at the end.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"

namespace simdex {

// The rows a search scans: the whole index, or a gathered subset when a filter is very selective.
struct ScanView {
    const float* data;
    const std::int64_t* ids;
    std::size_t n;
    std::size_t dim;
    const std::vector<bool>* allow;  // by row of this view; nullptr: all rows qualify
};

// queries: nq x dim (already normalized when the metric asks for it); scores / ids: nq x p.k.
void run_search(const KernelTable& kt, const ScanView& v, const float* queries, std::size_t nq,
                const SearchParams& p, float* scores, std::int64_t* ids);

}  // namespace simdex
