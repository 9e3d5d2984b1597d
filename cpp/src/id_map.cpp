#include "simdex/id_map.hpp"

#include <utility>

namespace simdex {
namespace {

// splitmix64's finalizer: consecutive ids (the common case) land far apart.
std::uint64_t mix(std::uint64_t x) noexcept {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::uint64_t key_of(std::int64_t id) noexcept { return static_cast<std::uint64_t>(id) + 1; }

}  // namespace

std::size_t IdMap::home(std::uint64_t key) const noexcept { return mix(key) & (table_.size() - 1); }

std::size_t IdMap::position(std::int64_t id) const noexcept {
    if (id < 0 || size_ == 0) return npos;
    const std::uint64_t key = key_of(id);
    const std::size_t mask = table_.size() - 1;
    const Entry* t = table_.data();
    for (std::size_t i = home(key);; i = (i + 1) & mask) {
        if (t[i].key == key) return i;
        if (t[i].key == 0) return npos;
    }
}

std::size_t IdMap::find(std::int64_t id) const noexcept {
    const std::size_t i = position(id);
    return i == npos ? npos : static_cast<std::size_t>(table_.data()[i].slot);
}

void IdMap::reserve(std::size_t n) {
    std::size_t buckets = table_.size() ? table_.size() : 16;
    while (buckets / 4 * 3 < n) buckets *= 2;
    if (buckets != table_.size()) rehash(buckets);
}

void IdMap::rehash(std::size_t buckets) {
    RowStore<Entry> old;
    {
        RowStore<Entry> grown;
        grown.resize(buckets);  // may throw: nothing has changed yet
        old = std::move(table_);
        table_ = std::move(grown);
    }
    for (std::size_t j = 0; j < old.size(); ++j)
        if (old.data()[j].key != 0) place(old.data()[j]);
}

void IdMap::place(Entry e) noexcept {
    const std::size_t mask = table_.size() - 1;
    Entry* t = table_.data();
    std::size_t i = home(e.key);
    while (t[i].key != 0) i = (i + 1) & mask;
    t[i] = e;
}

bool IdMap::insert(std::int64_t id, std::size_t slot) {
    if (position(id) != npos) return false;
    reserve(size_ + 1);
    place(Entry{key_of(id), slot});
    ++size_;
    return true;
}

void IdMap::assign(std::int64_t id, std::size_t slot) { table_.data()[position(id)].slot = slot; }

bool IdMap::erase(std::int64_t id) {
    std::size_t hole = position(id);
    if (hole == npos) return false;
    // Backward-shift deletion: pull later entries of the probe run into the hole when their home allows it, so
    // lookups never need tombstones.
    const std::size_t mask = table_.size() - 1;
    Entry* t = table_.data();
    for (std::size_t j = (hole + 1) & mask; t[j].key != 0; j = (j + 1) & mask) {
        const std::size_t h = home(t[j].key);
        // The entry at j may move to hole only if its home is not cyclically inside (hole, j].
        const bool stays = hole < j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!stays) {
            t[hole] = t[j];
            hole = j;
        }
    }
    t[hole].key = 0;
    --size_;
    return true;
}

}  // namespace simdex
