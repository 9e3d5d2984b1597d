// FlatIndex files: which sections an index writes and what load demands of them (docs/format.md, "Index
// sections"). The container itself (header, table, checksums, atomic write) is format.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "index_checks.hpp"
#include "simdex/dispatch.hpp"
#include "simdex/format.hpp"
#include "simdex/index.hpp"

namespace simdex {
namespace {

using format::DType;

// Section names of an index file. New kinds of data get new names (and docs/format.md entries); a section
// without which an index would give wrong results is written as required, so an older simdex refuses it.
constexpr const char* kIndexSection = "index";
constexpr const char* kIdsSection = "ids";
constexpr const char* kVectorsSection = "vectors.f32";
constexpr const char* kMetadataSection = "metadata";
// int8 indexes (docs/int8.md): the calibration (per-dimension offsets and steps, absent until calibrated), the
// codes, and "vectors.f32" only when the index keeps the original rows.
constexpr const char* kOffsetSection = "int8.offset";
constexpr const char* kStepSection = "int8.step";
constexpr const char* kCodesSection = "int8.codes";
// binary indexes (binary.hpp): the centre and scale (absent until trained) and the bit rows (uint8, b1_bytes(dim)
// columns); "vectors.f32" only when the index keeps the original rows.
constexpr const char* kCenterSection = "binary.center";
constexpr const char* kScaleSection = "binary.scale";
constexpr const char* kBitsSection = "binary.codes";
// l2 indexes: the squared norm of each row the scan scores (int8: of the decoded codes).
constexpr const char* kNormsSection = "l2.norms";

// "index" section flags. A reader that does not know a bit refuses the file.
constexpr std::uint32_t kFlagInt8 = 1u;       // rows are int8 codes
constexpr std::uint32_t kFlagOriginals = 2u;  // an int8 or binary index that also keeps the float rows
constexpr std::uint32_t kFlagBinary = 4u;     // rows are 1-bit codes
constexpr std::uint32_t kFlagInt8Tier = 8u;   // a binary index that also keeps int8 codes (the int8.* sections)
constexpr std::uint32_t kKnownFlags = kFlagInt8 | kFlagOriginals | kFlagBinary | kFlagInt8Tier;

// Sections the Python layer stores through FlatIndex::set_extra_sections: an index pre-transform (PCA, random
// projection) as JSON parameters, its matrix, the mean it centers with, and its explained variance.
constexpr const char* kExtraSections[] = {"transform", "transform.mat", "transform.mean", "transform.var"};

bool is_extra_section(const std::string& name) {
    for (const char* e : kExtraSections)
        if (name == e) return true;
    return false;
}

constexpr std::uint64_t kMaxDim = std::uint64_t(1) << 20;  // as FlatIndex's constructor

// The "index" section: 64 bytes, little-endian.
struct IndexHeader {
    std::uint64_t dim;
    std::uint64_t count;     // rows of "ids" and "vectors.f32"
    std::uint64_t next_id;   // the next automatic id, at most 2^63; every stored id is below it
    std::uint32_t metric;    // 0 cosine (rows stored unit-norm), 1 inner product, 2 squared l2
    std::uint32_t flags;     // kFlagInt8, kFlagOriginals
    std::uint8_t reserved[32];
};
static_assert(sizeof(IndexHeader) == 64, "index section layout");

// Strict UTF-8 (as Python decodes it: no overlong forms, surrogates or code points past U+10FFFF); returns the
// offset of the first bad byte, or n.
std::size_t utf8_error(const std::uint8_t* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const std::uint8_t c = s[i];
        std::size_t len;
        std::uint32_t cp, min;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len > n - i) return i;
        for (std::size_t j = 1; j < len; ++j) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

// Why load refuses the stored rows, naming the first bad one, or "" when it accepts them. A checksummed section
// can still hold what no index writes, if it was written that way on purpose: NaN or Inf, a cosine row that is
// neither unit-norm nor zero, an ip row over kMaxIpNorm (either would make scores overflow), or the code -128
// (the kernels' exactness assumes codes in [-127, 127]; the encoder never makes it), an l2 row over kMaxL2Norm, or
// under l2 a stored squared norm (norms, when given: float32 rows) that is not the row's.
std::string bad_rows(const float* rows, std::size_t n, std::size_t dim, Metric metric, const float* norms) {
    const auto dot = active_kernels().dot_f32;
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = rows + r * dim;
        for (std::size_t i = 0; i < dim; ++i)
            if (!std::isfinite(row[i])) return "the vector of row " + std::to_string(r) + " holds NaN or Inf";
        const float norm2 = dot(row, row, dim);
        if (metric == Metric::cosine && norm2 != 0.0f && std::fabs(norm2 - 1.0f) > 1e-3f)
            return "the vector of row " + std::to_string(r) + " has squared norm " + std::to_string(norm2) +
                   " under the cosine metric (rows are stored unit-norm)";
        // Both sides are float sums of the same squares: far closer than this unless the norm was changed.
        if (norms && !(std::fabs(norms[r] - norm2) <= 1e-3f * norm2 + 1e-30f))
            return "the stored squared norm of row " + std::to_string(r) + " (" + std::to_string(norms[r]) +
                   ") is not its vector's (" + std::to_string(norm2) + ")";
    }
    const std::size_t big = metric == Metric::cosine ? n : first_row_over_ip_norm(rows, n, dim, max_norm(metric));
    if (big != n)
        return "the vector of row " + std::to_string(big) + " has an L2 norm above " +
               (metric == Metric::l2 ? "2**62 (the l2 limit)" : "2**63 (the ip limit)");
    return "";
}

std::string bad_norms(const float* norms, std::size_t n) {
    for (std::size_t r = 0; r < n; ++r)
        if (!(norms[r] >= 0.0f && norms[r] <= std::numeric_limits<float>::max()))
            return "the stored squared norm of row " + std::to_string(r) + " is negative, NaN or Inf";
    return "";
}

// Bit rows whose padding (the bits past dim in the last byte) is set: the encoder never writes them.
std::string bad_bits(const std::int8_t* codes, std::size_t n, std::size_t dim) {
    if (dim % 8 == 0) return "";
    const std::size_t nb = kernels::b1_bytes(dim);
    const unsigned pad = 0xFFu & ~((1u << (dim % 8)) - 1u);
    for (std::size_t r = 0; r < n; ++r)
        if (static_cast<std::uint8_t>(codes[r * nb + nb - 1]) & pad)
            return "binary code row " + std::to_string(r) + " sets bits past dim";
    return "";
}

std::string bad_codes(const std::int8_t* codes, std::size_t n, std::size_t dim) {
    const std::size_t at = static_cast<std::size_t>(std::find(codes, codes + n * dim, std::int8_t(-128)) - codes);
    return at == n * dim ? "" : "code -128 at row " + std::to_string(at / dim) + " (codes are in [-127, 127])";
}

}  // namespace

