// The file container of docs/format.md: header and table layout, validation, atomic writing. Opening, reading
// and mapping files into blobs: blob.cpp.
#include "simdex/format.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "posix_file.hpp"

namespace simdex {
namespace format {
namespace {

using detail::Fd;
using detail::throw_errno;

// PNG-style magic: a non-ASCII first byte, then a name, then CR LF, ^Z, LF, so that text-mode transfers and
// truncation to 7 bits are detected at the first bytes.
constexpr std::uint8_t kMagic[8] = {0x89, 'S', 'D', 'X', '\r', '\n', 0x1A, '\n'};

// On-disk layouts. All fields are naturally aligned, so the structs have no padding; they are filled with
// memcpy from the file, never read in place.
struct FileHeader {
    std::uint8_t magic[8];
    std::uint32_t version;
    std::uint32_t header_size;
    std::uint64_t file_size;
    std::uint64_t table_offset;
    std::uint32_t section_count;
    std::uint32_t entry_size;
    std::uint32_t table_crc;
    std::uint32_t flags;
    std::uint8_t reserved[12];
    std::uint32_t header_crc;  // CRC32C of bytes [0, 60)
};
static_assert(sizeof(FileHeader) == kHeaderSize, "header layout");

struct TableEntry {
    char name[16];
    std::uint32_t dtype;
    std::uint32_t flags;
    std::uint64_t offset;
    std::uint64_t length;
    std::uint64_t rows;
    std::uint64_t cols;
    std::uint32_t crc;
    std::uint32_t reserved;
};
static_assert(sizeof(TableEntry) == kEntrySize, "table entry layout");

constexpr std::size_t kHeaderCrcBytes = 60;

// A fuzzing build (fuzz/README.md) accepts any checksum, so that mutated inputs reach the structural checks
// behind them; tests/test_persistence.py covers the checksums themselves.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kCheckCrc = false;
#else
constexpr bool kCheckCrc = true;
#endif
constexpr std::size_t kChunk = std::size_t(4) << 20;  // bytes checksummed and written per step

std::uint64_t align_up(std::uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

bool all_zero(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    return std::all_of(b, b + n, [](std::uint8_t c) { return c == 0; });
}

// rows * cols * size without wrapping; false on overflow.
bool byte_size(std::uint64_t rows, std::uint64_t cols, std::size_t size, std::uint64_t* out) {
    std::uint64_t rc;
    return !__builtin_mul_overflow(rows, cols, &rc) && !__builtin_mul_overflow(rc, std::uint64_t(size), out);
}

std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > kMaxNameLength) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    });
}

// What a file that is not a simdex index looks like, for the error message.
std::string describe_foreign(const std::uint8_t* b, std::size_t n) {
    auto starts = [&](const char* s, std::size_t len) { return n >= len && std::memcmp(b, s, len) == 0; };
    if (starts("SIMDEX\0\1", 8)) return "an index from a pre-release simdex (unversioned format); re-create it";
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return "looks like a Python pickle";
    if (starts("\x93NUMPY", 6)) return "looks like a NumPy .npy file";
    if (starts("PK\x03\x04", 4)) return "looks like a zip archive (NumPy .npz?)";
    if (starts("\x89HDF\r\n\x1a\n", 8)) return "looks like an HDF5 file";
    if (n >= 4 && b[0] == 'I' && b[1] == 'x') return "looks like a FAISS index; load it with faiss";
    std::string hex;
    for (std::size_t i = 0; i < std::min<std::size_t>(n, 8); ++i) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02x ", b[i]);
        hex += buf;
    }
    if (!hex.empty()) hex.pop_back();
    return "it starts with bytes " + hex + ", not the simdex magic 89 53 44 58 0d 0a 1a 0a";
}

