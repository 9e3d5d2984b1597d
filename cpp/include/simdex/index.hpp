// Exact inner-product / cosine index over float32 rows, with stable int64 ids, removal and filtered search.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "simdex/thread_pool.hpp"

namespace simdex {

enum class Metric { cosine, ip };
const char* metric_name(Metric m) noexcept;
Metric parse_metric(const std::string& name);  // std::invalid_argument on an unknown name

// 64-byte aligned storage for SIMD rows.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};
using FloatBuffer = std::vector<float, AlignedAllocator<float>>;

struct SearchParams {
    std::size_t k = 10;
    float min_score = -std::numeric_limits<float>::infinity();  // results below it are dropped
    bool has_filter = false;                                    // when true, only ids in filter qualify
    const std::int64_t* filter = nullptr;
    std::size_t filter_size = 0;
    InterruptFn interrupt;  // polled between blocks of work (Ctrl-C)
};

class FlatIndex {
  public:
    FlatIndex(std::size_t dim, Metric metric);
    FlatIndex(FlatIndex&& other) noexcept;

    std::size_t dim() const noexcept { return dim_; }
    Metric metric() const noexcept { return metric_; }
    std::size_t size() const;
    std::int64_t next_id() const;

    // Validates everything, then adds n rows (normalized under cosine). ids == nullptr: consecutive ids from
    // the largest id ever added + 1. Throws std::invalid_argument, changing nothing, on a non-finite value, a
    // negative id, or an id already present (in the index or twice in the batch).
    void add(const float* x, std::size_t n, const std::int64_t* ids);
    // Removes the ids present; returns how many were removed. Other ids keep their vectors.
    std::size_t remove(const std::int64_t* ids, std::size_t n);
    void reset();

    // scores / ids: nq x k, best first, padded with (-inf, -1).
    void search(const float* queries, std::size_t nq, const SearchParams& params, float* scores,
                std::int64_t* ids) const;

    std::vector<std::int64_t> ids() const;
    bool contains(std::int64_t id) const;
    // Copies the stored (normalized, under cosine) vectors of the given ids; std::out_of_range if one is missing.
    void reconstruct(const std::int64_t* ids, std::size_t n, float* out) const;
    std::size_t memory_usage() const;

    // Opaque JSON text the Python layer keeps with the index (e.g. the embedding model's fingerprint).
    std::string metadata() const;
    void set_metadata(std::string text);

    void save(const std::string& path) const;
    static FlatIndex load(const std::string& path);

  private:
    void check_ids_unlocked(const std::int64_t* ids, std::size_t n) const;

    std::size_t dim_;
    Metric metric_;
    FloatBuffer data_;                 // size() rows of dim_ floats
    std::vector<std::int64_t> ids_;    // slot -> id
    std::unordered_map<std::int64_t, std::size_t> slot_of_;
    std::int64_t next_id_ = 0;
    std::string metadata_;
    mutable std::shared_mutex mu_;     // search / save shared; add / remove / reset exclusive
};

// Normalizes each row to unit L2 norm in place (rows of norm 0 stay zero).
void normalize_rows(float* x, std::size_t n, std::size_t dim);

}  // namespace simdex