format::Writer FlatIndex::writer_unlocked() const {
    IndexHeader h;
    std::memset(&h, 0, sizeof h);
    h.dim = dim_;
    h.count = ids_.size();
    h.next_id = next_id_;
    h.metric = metric_ == Metric::cosine ? 0 : metric_ == Metric::ip ? 1 : 2;
    if (dtype_ == Dtype::int8) h.flags = kFlagInt8 | (keep_originals_ ? kFlagOriginals : 0u);
    if (dtype_ == Dtype::binary)
        h.flags = kFlagBinary | (keep_originals_ ? kFlagOriginals : 0u) | (keep_int8_ ? kFlagInt8Tier : 0u);
    format::Writer w;
    w.add_copy(kIndexSection, &h, sizeof h, true);
    w.add(kIdsSection, DType::i64, ids_.size(), 1, ids_.data(), true);
    const std::size_t n = ids_.size() * dim_;
    if (base_ && !base_checked_) {
        // A mapped file's rows were never read at load; what load would refuse is refused here, not copied.
        std::string why = metric_ == Metric::l2 ? bad_norms(base_norms_, ids_.size()) : "";
        const float* norms = metric_ == Metric::l2 && dtype_ == Dtype::float32 ? base_norms_ : nullptr;
        if (why.empty() && has_floats()) why = bad_rows(base_rows_, ids_.size(), dim_, metric_, norms);
        if (why.empty() && dtype_ == Dtype::int8) why = bad_codes(base_codes_, ids_.size(), dim_);
        if (why.empty() && dtype_ == Dtype::binary) why = bad_bits(base_codes_, ids_.size(), dim_);
        if (why.empty() && keep_int8_) why = bad_codes(base_tier_, ids_.size(), dim_);
        if (!why.empty())
            throw FormatError(base_->source() + ": " + why + ": the file this index was mapped from is damaged; " +
                              "nothing was written");
    }
    if (has_floats()) {
        if (base_)
            w.add_unchanged(kVectorsSection, DType::f32, ids_.size(), dim_, base_rows_, true, base_rows_crc_,
                            base_->source());
        else
            w.add(kVectorsSection, DType::f32, ids_.size(), dim_, data_.data(), true);
    }
    if (dtype_ == Dtype::int8 || keep_int8_) {
        if (quant_.trained()) {
            w.add(kOffsetSection, DType::f32, 1, dim_, quant_.offset().data(), true);
            w.add(kStepSection, DType::f32, 1, dim_, quant_.scale().data(), true);
        }
        const std::int8_t* codes = keep_int8_ ? base_tier_ : base_codes_;
        if (base_)
            w.add_unchanged(kCodesSection, DType::i8, ids_.size(), dim_, codes,
                            true, keep_int8_ ? base_tier_crc_ : base_codes_crc_, base_->source());
        else
            w.add(kCodesSection, DType::i8, ids_.size(), dim_, keep_int8_ ? tier_.data() : codes_.data(), true);
    }
    if (dtype_ == Dtype::binary) {
        if (bits_.trained()) {
            w.add(kCenterSection, DType::f32, 1, dim_, bits_.center().data(), true);
            w.add(kScaleSection, DType::f32, 1, dim_, bits_.scale().data(), true);
        }
        const std::size_t cols = code_cols();
        if (base_)
            w.add_unchanged(kBitsSection, DType::u8, ids_.size(), cols, base_codes_, true, base_codes_crc_,
                            base_->source());
        else
            w.add(kBitsSection, DType::u8, ids_.size(), cols, codes_.data(), true);
    }
    if (metric_ == Metric::l2) {
        if (base_)
            w.add_unchanged(kNormsSection, DType::f32, ids_.size(), 1, base_norms_, true, base_norms_crc_,
                            base_->source());
        else
            w.add(kNormsSection, DType::f32, ids_.size(), 1, norms_.data(), true);
    }
    write_partitions_unlocked(w);
    w.add_bytes(kMetadataSection, metadata_.data(), metadata_.size(), false);
    for (const ExtraSection& e : extras_) w.add(e.name, e.dtype, e.rows, e.cols, e.data.data(), e.required);
    return w;
}

