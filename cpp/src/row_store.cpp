#include "simdex/row_store.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace simdex::detail {
namespace {

constexpr std::size_t kSmallAlign = 64;

std::size_t round_up(std::size_t x, std::size_t to) { return (x + to - 1) / to * to; }

std::align_val_t heap_alignment(std::size_t bytes) {
    return std::align_val_t(bytes >= ByteStore::kLargeBytes ? ByteStore::kHugePage : kSmallAlign);
}

#if defined(__linux__)
// `bytes` (a multiple of 2 MiB) of fresh address space starting on a 2 MiB boundary, so that the kernel can back
// it with huge pages; nullptr when the address space or memory is not there.
unsigned char* map_aligned(std::size_t bytes, int prot) {
    const std::size_t span = bytes + ByteStore::kHugePage;
    void* raw = ::mmap(nullptr, span, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::size_t head = round_up(start, ByteStore::kHugePage) - start;
    if (head) ::munmap(raw, head);
    const std::size_t tail = span - head - bytes;
    if (tail) ::munmap(static_cast<unsigned char*>(raw) + head + bytes, tail);
    auto* p = static_cast<unsigned char*>(raw) + head;
    if (prot != PROT_NONE) advise_huge_pages(p, bytes);
    return p;
}

// Grows a mapping from map_aligned to new_bytes without copying: in place when the address space after it is
// free, else moved (page tables, not data) into a new aligned range.
unsigned char* remap(unsigned char* old, std::size_t old_bytes, std::size_t new_bytes) {
    void* p = ::mremap(old, old_bytes, new_bytes, 0);
    if (p != MAP_FAILED) return static_cast<unsigned char*>(p);
    unsigned char* hole = map_aligned(new_bytes, PROT_NONE);
    if (!hole) throw std::bad_alloc();
    p = ::mremap(old, old_bytes, new_bytes, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
    if (p == MAP_FAILED) {
        ::munmap(hole, new_bytes);
        throw std::bad_alloc();
    }
    advise_huge_pages(p, new_bytes);
    return static_cast<unsigned char*>(p);
}
#endif

}  // namespace

void advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    ::madvise(p, bytes, MADV_HUGEPAGE);  // wants a page-aligned start; failure only costs speed
#else
    (void)p;
    (void)bytes;
#endif
}

ByteStore::ByteStore(ByteStore&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)),
      mapped_(std::exchange(o.mapped_, false)) {}

ByteStore& ByteStore::operator=(ByteStore&& o) noexcept {
    if (this != &o) {
        release();
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        cap_ = std::exchange(o.cap_, 0);
        mapped_ = std::exchange(o.mapped_, false);
    }
    return *this;
}

ByteStore::~ByteStore() { release(); }

void ByteStore::release() noexcept {
    if (!data_) return;
#if defined(__linux__)
    if (mapped_) {
        ::munmap(data_, cap_);
    } else
#endif
    {
        ::operator delete(data_, heap_alignment(cap_));
    }
    data_ = nullptr;
    size_ = cap_ = 0;
    mapped_ = false;
}

void ByteStore::reserve(std::size_t bytes) {
    if (bytes <= cap_) return;
#if defined(__linux__)
    if (bytes >= kLargeBytes) {
        const std::size_t want = round_up(bytes, kHugePage);
        if (mapped_) {
            data_ = remap(data_, cap_, want);
        } else {
            unsigned char* p = map_aligned(want, PROT_READ | PROT_WRITE);
            if (!p) throw std::bad_alloc();
            if (size_) std::memcpy(p, data_, size_);  // under 1 MiB: the one copy on the way to a mapping
            const std::size_t size = size_;
            release();
            data_ = p;
            size_ = size;
            mapped_ = true;
        }
        cap_ = want;
        return;
    }
#endif
    auto* p = static_cast<unsigned char*>(::operator new(bytes, heap_alignment(bytes)));
    if (size_) std::memcpy(p, data_, size_);
    const std::size_t size = size_;
    release();
    data_ = p;
    size_ = size;
    cap_ = bytes;
}

void ByteStore::make_room(std::size_t bytes) {
    if (bytes > cap_) reserve(std::max(bytes, cap_ + cap_ / 2));
}

void ByteStore::append(const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    make_room(size_ + bytes);
    std::memcpy(data_ + size_, src, bytes);
    size_ += bytes;
}

void ByteStore::resize(std::size_t bytes) {
    if (bytes > size_) {
        make_room(bytes);
        std::memset(data_ + size_, 0, bytes - size_);
    }
    size_ = bytes;
}

}  // namespace simdex::detail
