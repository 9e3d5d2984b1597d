// id -> slot map of an index: open addressing with linear probing in one flat table (16 bytes a slot, at most
// three quarters full). A node-based std::unordered_map makes one small heap allocation per row; those outlive
// the large buffers freed around them (an encoder's activations during ingest) and pin the heap, which then only
// grows: embedding 16K texts with MiniLM and adding them grew RSS by 390 MB with it, and stayed flat without it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "simdex/row_store.hpp"

namespace simdex {

class IdMap {
  public:
    static constexpr std::size_t npos = ~std::size_t(0);

    IdMap() = default;
    IdMap(IdMap&& o) noexcept : table_(std::move(o.table_)), size_(std::exchange(o.size_, 0)) {}
    IdMap& operator=(IdMap&& o) noexcept {
        table_ = std::move(o.table_);
        size_ = std::exchange(o.size_, 0);
        return *this;
    }

    std::size_t size() const noexcept { return size_; }
    std::size_t find(std::int64_t id) const noexcept;  // the slot, or npos
    bool contains(std::int64_t id) const noexcept { return find(id) != npos; }
    void reserve(std::size_t n);                       // room for n ids without growing; strong guarantee
    bool insert(std::int64_t id, std::size_t slot);    // false (and no change) when id is present already
    void assign(std::int64_t id, std::size_t slot);    // id must be present
    bool erase(std::int64_t id);                       // false when id is absent
    std::size_t bytes() const noexcept { return table_.capacity() * sizeof(Entry); }

  private:
    struct Entry {
        std::uint64_t key;   // id + 1 (ids are non-negative); 0 marks an empty entry
        std::uint64_t slot;
    };
    std::size_t home(std::uint64_t key) const noexcept;
    std::size_t position(std::int64_t id) const noexcept;  // its entry, or npos
    void place(Entry e) noexcept;  // into the first empty entry of its probe run; e.key is absent
    void rehash(std::size_t buckets);

    RowStore<Entry> table_;  // zero-filled on growth, so every new entry is empty
    std::size_t size_ = 0;
};

}  // namespace simdex
