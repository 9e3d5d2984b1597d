// id -> slot map of an index. The index's slot -> id array already holds every id, so the map stores slots only
// and reads keys from that array (every call takes it):
// - dense: while slot i holds id first + i for every i (ids added in order without gaps, as automatic ids are),
//   there is no table at all and find is arithmetic: 0 bytes a row beyond the id array's 8;
// - otherwise: open addressing with linear probing over 4-byte entries (slot + 1; 0 marks an empty entry), at
//   most three quarters full and grown by half, so 5.3-8 bytes a row (a table of 16-byte id/slot pairs grown by
//   doubling took 21-43). The first change that breaks density (a removal before the last row, an id out of
//   order) builds the table once.
// One flat table, not a node-based std::unordered_map: those small allocations outlive the large buffers freed
// around them (an encoder's activations during ingest) and pin the heap, which then only grows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "simdex/row_store.hpp"

namespace simdex {

class IdMap {
  public:
    static constexpr std::size_t npos = ~std::size_t(0);
    static constexpr std::size_t kMaxRows = 0xFFFFFFFEu;  // slot + 1 fits a 4-byte entry

    IdMap() = default;
    IdMap(IdMap&& o) noexcept
        : table_(std::move(o.table_)), size_(std::exchange(o.size_, 0)), first_(std::exchange(o.first_, 0)),
          dense_(std::exchange(o.dense_, true)) {}
    IdMap& operator=(IdMap&& o) noexcept {
        table_ = std::move(o.table_);
        size_ = std::exchange(o.size_, 0);
        first_ = std::exchange(o.first_, 0);
        dense_ = std::exchange(o.dense_, true);
        return *this;
    }

    std::size_t size() const noexcept { return size_; }
    bool dense() const noexcept { return dense_; }
    // The slot of id, or npos. ids: the slot -> id array.
    std::size_t find(std::int64_t id, const std::int64_t* ids) const noexcept;
    // Room for n ids without growing; strong guarantee. Nothing to do while dense.
    void reserve(std::size_t n, const std::int64_t* ids);
    // Adds id at slot == size(); ids[slot] must already hold it. false (and no change) when id is present.
    bool insert(std::int64_t id, std::size_t slot, const std::int64_t* ids);
    // Forgets id; false when absent. Called before the index moves its last row into the freed slot.
    bool erase(std::int64_t id, const std::int64_t* ids);
    // Records that id (found at its old slot through ids) now lives at slot.
    void assign(std::int64_t id, std::size_t slot, const std::int64_t* ids);
    std::size_t bytes() const noexcept { return table_.capacity() * sizeof(std::uint32_t); }

  private:
    std::size_t home(std::int64_t id) const noexcept;
    std::size_t position(std::int64_t id, const std::int64_t* ids) const noexcept;  // its entry, or npos
    void place(std::uint32_t entry, const std::int64_t* ids) noexcept;  // into its probe run's first empty entry
    void rehash(std::size_t buckets, const std::int64_t* ids);           // builds the table from ids when dense
    std::size_t buckets_for(std::size_t n) const noexcept;

    RowStore<std::uint32_t> table_;  // zero-filled on growth, so every new entry is empty
    std::size_t size_ = 0;
    std::int64_t first_ = 0;  // dense: the id of slot 0
    bool dense_ = true;
};

}  // namespace simdex