void FlatIndex::save(const std::string& path) const {
    std::shared_lock<RwLock> lock(mu_);  // no add/remove while writing; searches go on
    writer_unlocked().write_file(path);
}

std::vector<std::uint8_t> FlatIndex::to_bytes() const {
    std::shared_lock<RwLock> lock(mu_);
    return writer_unlocked().to_bytes();
}

FlatIndex FlatIndex::load(const std::string& path, bool mmap) {
    return from_blob(mmap ? format::map_file(path) : format::read_file(path));
}

FlatIndex FlatIndex::load_bytes(const void* data, std::size_t size) {
    return from_blob(format::copy_bytes(data, size));
}

FlatIndex FlatIndex::from_blob(format::BlobPtr blob) {
    format::ReadOptions options;
    options.known = {kIndexSection, kIdsSection, kVectorsSection, kMetadataSection, kOffsetSection, kStepSection,
                       kCodesSection, kNormsSection, kCenterSection, kScaleSection, kBitsSection};
    for (const char* e : kExtraSections) options.known.emplace_back(e);
    for (const char* e : kPartitionSections) options.known.emplace_back(e);
    // Checking the vectors of a mapped file would read all of it; their sizes and bounds are still checked,
    // and a damaged float or code can change scores but never memory safety.
    if (blob->mapped()) options.unverified = {kVectorsSection, kCodesSection, kNormsSection, kBitsSection};
    const format::Reader r(std::move(blob), options);

    IndexHeader h;
    std::memcpy(&h, r.get(kIndexSection, DType::bytes, sizeof h, 1).data, sizeof h);
    if (h.dim == 0 || h.dim > kMaxDim)
        r.fail("dim " + std::to_string(h.dim) + " is outside 1.." + std::to_string(kMaxDim));
    if (h.metric > 2) r.fail("unknown metric code " + std::to_string(h.metric) + " (0 cosine, 1 ip, 2 l2)");
    const Metric metric = h.metric == 0 ? Metric::cosine : h.metric == 1 ? Metric::ip : Metric::l2;
    if (h.flags & ~kKnownFlags) r.fail("unknown index flags " + std::to_string(h.flags));
    if ((h.flags & kFlagInt8) && (h.flags & kFlagBinary)) r.fail("flags 'int8' and 'binary' are both set");
    if ((h.flags & kFlagOriginals) && !(h.flags & (kFlagInt8 | kFlagBinary)))
        r.fail("flag 'originals' is set on a float32 index");
    const Dtype dtype = (h.flags & kFlagInt8) ? Dtype::int8 : (h.flags & kFlagBinary) ? Dtype::binary : Dtype::float32;
    if (dtype == Dtype::binary && metric == Metric::l2) r.fail("a binary index under the l2 metric");
    const bool tier = (h.flags & kFlagInt8Tier) != 0;
    if (tier && (dtype != Dtype::binary || (h.flags & kFlagOriginals)))
        r.fail("flag 'int8 tier' is set on an index that is not binary, or with the originals flag");
    const bool floats = dtype == Dtype::float32 || (h.flags & kFlagOriginals);
    if (h.next_id > kIdLimit)
        r.fail("next id " + std::to_string(h.next_id) + " is above 2^63 (as a signed field: negative)");
    for (std::uint8_t b : h.reserved)
        if (b != 0) r.fail("reserved bytes of the index section are set");
    const format::SectionView& ids = r.get(kIdsSection, DType::i64, h.count, 1);
    if (h.count > IdMap::kMaxRows)
        r.fail("count " + std::to_string(h.count) + " is above " + std::to_string(IdMap::kMaxRows) +
               ", the most an index holds");
    const format::SectionView* vectors = floats ? &r.get(kVectorsSection, DType::f32, h.count, h.dim) : nullptr;
    if (!floats && r.find(kVectorsSection))
        r.fail("section 'vectors.f32' in an int8 or binary index without the originals flag");
    if (dtype != Dtype::int8 && !tier && (r.find(kCodesSection) || r.find(kOffsetSection) || r.find(kStepSection)))
        r.fail(std::string("int8 sections in a ") + dtype_name(dtype) + " index");
    if (dtype != Dtype::binary && (r.find(kBitsSection) || r.find(kCenterSection) || r.find(kScaleSection)))
        r.fail(std::string("binary sections in a ") + dtype_name(dtype) + " index");

    // What the constructor refuses is a file error here.
    if ((dtype == Dtype::int8 || tier) && h.dim > kernels::kMaxI8Depth)
        r.fail("dim " + std::to_string(h.dim) + " is above " + std::to_string(kernels::kMaxI8Depth) +
               ", the largest an int8 index takes");
    const format::SectionView* norms =
        metric == Metric::l2 ? &r.get(kNormsSection, DType::f32, h.count, 1) : nullptr;
    if (!norms && r.find(kNormsSection)) r.fail("section 'l2.norms' in an index whose metric is not l2");
    if (norms && norms->verified) {
        const std::string why = bad_norms(norms->as<float>(), static_cast<std::size_t>(h.count));
        if (!why.empty()) r.fail(why);
    }
    FlatIndex index(static_cast<std::size_t>(h.dim), metric, dtype, dtype != Dtype::float32 && floats, 0, tier);
    if (dtype == Dtype::binary) index.read_binary(r, h.count);
    if (dtype == Dtype::int8) index.read_int8(r, h.count, &index.base_codes_, &index.base_codes_crc_);
    if (tier) index.read_int8(r, h.count, &index.base_tier_, &index.base_tier_crc_);
    if (tier && index.bits_.trained() != index.quant_.trained())
        r.fail("a binary index with an int8 tier needs both the centre and the int8 calibration, or neither");
    // Every allocation below is bounded by the file's size: count rows of 8 + 4 * dim bytes are in it.
    const std::size_t n = static_cast<std::size_t>(h.count);
    index.ids_.append(ids.as<std::int64_t>(), n);
    index.slot_of_.reserve(n, index.ids_.data());
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t id = index.ids_.data()[i];
        if (id < 0 || static_cast<std::uint64_t>(id) >= h.next_id)
            r.fail("id " + std::to_string(id) + " at row " + std::to_string(i) + " is outside [0, " +
                   std::to_string(h.next_id) + "), the range below the recorded next id");
        if (!index.slot_of_.insert(id, i, index.ids_.data())) r.fail("id " + std::to_string(id) + " appears twice");
    }
    if (vectors && vectors->verified) {
        const bool check_norms = norms && norms->verified && dtype == Dtype::float32;
        const std::string why =
            bad_rows(vectors->as<float>(), n, index.dim_, index.metric_, check_norms ? norms->as<float>() : nullptr);
        if (!why.empty()) r.fail(why);
    }
    if (const format::SectionView* meta = r.find(kMetadataSection)) {
        if (meta->dtype != DType::bytes || meta->cols != 1) r.fail("section 'metadata' is not a byte string");
        const std::size_t bad = utf8_error(meta->data, static_cast<std::size_t>(meta->length));
        if (bad != meta->length) r.fail("section 'metadata' is not UTF-8 text (byte " + std::to_string(bad) + ")");
        index.metadata_.assign(reinterpret_cast<const char*>(meta->data), static_cast<std::size_t>(meta->length));
    }
    for (const format::SectionView& v : r.sections()) {
        if (!is_extra_section(v.name)) continue;
        ExtraSection e;
        e.name = v.name;
        e.dtype = v.dtype;
        e.rows = v.rows;
        e.cols = v.cols;
        e.required = v.required;
        e.data.assign(v.data, v.data + v.length);
        index.extras_.push_back(std::move(e));
    }
    index.next_id_ = h.next_id;
    index.read_partitions(r);
    index.base_rows_ = vectors ? vectors->as<float>() : nullptr;
    index.base_rows_crc_ = vectors ? vectors->crc : 0;
    index.base_norms_ = norms ? norms->as<float>() : nullptr;
    index.base_norms_crc_ = norms ? norms->crc : 0;
    index.base_checked_ = !r.blob()->mapped();  // the unverified sections are exactly those of a mapped file
    index.base_ = r.blob();
    return index;
}

