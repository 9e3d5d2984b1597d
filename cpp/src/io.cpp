// Index files: FlatIndex::save writes a temp file beside the target, fsyncs it, renames it over the target and
// fsyncs the folder, so a crash leaves the old file or the new one. load checks every size before allocating.
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "simdex/index.hpp"

namespace simdex {
namespace {

constexpr char kMagic[8] = {'S', 'I', 'M', 'D', 'E', 'X', '\0', '\1'};
constexpr std::uint32_t kVersion = 1;

[[noreturn]] void throw_errno(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

void write_all(int fd, const void* p, std::size_t n, const std::string& path) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw_errno("writing " + path);
        }
        c += w;
        n -= static_cast<std::size_t>(w);
    }
}

std::string dir_of(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

struct Header {
    char magic[8];
    std::uint32_t version;
    std::uint32_t metric;
    std::uint64_t dim;
    std::uint64_t count;
    std::int64_t next_id;
    std::uint64_t metadata_bytes;
};

}  // namespace

void FlatIndex::save(const std::string& path) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    Header h{};
    std::memcpy(h.magic, kMagic, 8);
    h.version = kVersion;
    h.metric = static_cast<std::uint32_t>(metric_);
    h.dim = dim_;
    h.count = ids_.size();
    h.next_id = next_id_;
    h.metadata_bytes = metadata_.size();

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    Fd f;
    f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) throw_errno("creating " + tmp);
    try {
        write_all(f.fd, &h, sizeof h, tmp);
        write_all(f.fd, ids_.data(), ids_.size() * sizeof(std::int64_t), tmp);
        write_all(f.fd, data_.data(), ids_.size() * dim_ * sizeof(float), tmp);
        write_all(f.fd, metadata_.data(), metadata_.size(), tmp);
        if (::fsync(f.fd) != 0) throw_errno("fsync " + tmp);
        if (::close(f.fd) != 0) {
            f.fd = -1;
            throw_errno("closing " + tmp);
        }
        f.fd = -1;
        if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("renaming " + tmp + " to " + path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    Fd dir;
    dir.fd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir.fd >= 0) ::fsync(dir.fd);
}

FlatIndex FlatIndex::load(const std::string& path) {
    Fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) throw_errno("opening " + path);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw_errno("stat " + path);
    if (!S_ISREG(st.st_mode)) throw std::invalid_argument(path + " is not a regular file");
    const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    auto read_exact = [&](void* p, std::size_t n) {
        char* c = static_cast<char*>(p);
        while (n > 0) {
            const ssize_t r = ::read(f.fd, c, n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) throw_errno("reading " + path);
            if (r == 0) throw std::invalid_argument(path + ": file is truncated");
            c += r;
            n -= static_cast<std::size_t>(r);
        }
    };
    Header h{};
    if (size < sizeof h) throw std::invalid_argument(path + ": not a simdex index (file too short)");
    read_exact(&h, sizeof h);
    if (std::memcmp(h.magic, kMagic, 8) != 0) throw std::invalid_argument(path + ": not a simdex index (bad magic)");
    if (h.version != kVersion)
        throw std::invalid_argument(path + ": unsupported format version " + std::to_string(h.version));
    if (h.metric > 1) throw std::invalid_argument(path + ": unknown metric code " + std::to_string(h.metric));
    if (h.dim == 0 || h.dim > (1u << 20)) throw std::invalid_argument(path + ": bad dim " + std::to_string(h.dim));
    const std::uint64_t avail = size - sizeof h;
    const std::uint64_t row_bytes = 8 + h.dim * 4;
    if (h.count > avail / row_bytes || h.metadata_bytes > avail - h.count * row_bytes ||
        sizeof h + h.count * row_bytes + h.metadata_bytes != size)
        throw std::invalid_argument(path + ": sizes in the header do not match the file size");
    FlatIndex index(h.dim, static_cast<Metric>(h.metric));
    index.ids_.resize(h.count);
    read_exact(index.ids_.data(), h.count * 8);
    index.data_.resize(h.count * h.dim);
    read_exact(index.data_.data(), h.count * h.dim * 4);
    index.metadata_.resize(h.metadata_bytes);
    read_exact(index.metadata_.data(), h.metadata_bytes);
    index.slot_of_.reserve(h.count);
    for (std::size_t i = 0; i < h.count; ++i) {
        if (index.ids_[i] < 0 || !index.slot_of_.emplace(index.ids_[i], i).second)
            throw std::invalid_argument(path + ": negative or duplicate id in file");
        if (index.ids_[i] >= h.next_id) throw std::invalid_argument(path + ": id beyond next_id in file");
    }
    index.next_id_ = h.next_id;
    return index;
}

}  // namespace simdex
