// libFuzzer target for the index loader: any bytes either load into an index that then works (search, ids,
// reconstruct, save to bytes and load again) or throw FormatError. Everything else, a crash, a sanitizer report,
// another exception, is a finding. Build and run: fuzz/README.md.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "simdex/format.hpp"
#include "simdex/index.hpp"
#include "simdex/thread_pool.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    simdex::set_num_threads(1);  // one thread: reproducible runs
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::uint8_t> again;
    std::size_t rows = 0;
    try {
        simdex::FlatIndex index = simdex::FlatIndex::load_bytes(data, size);
        const std::size_t k = 3;
        std::vector<float> q(index.dim() * 2, 0.25f), scores(2 * k);
        std::vector<std::int64_t> ids(2 * k);
        simdex::SearchParams p;
        p.k = k;
        p.nprobe = index.partitions();  // a partitioned index probes every partition: the exact result
        index.search(q.data(), 1, p, scores.data(), ids.data());
        index.search(q.data(), 2, p, scores.data(), ids.data());
        std::vector<std::int64_t> all = index.ids();
        if (!all.empty()) {
            std::vector<float> row(index.dim());
            index.reconstruct(all.data(), 1, row.data());
        }
        if (index.dtype() == simdex::Dtype::float32 && !all.empty()) {
            // The best score equals a double brute force over the stored rows (the query is constant, so its
            // cosine normalization is a plain scale): the largest product, or under l2 the smallest squared
            // distance.
            std::vector<float> rows(all.size() * index.dim());
            index.reconstruct(all.data(), all.size(), rows.data());
            const bool l2 = index.metric() == simdex::Metric::l2;
            const double qv = index.metric() == simdex::Metric::cosine ? 1.0 / std::sqrt(double(index.dim())) : 0.25;
            double best = l2 ? HUGE_VAL : -HUGE_VAL;
            for (std::size_t r = 0; r < all.size(); ++r) {
                double s = 0;
                for (std::size_t c = 0; c < index.dim(); ++c) {
                    const double x = rows[r * index.dim() + c];
                    s += l2 ? (qv - x) * (qv - x) : qv * x;
                }
                best = l2 ? std::min(best, s) : std::max(best, s);
            }
            if (std::fabs(best - scores[0]) > 1e-3 * (1.0 + std::fabs(best))) std::abort();
        }
        (void)index.metadata();
        rows = index.size();
        again = index.to_bytes();
    } catch (const simdex::FormatError&) {
        return 0;
    }
    // What was accepted must save and load back; then every other id (in the file's order, whatever it is)
    // removes, and each id is found exactly when it was kept (the id map through removals that move rows).
    simdex::FlatIndex back = simdex::FlatIndex::load_bytes(again.data(), again.size());
    if (back.size() != rows) std::abort();
    const std::vector<std::int64_t> all = back.ids();
    std::vector<std::int64_t> gone;
    for (std::size_t i = 0; i < all.size(); i += 2) gone.push_back(all[i]);
    if (back.remove(gone.data(), gone.size()) != gone.size()) std::abort();
    for (std::size_t i = 0; i < all.size(); ++i)
        if (back.contains(all[i]) != (i % 2 == 1)) std::abort();
    if (back.size() != all.size() - gone.size()) std::abort();
    return 0;
}