// The int8 calibration (into quant_) and codes of an int8 index, or of a binary index's int8 tier.
void FlatIndex::read_int8(const format::Reader& r, std::uint64_t count, const std::int8_t** codes_out,
                          std::uint32_t* crc) {
    const format::SectionView& codes = r.get(kCodesSection, DType::i8, count, dim_);
    if (r.find(kOffsetSection) || r.find(kStepSection)) {
        std::vector<float> offset(dim_), step(dim_);
        std::memcpy(offset.data(), r.get(kOffsetSection, DType::f32, 1, dim_).data, dim_ * sizeof(float));
        std::memcpy(step.data(), r.get(kStepSection, DType::f32, 1, dim_).data, dim_ * sizeof(float));
        try {
            quant_.set(offset.data(), step.data());
        } catch (const std::invalid_argument& e) {
            r.fail(e.what());
        }
        const std::string why = metric_ == Metric::l2 ? detail::l2_calibration_error(quant_) : "";
        if (!why.empty()) r.fail(why);
    } else if (count > 0) {
        r.fail("an int8 index with vectors needs its calibration ('int8.offset', 'int8.step')");
    }
    const std::string why = codes.verified ? bad_codes(codes.as<std::int8_t>(), count, dim_) : "";
    if (!why.empty()) r.fail(why);
    *codes_out = codes.as<std::int8_t>();
    *crc = codes.crc;
}