// Output of Writer::emit: appends, and patches the header and table once the checksums are known.
struct FileSink {
    int fd;
    const std::string& path;
    void write(const void* p, std::size_t n) {
        const auto* c = static_cast<const std::uint8_t*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd, c, std::min<std::size_t>(n, std::size_t(1) << 30));
            if (w < 0) {
                if (errno == EINTR) continue;
                throw_errno(errno, "writing " + path);
            }
            c += w;
            n -= static_cast<std::size_t>(w);
        }
    }
    void patch(std::uint64_t offset, const void* p, std::size_t n) {
        const auto* c = static_cast<const std::uint8_t*>(p);
        while (n > 0) {
            const ssize_t w = ::pwrite(fd, c, n, static_cast<off_t>(offset));
            if (w < 0) {
                if (errno == EINTR) continue;
                throw_errno(errno, "writing " + path);
            }
            c += w;
            n -= static_cast<std::size_t>(w);
            offset += static_cast<std::uint64_t>(w);
        }
    }
};

struct BytesSink {
    std::vector<std::uint8_t>& out;
    void write(const void* p, std::size_t n) {
        const auto* c = static_cast<const std::uint8_t*>(p);
        out.insert(out.end(), c, c + n);
    }
    void patch(std::uint64_t offset, const void* p, std::size_t n) { std::memcpy(out.data() + offset, p, n); }
};

std::string dir_of(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::atomic<unsigned> g_temp_counter{0};

// fsync; on macOS fsync leaves data in the drive's cache, and F_FULLFSYNC is what reaches the disk.
int full_fsync(int fd) {
#if defined(__APPLE__) && defined(F_FULLFSYNC)
    if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
#endif
    return ::fsync(fd);
}

}  // namespace

std::size_t dtype_size(DType t) noexcept {
    switch (t) {
        case DType::bytes: case DType::i8: case DType::u8: return 1;
        case DType::f32: case DType::i32: case DType::u32: return 4;
        case DType::f64: case DType::i64: return 8;
    }
    return 0;
}

std::string dtype_name(DType t) {
    switch (t) {
        case DType::bytes: return "bytes";
        case DType::f32: return "float32";
        case DType::f64: return "float64";
        case DType::i8: return "int8";
        case DType::u8: return "uint8";
        case DType::i32: return "int32";
        case DType::u32: return "uint32";
        case DType::i64: return "int64";
    }
    return "dtype code " + std::to_string(static_cast<std::uint32_t>(t));
}

void check_header(const std::uint8_t* b, std::size_t n, std::uint64_t actual_size, const std::string& source) {
    const std::string at = source + ": ";
    if (actual_size == 0) throw FormatError(at + "the file is empty (0 bytes); expected a simdex index");
    const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof kMagic));
    if (std::memcmp(b, kMagic, m) != 0) throw FormatError(at + "not a simdex index file: " + describe_foreign(b, n));
    if (actual_size < kHeaderSize || n < kHeaderSize)
        throw FormatError(at + "truncated: " + std::to_string(actual_size) + " bytes, shorter than the " +
                          std::to_string(kHeaderSize) + "-byte header");
    FileHeader h;
    std::memcpy(&h, b, sizeof h);
    // Every version keeps the magic, the version field and this checksum where they are, so a damaged version
    // field is reported as damage, not as a newer format.
    const std::uint32_t crc = crc32c(b, kHeaderCrcBytes);
    if (kCheckCrc && crc != h.header_crc)
        throw FormatError(at + "header checksum mismatch (stored " + hex32(h.header_crc) + ", computed " + hex32(crc) +
                          "): the file is damaged");
    if (h.version > kVersion)
        throw FormatError(at + "written in format version " + std::to_string(h.version) +
                          " by a newer simdex; this simdex reads format version " + std::to_string(kVersion) +
                          " and older: upgrade simdex to load it");
    if (h.version == 0) throw FormatError(at + "format version 0 is not valid");
    if (h.header_size != kHeaderSize || h.entry_size != kEntrySize)
        throw FormatError(at + "header says header size " + std::to_string(h.header_size) + " and entry size " +
                          std::to_string(h.entry_size) + "; format version 1 has 64 and 64");
    if (h.flags != 0 || !all_zero(h.reserved, sizeof h.reserved))
        throw FormatError(at + "header flags or reserved bytes are set (flags " + hex32(h.flags) +
                          "); format version 1 writes zeros there");
    if (h.file_size != actual_size) {
        if (actual_size < h.file_size)
            throw FormatError(at + "truncated: the header records " + std::to_string(h.file_size) +
                              " bytes, the file has " + std::to_string(actual_size));
        throw FormatError(at + std::to_string(actual_size - h.file_size) +
                          " unexpected bytes after the end recorded in the header (" + std::to_string(h.file_size) +
                          " bytes)");
    }
    if (h.table_offset != kHeaderSize)
        throw FormatError(at + "section table at offset " + std::to_string(h.table_offset) + ", expected " +
                          std::to_string(kHeaderSize));
    if (h.section_count > kMaxSections)
        throw FormatError(at + "header claims " + std::to_string(h.section_count) + " sections, more than the " +
                          std::to_string(kMaxSections) + " allowed");
    if (kHeaderSize + std::uint64_t(h.section_count) * kEntrySize > actual_size)
        throw FormatError(at + "the section table (" + std::to_string(h.section_count) +
                          " entries) runs past the end of the file");
}

