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

// The high 64 bits of a * b, without a 128-bit type (MSVC has none).
std::uint64_t mul_high(std::uint64_t a, std::uint64_t b) noexcept {
    const std::uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32, b_lo = b & 0xffffffffu, b_hi = b >> 32;
    const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    const std::uint64_t mid = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
    return hi_hi + (hi_lo >> 32) + (mid >> 32);
}

}  // namespace

// A hash scaled onto any table size (multiply-shift): the table grows by half, not to powers of two.
std::size_t IdMap::home(std::int64_t id) const noexcept {
    return static_cast<std::size_t>(mul_high(mix(static_cast<std::uint64_t>(id)), table_.size()));
}

std::size_t IdMap::position(std::int64_t id, const std::int64_t* ids) const noexcept {
    const std::size_t n = table_.size();
    if (n == 0) return npos;
    const std::uint32_t* t = table_.data();
    for (std::size_t i = home(id);; i = i + 1 == n ? 0 : i + 1) {
        if (t[i] == 0) return npos;
        if (ids[t[i] - 1] == id) return i;
    }
}

std::size_t IdMap::find(std::int64_t id, const std::int64_t* ids) const noexcept {
    if (dense_) {
        if (id < first_) return npos;  // negative ids too: first_ >= 0
        const std::uint64_t offset = static_cast<std::uint64_t>(id) - static_cast<std::uint64_t>(first_);
        return offset < size_ ? static_cast<std::size_t>(offset) : npos;
    }
    const std::size_t i = position(id, ids);
    return i == npos ? npos : table_.data()[i] - 1;
}

std::size_t IdMap::buckets_for(std::size_t n) const noexcept {
    std::size_t buckets = table_.size() ? table_.size() : 8;
    while (buckets / 4 * 3 < n) buckets += buckets / 2;
    return buckets;
}

void IdMap::reserve(std::size_t n, const std::int64_t* ids) {
    if (dense_) return;
    const std::size_t buckets = buckets_for(n);
    if (buckets != table_.size()) rehash(buckets, ids);
}

void IdMap::rehash(std::size_t buckets, const std::int64_t* ids) {
    RowStore<std::uint32_t> old;
    {
        RowStore<std::uint32_t> grown;
        grown.resize(buckets);  // may throw: nothing has changed yet
        old = std::move(table_);
        table_ = std::move(grown);
    }
    if (dense_) {
        for (std::size_t s = 0; s < size_; ++s) place(static_cast<std::uint32_t>(s + 1), ids);
        dense_ = false;
        return;
    }
    for (std::size_t j = 0; j < old.size(); ++j)
        if (old.data()[j] != 0) place(old.data()[j], ids);
}

void IdMap::place(std::uint32_t entry, const std::int64_t* ids) noexcept {
    const std::size_t n = table_.size();
    std::uint32_t* t = table_.data();
    std::size_t i = home(ids[entry - 1]);
    while (t[i] != 0) i = i + 1 == n ? 0 : i + 1;
    t[i] = entry;
}

bool IdMap::insert(std::int64_t id, std::size_t slot, const std::int64_t* ids) {
    if (dense_) {
        const bool next = size_ == 0 || (id > first_ && static_cast<std::uint64_t>(id) -
                                                               static_cast<std::uint64_t>(first_) == size_);
        if (slot == size_ && next) {
            if (size_ == 0) first_ = id;
            ++size_;
            return true;
        }
        if (find(id, ids) != npos) return false;
        rehash(buckets_for(size_ + 1), ids);  // out of order: the table, built once
    } else {
        if (position(id, ids) != npos) return false;
        reserve(size_ + 1, ids);
    }
    place(static_cast<std::uint32_t>(slot + 1), ids);
    ++size_;
    return true;
}

bool IdMap::erase(std::int64_t id, const std::int64_t* ids) {
    if (dense_) {
        const std::size_t slot = find(id, ids);
        if (slot == npos) return false;
        if (slot + 1 == size_) {  // the last row: still dense
            --size_;
            return true;
        }
        rehash(buckets_for(size_), ids);
    }
    std::size_t hole = position(id, ids);
    if (hole == npos) return false;
    // Backward-shift deletion: pull later entries of the probe run into the hole when their home allows it, so
    // lookups never need tombstones.
    const std::size_t n = table_.size();
    std::uint32_t* t = table_.data();
    for (std::size_t j = hole + 1 == n ? 0 : hole + 1; t[j] != 0; j = j + 1 == n ? 0 : j + 1) {
        const std::size_t h = home(ids[t[j] - 1]);
        // The entry at j may move to hole only if its home is not cyclically inside (hole, j].
        const bool stays = hole < j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!stays) {
            t[hole] = t[j];
            hole = j;
        }
    }
    t[hole] = 0;
    --size_;
    return true;
}

void IdMap::assign(std::int64_t id, std::size_t slot, const std::int64_t* ids) {
    table_.data()[position(id, ids)] = static_cast<std::uint32_t>(slot + 1);
}

}  // namespace simdex