void FlatIndex::read_binary(const format::Reader& r, std::uint64_t count) {
    const format::SectionView& codes = r.get(kBitsSection, DType::u8, count, kernels::b1_bytes(dim_));
    if (r.find(kCenterSection) || r.find(kScaleSection)) {
        std::vector<float> center(dim_), scale(dim_);
        std::memcpy(center.data(), r.get(kCenterSection, DType::f32, 1, dim_).data, dim_ * sizeof(float));
        std::memcpy(scale.data(), r.get(kScaleSection, DType::f32, 1, dim_).data, dim_ * sizeof(float));
        try {
            bits_.set(center.data(), scale.data());
        } catch (const std::invalid_argument& e) {
            r.fail(e.what());
        }
    } else if (count > 0) {
        r.fail("a binary index with vectors needs its centre and scale ('binary.center', 'binary.scale')");
    }
    const std::string why = codes.verified ? bad_bits(codes.as<std::int8_t>(), count, dim_) : "";
    if (!why.empty()) r.fail(why);
    base_codes_ = codes.as<std::int8_t>();
    base_codes_crc_ = codes.crc;
}

std::vector<ExtraSection> FlatIndex::extra_sections() const {
    std::shared_lock<RwLock> lock(mu_);
    return extras_;
}

void FlatIndex::set_extra_sections(std::vector<ExtraSection> sections) {
    for (std::size_t i = 0; i < sections.size(); ++i) {
        const ExtraSection& e = sections[i];
        if (!is_extra_section(e.name)) throw std::invalid_argument("unknown extra section name '" + e.name + "'");
        for (std::size_t j = 0; j < i; ++j)
            if (sections[j].name == e.name) throw std::invalid_argument("section '" + e.name + "' given twice");
        const std::size_t width = format::dtype_size(e.dtype);
        if (width == 0 || e.cols == 0 || e.rows > e.data.size() || e.data.size() != e.rows * e.cols * width)
            throw std::invalid_argument("section '" + e.name + "': " + std::to_string(e.data.size()) +
                                        " bytes do not hold " + std::to_string(e.rows) + " x " +
                                        std::to_string(e.cols) + " " + format::dtype_name(e.dtype));
    }
    std::unique_lock<RwLock> lock(mu_);
    extras_ = std::move(sections);
}

}  // namespace simdex