// -- Writer ----------------------------------------------------------------------------------------------------

void Writer::add(std::string name, DType dtype, std::uint64_t rows, std::uint64_t cols, const void* data,
                 bool required) {
    if (!valid_name(name))
        throw std::invalid_argument("section name '" + name + "': expected 1-15 characters of a-z 0-9 . _ -");
    for (const auto& s : sections_)
        if (s.name == name) throw std::invalid_argument("section '" + name + "' added twice");
    std::uint64_t bytes;
    if (dtype_size(dtype) == 0 || !byte_size(rows, cols, dtype_size(dtype), &bytes))
        throw std::invalid_argument("section '" + name + "': bad dtype or size");
    if (bytes > 0 && data == nullptr) throw std::invalid_argument("section '" + name + "': no data");
    if (sections_.size() >= kMaxSections) throw std::invalid_argument("too many sections");
    sections_.push_back(SectionSpec{std::move(name), dtype, rows, cols, required, data});
}

void Writer::add_unchanged(std::string name, DType dtype, std::uint64_t rows, std::uint64_t cols, const void* data,
                           bool required, std::uint32_t crc, const std::string& origin) {
    add(std::move(name), dtype, rows, cols, data, required);
    sections_.back().check_crc = true;
    sections_.back().crc = crc;
    sections_.back().origin = origin;
}

void Writer::add_copy(std::string name, const void* data, std::size_t n, bool required) {
    std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[n ? n : 1]);
    if (n) std::memcpy(copy.get(), data, n);
    add(std::move(name), DType::bytes, n, 1, copy.get(), required);
    copies_.push_back(std::move(copy));
}

std::uint64_t Writer::file_size() const {
    std::uint64_t end = align_up(kHeaderSize + sections_.size() * kEntrySize), last = end;
    for (const auto& s : sections_) {
        last = align_up(end) + s.rows * s.cols * dtype_size(s.dtype);
        end = last;
    }
    return last;
}

template <class Sink>
void Writer::emit(Sink& sink) const {
    static const std::uint8_t kZeros[kAlign] = {};
    const std::size_t table_bytes = sections_.size() * kEntrySize;
    std::vector<TableEntry> table(sections_.size());
    std::uint64_t pos = kHeaderSize + table_bytes;
    // Placeholder header and table, patched when the checksums are known.
    std::vector<std::uint8_t> zeros(kHeaderSize + table_bytes, 0);
    sink.write(zeros.data(), zeros.size());
    for (std::size_t i = 0; i < sections_.size(); ++i) {
        const SectionSpec& s = sections_[i];
        const std::uint64_t offset = align_up(pos);
        sink.write(kZeros, static_cast<std::size_t>(offset - pos));
        const std::uint64_t length = s.rows * s.cols * dtype_size(s.dtype);
        const auto* p = static_cast<const std::uint8_t*>(s.data);
        std::uint32_t crc = 0;
        for (std::uint64_t done = 0; done < length;) {
            const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, length - done));
            crc = crc32c(p + done, step, crc);
            sink.write(p + done, step);
            done += step;
        }
        if (kCheckCrc && s.check_crc && crc != s.crc)
            throw FormatError(s.origin + ": section '" + s.name + "' does not match its checksum (stored " +
                              hex32(s.crc) + ", computed " + hex32(crc) + "): the file this index was loaded from " +
                              "is damaged; nothing was written");
        TableEntry& e = table[i];
        std::memset(&e, 0, sizeof e);
        std::memcpy(e.name, s.name.data(), s.name.size());
        e.dtype = static_cast<std::uint32_t>(s.dtype);
        e.flags = s.required ? kRequired : 0;
        e.offset = offset;
        e.length = length;
        e.rows = s.rows;
        e.cols = s.cols;
        e.crc = crc;
        pos = offset + length;
    }
    FileHeader h;
    std::memset(&h, 0, sizeof h);
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kVersion;
    h.header_size = kHeaderSize;
    h.file_size = pos;
    h.table_offset = kHeaderSize;
    h.section_count = static_cast<std::uint32_t>(sections_.size());
    h.entry_size = kEntrySize;
    h.table_crc = crc32c(table.data(), table_bytes);
    h.header_crc = crc32c(&h, kHeaderCrcBytes);
    sink.patch(kHeaderSize, table.data(), table_bytes);
    sink.patch(0, &h, sizeof h);  // last: until here the temp file is not a valid index
}

