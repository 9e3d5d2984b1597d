#include "simdex/id_map.hpp"

#include "simdex/prefetch.hpp"

#include <algorithm>
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

// A hash scaled onto any table size (multiply-shift): the table grows by half, not to powers of two. The tag
// is the hash's low bits above the entry's slot bits.
std::size_t IdMap::home(std::uint64_t h) const noexcept {
    return static_cast<std::size_t>(mul_high(h, table_.size()));
}

std::uint64_t IdMap::hash(std::int64_t id) noexcept { return mix(static_cast<std::uint64_t>(id)); }

// The smallest slot width whose largest value stays above 2 n + 2 (room to grow before a re-tag).
unsigned IdMap::slot_bits_for(std::size_t n) noexcept {
    unsigned bits = 8;
    while (bits < 32 && (std::uint64_t(1) << bits) - 1 < 2 * std::uint64_t(n) + 2) ++bits;
    return bits;
}

std::size_t IdMap::position(std::int64_t id, const std::int64_t* ids) const noexcept {
    const std::size_t n = table_.size();
    if (n == 0) return npos;
    const std::uint32_t* t = table_.data();
    const std::uint64_t h = hash(id);
    for (std::size_t i = home(h);; i = i + 1 == n ? 0 : i + 1) {
        if (t[i] == 0) return npos;
        if (tagged(t[i], h) && ids[slot_in(t[i])] == id) return i;
    }
}

void IdMap::prefetch_entry(std::int64_t id, const std::int64_t* ids) const noexcept {
    if (listed_ == 0) return;  // no table, and a position is then trusted without reading its key
    const std::size_t off = position_of(id);
    if (off < size_) prefetch_line(ids + off);
    if (table_.size() != 0) prefetch_line(table_.data() + home(hash(id)));
}

void IdMap::prefetch_key(std::int64_t id, const std::int64_t* ids) const noexcept {
    if (listed_ == 0 || table_.size() == 0) return;
    const std::uint64_t h = hash(id);
    const std::uint32_t e = table_.data()[home(h)];
    if (tagged(e, h)) prefetch_line(ids + slot_in(e));
}

void IdMap::find_many(const std::int64_t* keys, std::size_t n, const std::int64_t* ids,
                      std::size_t* slots) const noexcept {
    constexpr std::size_t kAhead = 16;  // lookups in flight per stage
    for (std::size_t i = 0; i < n + 2 * kAhead; ++i) {
        if (i < n) prefetch_entry(keys[i], ids);
        if (i >= kAhead && i - kAhead < n) prefetch_key(keys[i - kAhead], ids);
        if (i >= 2 * kAhead && i - 2 * kAhead < n) slots[i - 2 * kAhead] = find(keys[i - 2 * kAhead], ids);
    }
}

std::size_t IdMap::find_listed(std::int64_t id, const std::int64_t* ids) const noexcept {
    const std::size_t i = position(id, ids);
    return i == npos ? npos : slot_in(table_.data()[i]);
}

std::size_t IdMap::buckets_for(std::size_t n) const noexcept {
    std::size_t buckets = table_.size() ? table_.size() : 8;
    while (buckets / 4 * 3 < n) buckets += buckets / 2;
    return buckets;
}

void IdMap::reserve(std::size_t n, const std::int64_t* ids) {
    if (n <= size_ || (positional_ && listed_ == 0)) return;  // rows in order need no entries
    const std::size_t want = listed_ + (n - size_);           // at worst, every new id listed
    if (want + gone_ > table_.size() / 4 * 3 || n + 1 >= slot_mask()) rehash(buckets_for(want), ids, n);
}

void IdMap::reserve_removals(std::size_t n, const std::int64_t* ids) {
    if (!positional_) return;  // removals only unlist
    const std::size_t want = listed_ + std::min(n, size_);
    if (want > std::max<std::size_t>(64, size_ / 4)) return;  // list() will drop positions instead
    if (want + gone_ > table_.size() / 4 * 3) rehash(buckets_for(want), ids, size_);
}

