// The inverted-file layer of a partitioned FlatIndex (docs/ivf.md): centroids learned by k-means, and for each
// partition the list of index slots whose rows are nearest to its centroid. The rows stay where FlatIndex keeps
// them (so ids, removal, int8 codes, files and mmap work as for the exact index); a search scores only the rows
// of the partitions each query probes (ivf_scan.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "simdex/gemm.hpp"
#include "simdex/index.hpp"
#include "simdex/row_store.hpp"
#include "simdex/thread_pool.hpp"

namespace simdex {

struct KernelTable;

// How a row is matched to a centroid: the largest inner product (unit rows and unit centroids: spherical
// k-means, used under cosine) or the smallest L2 distance (plain k-means, used under ip).
enum class Match { dot, l2 };

struct KMeansOptions {
    std::size_t iterations = 10;
    // At most this many training rows per centroid are used (an evenly drawn sample of the rest is skipped):
    // more rows move the centroids very little and cost time linearly.
    std::size_t max_rows_per_centroid = 256;
    std::uint64_t seed = 1234;
    std::function<void(std::size_t done, std::size_t total)> progress;  // after seeding and after each iteration
    InterruptFn interrupt;
};

// Lloyd's k-means over n rows (x: n x dim, finite): D^2 seeding drawn in rounds of k / 16 centers (each round is
// one GEMM over the sample), then iterations whose assignment step is a k = 1 batch search of the centroids (on
// int8 first, then float for the 3 best, where the CPU has an int8 dot instruction: partitions.cpp); a cluster
// left empty takes half of the largest one. Returns k x dim centroids, unit rows under Match::dot. Deterministic for a
// seed and a thread count. std::invalid_argument when n < k.
FloatBuffer kmeans(const KernelTable& kt, const float* x, std::size_t n, std::size_t dim, std::size_t k, Match how,
                   const KMeansOptions& opt);

class Partitions {
  public:
    static constexpr std::size_t kMaxPartitions = std::size_t(1) << 20;

    // count partitions of dim-dimensional rows; rows are assigned by `assign`, queries probe by `probe`.
    Partitions(std::size_t count, std::size_t dim, Match assign, Match probe);

    std::size_t count() const noexcept { return count_; }
    std::size_t dim() const noexcept { return dim_; }
    Match assign_rule() const noexcept { return assign_; }
    bool trained() const noexcept { return !centroids_.empty(); }
    const float* centroids() const noexcept { return centroids_.data(); }
    // count x dim finite centroids; the lists must be empty (std::logic_error otherwise).
    void set_centroids(FloatBuffer c);

    // The nearest partition of each of n rows (trained only).
    void nearest(const KernelTable& kt, const float* x, std::size_t n, std::uint32_t* out) const;
    // The nprobe best partitions of each of nq queries, best first (nq x nprobe), 1 <= nprobe <= count().
    void probe(const KernelTable& kt, const float* q, std::size_t nq, std::size_t nprobe, std::uint32_t* out,
               const InterruptFn& interrupt = {}) const;

    // Lists. Slots are FlatIndex row numbers; every slot of the index is in exactly one list.
    std::size_t size() const noexcept { return list_of_.size(); }
    // Rows [size(), size() + n) join lists part[0..n). Strong guarantee on std::bad_alloc.
    void append(const std::uint32_t* part, std::size_t n);
    // Row `slot` is removed and the last row moves into it (FlatIndex's swap-remove).
    void remove_slot(std::size_t slot);
    void clear_lists();
    const std::uint32_t* list(std::size_t p) const noexcept { return lists_[p].data(); }
    std::size_t list_size(std::size_t p) const noexcept { return lists_[p].size(); }
    const std::uint32_t* assignment() const noexcept { return list_of_.data(); }  // slot -> partition
    std::size_t bytes() const noexcept;

    // The nprobe stored by tune() (0: none); searches that name none use nprobe_or_default(0).
    std::size_t default_nprobe = 0;
    // asked, or else the stored nprobe, or else max(1, count() / 16).
    std::size_t nprobe_or_default(std::size_t asked) const noexcept {
        if (asked) return asked;
        if (default_nprobe) return default_nprobe;
        return count_ / 16 ? count_ / 16 : 1;
    }

  private:
    std::shared_ptr<const PackedRows> packed(const KernelTable& kt) const;
    // scores (rows x count) of rows against the centroids, by the rule (l2: <x, c> - |c|^2 / 2).
    void score(const KernelTable& kt, const float* x, std::size_t rows, Match rule, float* out,
               const InterruptFn& interrupt) const;

    std::size_t count_, dim_;
    Match assign_, probe_;
    FloatBuffer centroids_;
    std::vector<float> half_norms_;  // |c|^2 / 2
    std::vector<RowStore<std::uint32_t>> lists_;
    RowStore<std::uint32_t> list_of_;
    mutable std::mutex pack_mu_;  // the packed centroids follow the active kernel table (set_active_isa)
    mutable std::shared_ptr<const PackedRows> packed_;
};

// A stable order of rows grouped by partition: part[order[0]] <= part[order[1]] <= ...; sorts part in place.
std::vector<std::uint32_t> group_by_partition(std::vector<std::uint32_t>& part);

// The partitions of a FlatIndex under `metric`: rows grouped by largest inner product under cosine (unit rows,
// spherical k-means), by L2 distance under ip and l2; queries probe by the metric's own score.
std::unique_ptr<Partitions> make_partitions(std::size_t count, std::size_t dim, Metric metric);

}  // namespace simdex