std::vector<std::uint8_t> Writer::to_bytes() const {
    std::vector<std::uint8_t> out;
    out.reserve(static_cast<std::size_t>(file_size()));
    BytesSink sink{out};
    emit(sink);
    return out;
}

void Writer::write_file(const std::string& path) const {
    if (path.empty()) throw_errno(ENOENT, "saving to an empty path");
    // A fresh name per call (pid + counter, O_EXCL): concurrent saves from threads or processes never share a
    // temp file. Mode 0666 minus the umask, like any new file, or the mode of the file being replaced.
    std::string tmp;
    Fd f;
    for (int attempt = 0; f.fd < 0; ++attempt) {
        tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_temp_counter.fetch_add(1));
        f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f.fd < 0 && (errno != EEXIST || attempt > 100)) throw_errno(errno, "creating " + tmp);
    }
    try {
        struct stat old {};
        if (::stat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode)) ::fchmod(f.fd, old.st_mode & 07777);
        FileSink sink{f.fd, tmp};
        emit(sink);
        if (full_fsync(f.fd) != 0) throw_errno(errno, "fsync " + tmp);
        const int fd = f.fd;
        f.fd = -1;
        if (::close(fd) != 0) throw_errno(errno, "closing " + tmp);
        if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno(errno, "renaming " + tmp + " to " + path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    // Makes the rename itself durable. Some file systems cannot fsync a folder (EINVAL); nothing more to do there.
    const std::string dir = dir_of(path);
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.fd < 0) throw_errno(errno, "opening folder " + dir + " to fsync it (" + path + " is already replaced)");
    if (full_fsync(d.fd) != 0 && errno != EINVAL)
        throw_errno(errno, "fsync folder " + dir + " (" + path + " is replaced but may not survive a power loss)");
}

// -- Reader ----------------------------------------------------------------------------------------------------

void Reader::fail(const std::string& what) const { throw FormatError(blob_->source() + ": " + what); }