// A new table of `buckets` entries with slot widths for `rows` rows; gone entries are dropped.
void IdMap::rehash(std::size_t buckets, const std::int64_t* ids, std::size_t rows) {
    RowStore<std::uint32_t> old;
    const std::uint32_t old_mask = slot_mask();
    {
        RowStore<std::uint32_t> grown;
        grown.resize(buckets);  // may throw: nothing has changed yet
        old = std::move(table_);
        table_ = std::move(grown);
    }
    slot_bits_ = slot_bits_for(std::max(rows, size_));
    gone_ = 0;
    for (std::size_t j = 0; j < old.size(); ++j) {
        const std::uint32_t e = old.data()[j];
        if (e != 0 && e != kGone) place((e & old_mask) - 1, ids);
    }
}

void IdMap::drop_positions(const std::int64_t* ids) {
    RowStore<std::uint32_t> all;
    all.resize(buckets_for(size_));
    table_ = std::move(all);
    slot_bits_ = slot_bits_for(size_);
    gone_ = 0;
    positional_ = false;
    for (std::size_t s = 0; s < size_; ++s) place(s, ids);
    listed_ = size_;
}

void IdMap::place(std::size_t slot, const std::int64_t* ids) noexcept {
    const std::size_t n = table_.size();
    std::uint32_t* t = table_.data();
    const std::uint64_t h = hash(ids[slot]);
    std::size_t i = home(h);
    while (t[i] != 0 && t[i] != kGone) i = i + 1 == n ? 0 : i + 1;
    if (t[i] == kGone) --gone_;
    t[i] = entry(h, slot);
}

void IdMap::list(std::size_t slot, const std::int64_t* ids) {
    if (positional_ && listed_ + 1 > std::max<std::size_t>(64, size_ / 4)) return drop_positions(ids);
    if (listed_ + 1 + gone_ > table_.size() / 4 * 3 || slot + 2 > slot_mask())
        rehash(buckets_for(listed_ + 1), ids, size_);
    place(slot, ids);
    ++listed_;
}

// Marks entry i gone; when the entry after it is empty, no probe run passes through i, so it and the gone
// entries just before it become empty instead.
void IdMap::unlist(std::size_t i) noexcept {
    const std::size_t n = table_.size();
    std::uint32_t* t = table_.data();
    --listed_;
    if (t[i + 1 == n ? 0 : i + 1] != 0) {
        t[i] = kGone;
        ++gone_;
        return;
    }
    t[i] = 0;
    for (std::size_t j = i == 0 ? n - 1 : i - 1; t[j] == kGone; j = j == 0 ? n - 1 : j - 1) {
        t[j] = 0;
        --gone_;
    }
}

bool IdMap::insert(std::int64_t id, std::size_t slot, const std::int64_t* ids) {
    if (size_ == 0) {  // empty (again): start a new run at this id
        *this = IdMap();
        first_ = id;
    } else if (find(id, ids) != npos) {
        return false;
    }
    ++size_;  // list reads size_ (to drop positions, or to size slots); the id array already holds this id
    if (at_home(id, slot)) return true;
    try {
        list(slot, ids);
    } catch (...) {
        --size_;
        throw;
    }
    return true;
}

bool IdMap::erase(std::int64_t id, const std::int64_t* ids) {
    if (at_position(id, ids) == npos) {
        const std::size_t i = listed_ ? position(id, ids) : npos;
        if (i == npos) return false;
        unlist(i);
    }
    --size_;
    return true;
}

void IdMap::assign(std::int64_t id, std::size_t slot, const std::int64_t* ids) {
    const std::size_t i = listed_ ? position(id, ids) : npos;
    if (i != npos) {
        if (at_home(id, slot))
            unlist(i);
        else
            table_.data()[i] = entry(hash(id), slot);  // a lower slot than before: it fits the slot width
        return;
    }
    // It sat at its own position and now does not: list it (ids[slot] already holds it).
    list(slot, ids);
}

}  // namespace simdex
