// The bytes of a whole index file (format.hpp, Blob): a read-only mapping, a 64-byte aligned heap copy of the
// file, or of a caller's buffer. The header is checked before the rest is read, mapped or allocated.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <memory>
#include <new>
#include <sys/mman.h>
#include <sys/stat.h>

#include "posix_file.hpp"
#include "simdex/format.hpp"

namespace simdex {
namespace format {
namespace {

using detail::Fd;
using detail::throw_errno;

// Opens path for reading and checks it is a non-empty regular file; returns its size. O_NONBLOCK: opening a
// named pipe would otherwise wait for a writer (it has no effect on regular files).
std::uint64_t open_regular(const std::string& path, Fd& f) {
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f.fd < 0) throw_errno(errno, "opening " + path);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw_errno(errno, "stat " + path);
    if (S_ISDIR(st.st_mode)) throw FormatError(path + ": is a directory, not a simdex index file");
    if (!S_ISREG(st.st_mode)) throw FormatError(path + ": is not a regular file, so not a simdex index file");
    if (st.st_size == 0) throw FormatError(path + ": the file is empty (0 bytes); expected a simdex index");
    return static_cast<std::uint64_t>(st.st_size);
}

// Reads exactly n bytes at offset; false if the file ended first.
bool pread_exact(int fd, void* p, std::size_t n, std::uint64_t offset, const std::string& path) {
    auto* c = static_cast<std::uint8_t*>(p);
    while (n > 0) {
        const std::size_t step = std::min<std::size_t>(n, std::size_t(1) << 30);
        const ssize_t r = ::pread(fd, c, step, static_cast<off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(errno, "reading " + path);
        }
        if (r == 0) return false;
        c += r;
        n -= static_cast<std::size_t>(r);
        offset += static_cast<std::uint64_t>(r);
    }
    return true;
}

void check_file_header(int fd, std::uint64_t size, const std::string& path) {
    std::uint8_t head[kHeaderSize];
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, kHeaderSize));
    if (!pread_exact(fd, head, n, 0, path)) throw FormatError(path + ": the file changed size while it was read");
    check_header(head, n, size, path);
}

class HeapBlob final : public Blob {
  public:
    static std::shared_ptr<HeapBlob> allocate(std::size_t size, std::string source) {
        auto* p = static_cast<std::uint8_t*>(::operator new(size, std::align_val_t(kAlign)));
        return std::shared_ptr<HeapBlob>(new HeapBlob(p, size, std::move(source)));
    }
    ~HeapBlob() override { ::operator delete(bytes_, std::align_val_t(kAlign)); }
    std::uint8_t* bytes() const noexcept { return bytes_; }

  private:
    HeapBlob(std::uint8_t* p, std::size_t size, std::string source) : Blob(p, size, false, std::move(source)), bytes_(p) {}
    std::uint8_t* bytes_;
};

class MappedBlob final : public Blob {
  public:
    MappedBlob(const void* p, std::size_t size, std::string source)
        : Blob(static_cast<const std::uint8_t*>(p), size, true, std::move(source)) {}
    ~MappedBlob() override { ::munmap(const_cast<std::uint8_t*>(data()), size()); }
};

}  // namespace

BlobPtr map_file(const std::string& path) {
    Fd f;
    const std::uint64_t size = open_regular(path, f);
    check_file_header(f.fd, size, path);
    if (size > std::numeric_limits<std::size_t>::max()) throw FormatError(path + ": too large to map");
    void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, f.fd, 0);
    if (p == MAP_FAILED) throw_errno(errno, "mapping " + path);
    return std::make_shared<MappedBlob>(p, static_cast<std::size_t>(size), path);
}

BlobPtr read_file(const std::string& path) {
    Fd f;
    const std::uint64_t size = open_regular(path, f);
    // The header is checked before the file size is trusted with an allocation.
    check_file_header(f.fd, size, path);
    auto blob = HeapBlob::allocate(static_cast<std::size_t>(size), path);
    if (!pread_exact(f.fd, blob->bytes(), static_cast<std::size_t>(size), 0, path))
        throw FormatError(path + ": the file changed size while it was read");
    return blob;
}

BlobPtr copy_bytes(const void* data, std::size_t size, std::string source) {
    check_header(static_cast<const std::uint8_t*>(data), size, size, source);
    auto blob = HeapBlob::allocate(size, std::move(source));
    std::memcpy(blob->bytes(), data, size);
    return blob;
}

}  // namespace format
}  // namespace simdex
