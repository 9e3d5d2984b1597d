// Growable storage for an index's rows (float rows, int8 codes, ids and the id table).
//
// A std::vector grows by allocating a new buffer and copying into it, so for a moment it holds the old rows and
// the new ones: an index of N bytes needs 2N at its peak while it grows. On Linux, buffers of 1 MiB and more are
// instead anonymous mappings on 2 MiB boundaries, advised for transparent huge pages (a scan streams through them,
// and 4 KiB pages cost a TLB miss every 4 KiB), and they grow with mremap: the kernel moves the pages, it copies
// nothing, and the peak stays N. Being mappings, they also stay out of the malloc heap, where long-lived blocks
// between the large short-lived ones of an encoder would fragment it. Elsewhere large buffers are heap blocks
// that grow by copying.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace simdex {
namespace detail {

// Asks the OS to back [p, p + bytes) with transparent huge pages (Linux madvise; a no-op elsewhere).
void advise_huge_pages(void* p, std::size_t bytes) noexcept;

// Untyped storage behind RowStore. Capacity grows by half again at least, so many small appends move each byte
// O(1) times. reserve gives the strong guarantee: on std::bad_alloc the contents are as they were.
class ByteStore {
  public:
    static constexpr std::size_t kLargeBytes = std::size_t(1) << 20;  // from here: a mapping (Linux)
    static constexpr std::size_t kHugePage = std::size_t(2) << 20;

    ByteStore() = default;
    ByteStore(const ByteStore&) = delete;
    ByteStore& operator=(const ByteStore&) = delete;
    ByteStore(ByteStore&& o) noexcept;
    ByteStore& operator=(ByteStore&& o) noexcept;
    ~ByteStore();

    unsigned char* data() noexcept { return data_; }
    const unsigned char* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return cap_; }
    bool mapped() const noexcept { return mapped_; }  // an mremap-able mapping (Linux, large)

    void reserve(std::size_t bytes);                   // exactly at least `bytes` (no geometric step)
    void make_room(std::size_t bytes);                 // at least `bytes`, growing by half again at least
    void append(const void* src, std::size_t bytes);   // grows geometrically when full
    void resize(std::size_t bytes);                    // new bytes are zero; shrinking keeps the capacity

  private:
    void release() noexcept;
    unsigned char* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t cap_ = 0;
    bool mapped_ = false;
};

}  // namespace detail

// Typed view of a ByteStore: counts are in elements of T (float or std::int8_t), data is 64-byte aligned.
template <class T>
class RowStore {
    static_assert(std::is_trivially_copyable<T>::value, "RowStore holds plain numbers");

  public:
    T* data() noexcept { return reinterpret_cast<T*>(bytes_.data()); }
    const T* data() const noexcept { return reinterpret_cast<const T*>(bytes_.data()); }
    std::size_t size() const noexcept { return bytes_.size() / sizeof(T); }
    std::size_t capacity() const noexcept { return bytes_.capacity() / sizeof(T); }
    bool mapped() const noexcept { return bytes_.mapped(); }
    void reserve(std::size_t n) { bytes_.reserve(n * sizeof(T)); }
    void make_room(std::size_t n) { bytes_.make_room(n * sizeof(T)); }  // before appends; strong guarantee
    void append(const T* src, std::size_t n) { bytes_.append(src, n * sizeof(T)); }
    void resize(std::size_t n) { bytes_.resize(n * sizeof(T)); }

  private:
    detail::ByteStore bytes_;
};

}  // namespace simdex
