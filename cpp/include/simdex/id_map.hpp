// id -> slot map of an index. The index's slot -> id array already holds every id, so the map stores slots only
// and reads keys from that array (every call takes it). Two layers:
// - positions: while the index began as one ascending run of ids (automatic ids are: first, first + 1, ...), an id
//   whose slot is id - first needs no entry at all; find checks that slot in the id array, or, while no id is
//   listed, trusts the arithmetic alone (0 bytes a row beyond the id array's 8);
// - a table of the other ids ("listed"): open addressing with linear probing over 4-byte entries (slot + 1 and a
//   tag of hash bits in the bits the slot does not need; 0 marks an empty entry, kGone a removed one), at most
//   three quarters full and grown by half, so 5.3-8 bytes a listed row (a table of 16-byte id/slot pairs grown by
//   doubling took 21-43). A lookup reads its entry, then the id array once (the tag skips other ids' keys).
// A removal before the last row lists only the row moved into its slot (no table of every id); once more than a
// quarter of the ids are listed (ids out of order, many removals), positions are dropped and every id is listed,
// so a lookup never pays for both layers at scale. Removal marks its entry gone instead of shifting the probe run
// back (which read the id array once per shifted entry); inserts reuse gone entries and growth clears them.
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
    static constexpr std::size_t kMaxRows = 0xFFFFFFFEu;  // slot + 1 fits a 4-byte entry below kGone

    IdMap() = default;
    IdMap(IdMap&& o) noexcept { *this = std::move(o); }
    IdMap& operator=(IdMap&& o) noexcept {
        table_ = std::move(o.table_);
        size_ = std::exchange(o.size_, 0);
        listed_ = std::exchange(o.listed_, 0);
        gone_ = std::exchange(o.gone_, 0);
        first_ = std::exchange(o.first_, 0);
        positional_ = std::exchange(o.positional_, true);
        slot_bits_ = std::exchange(o.slot_bits_, 8u);
        return *this;
    }

    std::size_t size() const noexcept { return size_; }
    // The slot of id, or npos. ids: the slot -> id array.
    std::size_t find(std::int64_t id, const std::int64_t* ids) const noexcept {
        const std::size_t slot = at_position(id, ids);
        return slot != npos || (positional_ && listed_ == 0) ? slot : find_listed(id, ids);
    }
    // slots[i] = find(keys[i], ids) for each of n keys, with the table entries and then the id array's keys
    // fetched ahead of use: a lookup there is two dependent cache misses, which pipelined cost about one.
    void find_many(const std::int64_t* keys, std::size_t n, const std::int64_t* ids, std::size_t* slots) const noexcept;
    // What find(id, ids) reads, fetched ahead for loops that look ids up between other work (removal): first the
    // table entry at the id's home (and its position's key), then, once that entry has arrived, the key it points to.
    void prefetch_entry(std::int64_t id, const std::int64_t* ids) const noexcept;
    void prefetch_key(std::int64_t id, const std::int64_t* ids) const noexcept;
    // Room for n ids without growing, as far as it can tell (positions need none); strong guarantee.
    void reserve(std::size_t n, const std::int64_t* ids);
    // Room for n removals without growing the table (each lists at most the row moved into its slot), so a long
    // run of removals does not re-place the listed ids at each growth; strong guarantee.
    void reserve_removals(std::size_t n, const std::int64_t* ids);
    // Adds id at slot == size(); ids[slot] must already hold it. false (and no change) when id is present.
    bool insert(std::int64_t id, std::size_t slot, const std::int64_t* ids);
    // Forgets id; false when absent. Called before the index moves its last row into the freed slot.
    bool erase(std::int64_t id, const std::int64_t* ids);
    // Records that id, the last row (ids[size()] still holds it after erase), now lives at slot.
    void assign(std::int64_t id, std::size_t slot, const std::int64_t* ids);
    std::size_t bytes() const noexcept { return table_.capacity() * sizeof(std::uint32_t); }

  private:
    // An entry: slot + 1 in its low slot_bits_ bits, and above them the id's hash bits as a tag, so a probe reads
    // the id array only when the tag matches; the widest slot value (all ones) never occurs, so kGone is free.
    static constexpr std::uint32_t kGone = 0xFFFFFFFFu;
    std::uint32_t slot_mask() const noexcept {
        return slot_bits_ >= 32 ? 0xFFFFFFFFu : (std::uint32_t(1) << slot_bits_) - 1;
    }
    std::size_t slot_in(std::uint32_t e) const noexcept { return (e & slot_mask()) - 1; }
    std::uint32_t tag(std::uint64_t h) const noexcept { return static_cast<std::uint32_t>(h) & ~slot_mask(); }
    // Entry e is a live one whose tag is that of hash h (its key may still differ: the caller compares it).
    bool tagged(std::uint32_t e, std::uint64_t h) const noexcept {
        return e != 0 && e != kGone && (e & ~slot_mask()) == tag(h);
    }
    std::uint32_t entry(std::uint64_t h, std::size_t slot) const noexcept {
        return tag(h) | static_cast<std::uint32_t>(slot + 1);
    }
    static std::uint64_t hash(std::int64_t id) noexcept;
    static unsigned slot_bits_for(std::size_t rows) noexcept;
    // The slot of id when it is at its position (slot id - first), else npos. Every id away from its position is
    // listed, so with none listed the arithmetic alone is the answer.
    std::size_t at_position(std::int64_t id, const std::int64_t* ids) const noexcept {
        const std::size_t off = position_of(id);
        return off < size_ && (listed_ == 0 || ids[off] == id) ? off : npos;
    }
    // The slot id belongs at while positional (id - first), else npos.
    std::size_t position_of(std::int64_t id) const noexcept {
        if (!positional_ || id < first_) return npos;  // ids are >= 0 and so is first_: no wrap below
        return static_cast<std::size_t>(static_cast<std::uint64_t>(id) - static_cast<std::uint64_t>(first_));
    }
    bool at_home(std::int64_t id, std::size_t slot) const noexcept { return position_of(id) == slot; }
    std::size_t find_listed(std::int64_t id, const std::int64_t* ids) const noexcept;
    std::size_t home(std::uint64_t h) const noexcept;  // h: hash(id)
    std::size_t position(std::int64_t id, const std::int64_t* ids) const noexcept;  // its entry, or npos
    void list(std::size_t slot, const std::int64_t* ids);                            // adds an entry
    void unlist(std::size_t i) noexcept;                                              // removes entry i
    void place(std::size_t slot, const std::int64_t* ids) noexcept;  // into its run's first free entry
    void rehash(std::size_t buckets, const std::int64_t* ids, std::size_t rows);
    void drop_positions(const std::int64_t* ids);                       // lists every id
    std::size_t buckets_for(std::size_t n) const noexcept;

    RowStore<std::uint32_t> table_;  // zero-filled on growth, so every new entry is empty
    std::size_t size_ = 0;           // ids in the map
    std::size_t listed_ = 0;         // of them in the table
    std::size_t gone_ = 0;           // kGone entries in the table
    std::int64_t first_ = 0;         // positional: the id of slot 0
    bool positional_ = true;
    unsigned slot_bits_ = 8;  // of an entry; the rest is its tag
};

}  // namespace simdex
