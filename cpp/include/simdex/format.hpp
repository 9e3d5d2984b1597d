// The simdex file container (docs/format.md): a 64-byte header, a table of typed, checksummed sections, and
// the sections themselves, 64-byte aligned so a mapped file can be searched in place. Little-endian only.
//
// Writer collects named sections (pointers, not copies) and writes them atomically and durably. Reader takes the
// bytes of a whole file (a read-only mapping, a heap copy, or a caller's buffer), validates the header, the
// table, every bound and every checksum before anything else looks at them, and then hands out checked views.
// Index-level meaning (which sections an index needs, what they must agree on) lives in io.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "simdex index files are little-endian and are used in place; big-endian hosts are not supported"
#endif

namespace simdex {

// A damaged, truncated, foreign or unsupported index file (Python: simdex.FormatError, a ValueError).
class FormatError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

namespace format {

constexpr std::uint32_t kVersion = 1;         // the newest container version this build reads and writes
constexpr std::size_t kAlign = 64;            // section offsets are multiples of this
constexpr std::size_t kHeaderSize = 64;
constexpr std::size_t kEntrySize = 64;
constexpr std::size_t kMaxSections = 4096;    // a table larger than this is refused without reading it
constexpr std::size_t kMaxNameLength = 15;    // plus a terminating NUL in the 16-byte field
constexpr std::uint32_t kRequired = 1u;       // section flag: a reader that does not know the section must refuse

// Element type of a section; a section holds rows x cols elements, row-major.
enum class DType : std::uint32_t { bytes = 0, f32 = 1, f64 = 2, i8 = 3, u8 = 4, i32 = 5, u32 = 6, i64 = 7 };
std::size_t dtype_size(DType t) noexcept;  // 0 for a code this build does not know
std::string dtype_name(DType t);

// CRC32C (Castagnoli), chained: crc32c(b, nb, crc32c(a, na)) == crc32c(a+b). SSE4.2 when the CPU has it.
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;
std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;  // table-driven
bool crc32c_hardware() noexcept;  // true when crc32c() uses the CPU instruction

// Immutable bytes of a whole file. Index rows may point into it, so it is shared, never copied: a read-only
// mapping (mapped() true) or a 64-byte aligned heap copy. The first 64 bytes have already passed check_header.
class Blob {
  public:
    virtual ~Blob() = default;
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool mapped() const noexcept { return mapped_; }
    const std::string& source() const noexcept { return source_; }  // the path, or "<bytes>", for messages

  protected:
    Blob(const std::uint8_t* data, std::size_t size, bool mapped, std::string source)
        : data_(data), size_(size), mapped_(mapped), source_(std::move(source)) {}

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    bool mapped_;
    std::string source_;
};
using BlobPtr = std::shared_ptr<const Blob>;

// Each opens path read-only; a missing or unreadable file throws std::system_error (OSError), a directory, an
// empty file or a file whose first bytes are not a valid simdex header throws FormatError before the rest is
// read or mapped.
BlobPtr map_file(const std::string& path);
BlobPtr read_file(const std::string& path);
BlobPtr copy_bytes(const void* data, std::size_t size, std::string source = "<bytes>");

// Checks the fixed header (magic, checksum, version, recorded file size against actual_size); FormatError
// saying what is wrong otherwise. n is how many bytes of the file's start are at hand.
void check_header(const std::uint8_t* bytes, std::size_t n, std::uint64_t actual_size, const std::string& source);

// One section as the writer receives it. The data is not copied: it must stay valid until the write returns.
struct SectionSpec {
    std::string name;
    DType dtype = DType::bytes;
    std::uint64_t rows = 0, cols = 0;
    bool required = false;
    const void* data = nullptr;
    bool check_crc = false;  // add_unchanged: the bytes must still have the checksum they had in file origin
    std::uint32_t crc = 0;
    std::string origin;
};

class Writer {
  public:
    // Adds a section of rows x cols elements of dtype. std::invalid_argument on a bad or duplicate name.
    void add(std::string name, DType dtype, std::uint64_t rows, std::uint64_t cols, const void* data, bool required);
    // A section copied unchanged from a loaded file, with the checksum it had there. Bytes that no longer match
    // it (a mapped file damaged on disk, never verified because that would read it all) make the write throw
    // FormatError, leaving no file behind: damage is reported, never signed with a fresh checksum.
    void add_unchanged(std::string name, DType dtype, std::uint64_t rows, std::uint64_t cols, const void* data,
                       bool required, std::uint32_t crc, const std::string& origin);
    // A byte section (text, JSON, a packed struct).
    void add_bytes(std::string name, const void* data, std::size_t n, bool required) {
        add(std::move(name), DType::bytes, n, 1, data, required);
    }
    // A byte section copied into the writer (small things built on the spot, like a packed header struct).
    void add_copy(std::string name, const void* data, std::size_t n, bool required);
    std::uint64_t file_size() const;

    // Writes path + ".tmp-<pid>-<n>" in the same folder, fsyncs it, renames it over path and fsyncs the folder:
    // a crash at any moment leaves the old file or the new one. A write error (disk full, quota, RLIMIT_FSIZE)
    // throws std::system_error, removes the temp file and leaves path as it was.
    void write_file(const std::string& path) const;
    std::vector<std::uint8_t> to_bytes() const;

  private:
    template <class Sink>
    void emit(Sink& sink) const;
    std::vector<SectionSpec> sections_;
    std::vector<std::unique_ptr<std::uint8_t[]>> copies_;  // heap blocks stay put when the writer moves
};

// A validated section. data points into the reader's blob; length == rows * cols * dtype_size(dtype).
struct SectionView {
    std::string name;
    DType dtype;
    std::uint64_t rows, cols;
    bool required;
    bool verified;  // checksum checked (false only for sections the caller asked to leave unchecked)
    std::uint32_t crc;
    const std::uint8_t* data;
    std::uint64_t length;

    template <class T>
    const T* as() const noexcept {
        return reinterpret_cast<const T*>(data);
    }
};

struct ReadOptions {
    // Sections this reader understands; an unknown section marked required makes the file unreadable, an
    // unknown optional one is skipped (its checksum too).
    std::vector<std::string> known;
    // Known sections whose checksum is not computed up front (bulk data of a mapped file: checking it would read
    // the whole file). Their bounds and sizes are still checked.
    std::vector<std::string> unverified;
};

class Reader {
  public:
    // Validates the whole container: header, table checksum, names, flags, dtypes, sizes, bounds, overlaps,
    // required sections and section checksums. FormatError on the first problem found.
    Reader(BlobPtr blob, const ReadOptions& options);

    const BlobPtr& blob() const noexcept { return blob_; }
    const std::vector<SectionView>& sections() const noexcept { return sections_; }  // known sections, file order
    const SectionView* find(const std::string& name) const noexcept;

    // The named section, checked to exist with this dtype and exactly this shape; FormatError otherwise. Every
    // value a file can hold is a shape it can claim, so none of them means "any".
    const SectionView& get(const std::string& name, DType dtype, std::uint64_t rows, std::uint64_t cols) const;
    // Computes the checksum of a section left unverified; FormatError on a mismatch.
    void verify(const SectionView& s) const;

    [[noreturn]] void fail(const std::string& what) const;  // FormatError "<source>: <what>"

  private:
    BlobPtr blob_;
    std::vector<SectionView> sections_;
};

}  // namespace format
}  // namespace simdex