Reader::Reader(BlobPtr blob, const ReadOptions& options) : blob_(std::move(blob)) {
    const std::uint8_t* base = blob_->data();
    const std::uint64_t size = blob_->size();
    check_header(base, static_cast<std::size_t>(size), size, blob_->source());
    FileHeader h;
    std::memcpy(&h, base, sizeof h);
    const std::uint64_t table_end = kHeaderSize + std::uint64_t(h.section_count) * kEntrySize;  // <= size
    const std::uint32_t table_crc = crc32c(base + kHeaderSize, static_cast<std::size_t>(table_end - kHeaderSize));
    if (kCheckCrc && table_crc != h.table_crc)
        fail("section table checksum mismatch (stored " + hex32(h.table_crc) + ", computed " + hex32(table_crc) +
             "): the file is damaged");

    auto known = [&](const std::string& n) {
        return std::find(options.known.begin(), options.known.end(), n) != options.known.end();
    };
    struct Extent {
        std::uint64_t offset, length;
        std::string name;
    };
    std::vector<Extent> extents;
    std::vector<std::string> names;
    for (std::uint32_t i = 0; i < h.section_count; ++i) {
        TableEntry e;
        std::memcpy(&e, base + kHeaderSize + std::uint64_t(i) * kEntrySize, sizeof e);
        const std::string where = "section " + std::to_string(i);
        // Name: NUL-terminated inside its 16 bytes, NUL-padded, from the allowed alphabet.
        const char* nul = static_cast<const char*>(std::memchr(e.name, 0, sizeof e.name));
        if (!nul) fail(where + ": its name is not NUL-terminated");
        std::string name(e.name, static_cast<std::size_t>(nul - e.name));
        if (!valid_name(name) || !all_zero(nul, sizeof e.name - name.size()))
            fail(where + ": invalid section name (expected 1-15 characters of a-z 0-9 . _ -)");
        const std::string what = "section '" + name + "'";
        if (std::find(names.begin(), names.end(), name) != names.end()) fail(what + " appears twice");
        names.push_back(name);
        if ((e.flags & ~kRequired) != 0 || e.reserved != 0)
            fail(what + ": unknown flags " + hex32(e.flags) + " or reserved field set");
        if (e.offset % kAlign != 0) fail(what + ": offset " + std::to_string(e.offset) + " is not 64-byte aligned");
        if (e.offset < table_end) fail(what + ": offset " + std::to_string(e.offset) + " overlaps the header or table");
        if (e.offset > size || e.length > size - e.offset)
            fail(what + ": bytes [" + std::to_string(e.offset) + ", +" + std::to_string(e.length) +
                 ") run past the end of the file (" + std::to_string(size) + " bytes)");
        extents.push_back(Extent{e.offset, e.length, name});
        const bool required = (e.flags & kRequired) != 0;
        if (!known(name)) {
            if (required)
                fail("needs section '" + name + "', which this simdex (format version " + std::to_string(kVersion) +
                     ") does not know; upgrade simdex to load this file");
            continue;  // an optional section from a newer writer: skipped
        }
        const DType dtype = static_cast<DType>(e.dtype);
        std::uint64_t expect;
        if (dtype_size(dtype) == 0) fail(what + ": unknown element type code " + std::to_string(e.dtype));
        if (!byte_size(e.rows, e.cols, dtype_size(dtype), &expect) || expect != e.length)
            fail(what + ": " + std::to_string(e.rows) + " x " + std::to_string(e.cols) + " " + dtype_name(dtype) +
                 " does not match its length of " + std::to_string(e.length) + " bytes");
        sections_.push_back(SectionView{name, dtype, e.rows, e.cols, required, false, e.crc, base + e.offset, e.length});
    }
    std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
    for (std::size_t i = 1; i < extents.size(); ++i)
        if (extents[i - 1].offset + extents[i - 1].length > extents[i].offset)
            fail("sections '" + extents[i - 1].name + "' and '" + extents[i].name + "' overlap");
    for (SectionView& s : sections_) {
        if (std::find(options.unverified.begin(), options.unverified.end(), s.name) != options.unverified.end())
            continue;
        verify(s);
        s.verified = true;
    }
}

void Reader::verify(const SectionView& s) const {
    std::uint32_t crc = 0;
    for (std::uint64_t done = 0; done < s.length;) {
        const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, s.length - done));
        crc = crc32c(s.data + done, step, crc);
        done += step;
    }
    if (kCheckCrc && crc != s.crc)
        fail("section '" + s.name + "' checksum mismatch (stored " + hex32(s.crc) + ", computed " + hex32(crc) +
             "): the file is damaged");
}

const SectionView* Reader::find(const std::string& name) const noexcept {
    for (const SectionView& s : sections_)
        if (s.name == name) return &s;
    return nullptr;
}

const SectionView& Reader::get(const std::string& name, DType dtype, std::uint64_t rows, std::uint64_t cols) const {
    const SectionView* s = find(name);
    if (!s) fail("section '" + name + "' is missing");
    if (s->dtype != dtype) fail("section '" + name + "' holds " + dtype_name(s->dtype) + ", expected " + dtype_name(dtype));
    if (s->rows != rows || s->cols != cols)
        fail("section '" + name + "' has shape " + std::to_string(s->rows) + " x " + std::to_string(s->cols) +
             ", expected " + std::to_string(rows) + " x " + std::to_string(cols));
    return *s;
}

}  // namespace format
}  // namespace simdex
