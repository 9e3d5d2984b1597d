#include "simdex/index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "index_checks.hpp"
#include "simdex/dispatch.hpp"
#include "simdex/partitions.hpp"

namespace simdex {

using detail::all_finite;

const char* metric_name(Metric m) noexcept {
    return m == Metric::cosine ? "cosine" : m == Metric::ip ? "ip" : "l2";
}

Metric parse_metric(const std::string& name) {
    if (name == "cosine") return Metric::cosine;
    if (name == "ip") return Metric::ip;
    if (name == "l2") return Metric::l2;
    throw std::invalid_argument("metric must be 'cosine', 'ip' or 'l2', got '" + name + "'");
}

double max_norm(Metric m) noexcept { return m == Metric::l2 ? kMaxL2Norm : kMaxIpNorm; }

const char* dtype_name(Dtype d) noexcept {
    return d == Dtype::float32 ? "float32" : d == Dtype::int8 ? "int8" : "binary";
}

Dtype parse_dtype(const std::string& name) {
    if (name == "float32") return Dtype::float32;
    if (name == "int8") return Dtype::int8;
    if (name == "binary") return Dtype::binary;
    throw std::invalid_argument("dtype must be 'float32', 'int8' or 'binary', got '" + name + "'");
}

void normalize_rows(float* x, std::size_t n, std::size_t dim) {
    const auto dot = active_kernels().dot_f32;
    // Inside [2^-60, 2^60] the float sum of squares neither overflows nor loses more than rounding to products
    // that underflow (each below 2^-126, so far below the sum). Outside it, a row of 1e20s would read as norm inf
    // and become zeros, a row of 1e-30s as norm 0 and stay unscaled: those rows take float64 instead, where the
    // squares of any finite floats (at most dim * 2^256) and of the smallest subnormal (2^-298) are exact enough.
    constexpr float kLow = 0x1p-60f, kHigh = 0x1p60f;
    for (std::size_t r = 0; r < n; ++r) {
        float* row = x + r * dim;
        const float norm2 = dot(row, row, dim);
        if (norm2 >= kLow && norm2 <= kHigh) {
            const float inv = 1.0f / std::sqrt(norm2);
            for (std::size_t i = 0; i < dim; ++i) row[i] *= inv;
            continue;
        }
        double wide = 0.0;
        for (std::size_t i = 0; i < dim; ++i) wide += double(row[i]) * double(row[i]);
        if (wide > 0.0) {
            const double inv = 1.0 / std::sqrt(wide);
            for (std::size_t i = 0; i < dim; ++i) row[i] = static_cast<float>(double(row[i]) * inv);
        }
    }
}

std::size_t first_row_over_ip_norm(const float* x, std::size_t n, std::size_t dim, double limit) {
    const auto dot = active_kernels().dot_f32;
    const float fast = static_cast<float>(limit * limit / 2);  // far inside the limit even after rounding
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = x + r * dim;
        if (dot(row, row, dim) <= fast) continue;
        double wide = 0.0;
        for (std::size_t i = 0; i < dim; ++i) wide += double(row[i]) * double(row[i]);
        if (wide > limit * limit) return r;
    }
    return n;
}

FlatIndex::FlatIndex(std::size_t dim, Metric metric, Dtype dtype, bool keep_originals, std::size_t partitions,
                     bool keep_int8)
    : dim_(dim), metric_(metric), dtype_(dtype), keep_originals_(keep_originals), keep_int8_(keep_int8), quant_(dim),
      bits_(dim), partitions_(partitions) {
    if (dim == 0) throw std::invalid_argument("dim must be positive, got 0");
    if (dim > (std::size_t(1) << 20)) throw std::invalid_argument("dim must be at most 1048576, got " + std::to_string(dim));
    if (dtype == Dtype::float32 && keep_originals)
        throw std::invalid_argument(
            "keep_originals applies to dtypes 'int8' and 'binary'; a float32 index stores the vectors themselves");
    if (dtype == Dtype::binary && metric == Metric::l2)
        throw std::invalid_argument("dtype 'binary' supports the cosine and ip metrics, not l2 (sign bits keep no "
                                    "distances); use dtype 'int8' or 'float32' for l2");
    if (keep_int8 && (dtype != Dtype::binary || keep_originals))
        throw std::invalid_argument(dtype != Dtype::binary
                                        ? "keep_originals='int8' applies to dtype 'binary'"
                                        : "keep the float originals or the int8 codes for rescoring, not both");
    if (keep_int8 && dim > kernels::kMaxI8Depth)
        throw std::invalid_argument("keep_originals='int8' takes dim up to " + std::to_string(kernels::kMaxI8Depth));
    if (dtype == Dtype::int8 && dim > kernels::kMaxI8Depth)
        throw std::invalid_argument("int8 indexes take dim up to " + std::to_string(kernels::kMaxI8Depth) +
                                    " (int32 sums of 127 * 127 products stay exact), got " + std::to_string(dim));
    if (partitions) ivf_ = make_partitions(partitions, dim, metric);
}

FlatIndex::FlatIndex(FlatIndex&& o) noexcept
    : dim_(o.dim_), metric_(o.metric_), dtype_(o.dtype_), keep_originals_(o.keep_originals_), keep_int8_(o.keep_int8_),
      tier_(std::move(o.tier_)), base_tier_(o.base_tier_), base_tier_crc_(o.base_tier_crc_),
      quant_(std::move(o.quant_)), bits_(std::move(o.bits_)), codes_(std::move(o.codes_)), base_codes_(o.base_codes_),
      data_(std::move(o.data_)),
      base_(std::move(o.base_)), base_rows_(o.base_rows_), norms_(std::move(o.norms_)), base_norms_(o.base_norms_),
      base_norms_crc_(o.base_norms_crc_), base_rows_crc_(o.base_rows_crc_),
      base_codes_crc_(o.base_codes_crc_), base_checked_(o.base_checked_), ids_(std::move(o.ids_)),
      slot_of_(std::move(o.slot_of_)),
      next_id_(o.next_id_), metadata_(std::move(o.metadata_)), extras_(std::move(o.extras_)),
      partitions_(o.partitions_), ivf_(std::move(o.ivf_)) {}

bool FlatIndex::mapped() const {
    std::shared_lock<RwLock> lock(mu_);
    return base_ && base_->mapped();
}

void FlatIndex::make_writable_unlocked(std::size_t extra_rows, const char* what) {
    if (!base_) return;
    if (base_->mapped())
        throw std::invalid_argument(std::string("cannot ") + what + ": this index is memory-mapped read-only from " +
                                    base_->source() + "; load it with mmap=False to change it");
    // A file read into memory: its rows become owned, so the image can go.
    if (has_floats()) {
        RowStore<float> owned;
        owned.reserve((ids_.size() + extra_rows) * dim_);
        owned.append(base_rows_, ids_.size() * dim_);
        data_ = std::move(owned);
    }
    if (has_codes()) {
        RowStore<std::int8_t> owned;
        owned.reserve((ids_.size() + extra_rows) * code_cols());
        owned.append(base_codes_, ids_.size() * code_cols());
        codes_ = std::move(owned);
    }
    if (metric_ == Metric::l2) {
        RowStore<float> owned;
        owned.reserve(ids_.size() + extra_rows);
        owned.append(base_norms_, ids_.size());
        norms_ = std::move(owned);
    }
    if (keep_int8_) {
        RowStore<std::int8_t> owned;
        owned.reserve((ids_.size() + extra_rows) * dim_);
        owned.append(base_tier_, ids_.size() * dim_);
        tier_ = std::move(owned);
    }
    base_.reset();
    base_tier_ = nullptr;
    base_rows_ = nullptr;
    base_codes_ = nullptr;
    base_norms_ = nullptr;
}

void FlatIndex::train(const float* x, std::size_t n) {
    if (dtype_ == Dtype::float32)
        throw std::invalid_argument("train applies to dtype 'int8' and 'binary' indexes; a float32 index needs no "
                                    "training");
    if (n == 0) throw std::invalid_argument("train: expected at least one vector, got 0");
    std::size_t bad = 0;
    if (!all_finite(x, n * dim_, &bad))
        throw std::invalid_argument("training vectors must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf");
    FloatBuffer tmp;
    x = unit_rows(x, n, tmp);
    if (dtype_ == Dtype::binary) {
        BitCoder b(dim_);
        b.train(x, n);
        Quantizer q8(dim_);
        if (keep_int8_) q8.train(x, n);
        std::unique_lock<RwLock> lock(mu_);
        if (bits_.trained())
            throw std::invalid_argument("this binary index is already trained, and its centre is fixed so that every "
                                        "batch is encoded the same way; create a new index to train again");
        bits_ = std::move(b);
        if (keep_int8_) quant_ = std::move(q8);
        return;
    }
    Quantizer q(dim_);
    q.train(x, n);
    const std::string l2_error = metric_ == Metric::l2 ? detail::l2_calibration_error(q) : "";
    if (!l2_error.empty()) throw std::invalid_argument("train: " + l2_error + "; scale the vectors down");
    std::unique_lock<RwLock> lock(mu_);
    if (quant_.trained())
        throw std::invalid_argument("this int8 index is already calibrated, and the calibration is fixed so that every "
                                    "batch is encoded the same way; create a new index to calibrate again");
    quant_ = std::move(q);
}

bool FlatIndex::trained() const {
    std::shared_lock<RwLock> lock(mu_);
    return is_calibrated();
}

std::vector<float> FlatIndex::calibration() const {
    std::shared_lock<RwLock> lock(mu_);
    if (dtype_ == Dtype::binary) {
        if (!bits_.trained()) throw std::invalid_argument("this binary index is not trained yet (train or add first)");
        std::vector<float> out(bits_.center());
        out.insert(out.end(), bits_.scale().begin(), bits_.scale().end());
        return out;
    }
    if (dtype_ != Dtype::int8 || !quant_.trained())
        throw std::invalid_argument(dtype_ == Dtype::int8 ? "this int8 index is not calibrated yet (train or add first)"
                                                          : "a float32 index has no int8 calibration");
    std::vector<float> out(quant_.offset());
    out.insert(out.end(), quant_.scale().begin(), quant_.scale().end());
    return out;
}

void FlatIndex::codes(const std::int64_t* ids, std::size_t n, std::int8_t* out) const {
    std::shared_lock<RwLock> lock(mu_);
    if (!has_codes()) throw std::invalid_argument("a float32 index stores no int8 codes or binary codes");
    const std::size_t cols = code_cols();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t slot = slot_of(ids[i]);
        if (slot == IdMap::npos) throw std::out_of_range("id " + std::to_string(ids[i]) + " is not in the index");
        std::memcpy(out + i * cols, codes_unlocked() + slot * cols, cols);
    }
}

std::size_t FlatIndex::size() const {
    std::shared_lock<RwLock> lock(mu_);
    return ids_.size();
}

std::uint64_t FlatIndex::next_id() const {
    std::shared_lock<RwLock> lock(mu_);
    return next_id_;
}

void FlatIndex::check_ids_unlocked(const std::int64_t* ids, std::size_t n) const {
    for (std::size_t i = 0; i < n; ++i) {
        if (ids[i] < 0)
            throw std::invalid_argument("ids must be non-negative (-1 marks 'no result'), got " +
                                        std::to_string(ids[i]) + " at position " + std::to_string(i));
        if (slot_of(ids[i]) != IdMap::npos)
            throw std::invalid_argument("id " + std::to_string(ids[i]) + " is already in the index; nothing was added");
    }
    std::vector<std::int64_t> sorted(ids, ids + n);
    std::sort(sorted.begin(), sorted.end());
    auto twice = std::adjacent_find(sorted.begin(), sorted.end());
    if (twice != sorted.end())
        throw std::invalid_argument("id " + std::to_string(*twice) + " appears twice in this batch; nothing was added");
}

std::int64_t FlatIndex::add(const float* x, std::size_t n, const std::int64_t* ids) {
    std::size_t bad = 0;
    if (!all_finite(x, n * dim_, &bad))
        throw std::invalid_argument("vectors must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf; nothing was added");
    detail::check_norms(metric_, x, n, dim_, "vectors");
    std::unique_lock<RwLock> lock(mu_);
    if (ids) check_ids_unlocked(ids, n);
    if (!ids && n > kIdLimit - next_id_)
        throw std::invalid_argument("automatic ids for " + std::to_string(n) + " vectors would pass 2**63 - 1 (the " +
                                    "next automatic id is " + std::to_string(next_id_) + "); pass ids explicitly, " +
                                    "nothing was added");
    if (n > IdMap::kMaxRows - ids_.size())
        throw std::invalid_argument("an index holds at most " + std::to_string(IdMap::kMaxRows) + " vectors; it has " +
                                    std::to_string(ids_.size()) + ", this batch " + std::to_string(n));
    // A partitioned index finds each row's partition first (so a failure changes nothing) and stores the batch
    // grouped by partition: each list is then a few runs of consecutive rows, which the scan reads in place.
    std::vector<std::uint32_t> part, order;
    FloatBuffer grouped;
    if (ivf_) {
        part = assign_unlocked(x, n);
        order = group_by_partition(part);
        grouped.resize(n * dim_);
        for (std::size_t i = 0; i < n; ++i)
            std::memcpy(grouped.data() + i * dim_, x + std::size_t(order[i]) * dim_, dim_ * sizeof(float));
        x = grouped.data();
    }
    make_writable_unlocked(n, "add vectors");
    bounds_valid_ = false;  // exact search's error bounds cover the old rows only
    if (metric_ == Metric::l2) norms_.make_room(ids_.size() + n);
    // Below 2^63 whenever an automatic id is handed out (checked above); n == 0 returns the clamped value.
    const std::int64_t first = static_cast<std::int64_t>(std::min(next_id_, kIdLimit - 1));
    const std::size_t old = ids_.size();
    if (dtype_ == Dtype::int8) {
        add_i8_unlocked(x, n);
    } else if (dtype_ == Dtype::binary) {
        add_b1_unlocked(x, n);
    } else {
        // Reserve first so a bad_alloc leaves the index as it was.
        data_.make_room((old + n) * dim_);
        ids_.make_room(old + n);
        slot_of_.reserve(old + n, ids_.data());
        data_.append(x, n * dim_);
        if (metric_ == Metric::cosine) normalize_rows(data_.data() + old * dim_, n, dim_);
    }
    append_norms_unlocked(old, n);
    if (ivf_) ivf_->append(part.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t src = ivf_ ? order[i] : i;  // the batch row stored at slot old + i
        const std::int64_t id = ids ? ids[src] : first + static_cast<std::int64_t>(src);
        ids_.append(&id, 1);
        slot_of_.insert(id, old + i, ids_.data());
        next_id_ = std::max(next_id_, static_cast<std::uint64_t>(id) + 1);  // id >= 0, so no wrap
    }
    return first;
}

const float* FlatIndex::unit_rows(const float* x, std::size_t n, FloatBuffer& tmp) const {
    if (metric_ != Metric::cosine) return x;
    tmp.assign(x, x + n * dim_);
    normalize_rows(tmp.data(), n, dim_);
    return tmp.data();
}

void FlatIndex::add_i8_unlocked(const float* x, std::size_t n) {
    if (n == 0) return;  // nothing to calibrate on, nothing to store
    const std::size_t old = ids_.size();
    FloatBuffer tmp;
    x = unit_rows(x, n, tmp);
    // The first add of an index never trained calibrates on its own rows; later ones reuse that calibration.
    Quantizer q(dim_);
    if (!quant_.trained()) q.train(x, n);
    const Quantizer& use = quant_.trained() ? quant_ : q;
    const std::string l2_error = metric_ == Metric::l2 ? detail::l2_calibration_error(use) : "";
    if (!l2_error.empty()) throw std::invalid_argument(l2_error + "; scale the vectors down; nothing was added");
    codes_.make_room((old + n) * dim_);
    if (keep_originals_) data_.make_room((old + n) * dim_);
    ids_.make_room(old + n);
    slot_of_.reserve(old + n, ids_.data());
    codes_.resize((old + n) * dim_);
    use.encode(x, n, codes_.data() + old * dim_);
    if (keep_originals_) data_.append(x, n * dim_);
    if (!quant_.trained()) quant_ = std::move(q);
}

std::size_t FlatIndex::remove(const std::int64_t* ids, std::size_t n) {
    std::unique_lock<RwLock> lock(mu_);
    make_writable_unlocked(0, "remove vectors");
    std::size_t removed = 0;
    // The id map's reads fetched ahead: the entries of the id removed kAhead removals on and of the last row's id
    // then (the row that moves into its slot, unless rows at the end go first), and the key for the id removed
    // kAhead / 2 on, whose entry has arrived by then.
    constexpr std::size_t kAhead = 8;
    slot_of_.reserve_removals(n, ids_.data());
    for (std::size_t i = 0; i < n; ++i) {
        if (i + kAhead < n) slot_of_.prefetch_entry(ids[i + kAhead], ids_.data());
        if (ids_.size() > kAhead) slot_of_.prefetch_entry(ids_.data()[ids_.size() - 1 - kAhead], ids_.data());
        if (i + kAhead / 2 < n) slot_of_.prefetch_key(ids[i + kAhead / 2], ids_.data());
        const std::size_t slot = slot_of(ids[i]), last = ids_.size() - 1;
        if (slot == IdMap::npos) continue;
        slot_of_.erase(ids[i], ids_.data());
        if (ivf_) ivf_->remove_slot(slot);  // before the last row moves into slot
        if (slot != last) {  // move the last row into the hole
            if (has_floats())
                std::memcpy(data_.data() + slot * dim_, data_.data() + last * dim_, dim_ * sizeof(float));
            if (has_codes())
                std::memcpy(codes_.data() + slot * code_cols(), codes_.data() + last * code_cols(), code_cols());
            if (keep_int8_) std::memcpy(tier_.data() + slot * dim_, tier_.data() + last * dim_, dim_);
            if (metric_ == Metric::l2) norms_.data()[slot] = norms_.data()[last];
            ids_.data()[slot] = ids_.data()[last];
            slot_of_.assign(ids_.data()[slot], slot, ids_.data());
        }
        ids_.resize(last);
        if (has_floats()) data_.resize(ids_.size() * dim_);
        if (has_codes()) codes_.resize(ids_.size() * code_cols());
        if (keep_int8_) tier_.resize(ids_.size() * dim_);
        if (metric_ == Metric::l2) norms_.resize(ids_.size());
        ++removed;
    }
    return removed;
}

void FlatIndex::reset() {
    std::unique_lock<RwLock> lock(mu_);
    if (base_ && base_->mapped()) make_writable_unlocked(0, "reset");
    base_.reset();
    base_rows_ = nullptr;
    base_codes_ = nullptr;
    base_norms_ = nullptr;
    norms_ = RowStore<float>();
    data_ = RowStore<float>();
    codes_ = RowStore<std::int8_t>();  // the int8 calibration stays (as FAISS's reset keeps training)
    tier_ = RowStore<std::int8_t>();
    base_tier_ = nullptr;
    ids_ = RowStore<std::int64_t>();
    slot_of_ = IdMap();
    next_id_ = 0;
    if (ivf_) ivf_->clear_lists();  // the centroids stay, as the int8 calibration does
}

std::vector<std::int64_t> FlatIndex::ids() const {
    std::shared_lock<RwLock> lock(mu_);
    return std::vector<std::int64_t>(ids_.data(), ids_.data() + ids_.size());
}

bool FlatIndex::contains(std::int64_t id) const {
    std::shared_lock<RwLock> lock(mu_);
    return slot_of(id) != IdMap::npos;
}

void FlatIndex::reconstruct(const std::int64_t* ids, std::size_t n, float* out) const {
    std::shared_lock<RwLock> lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t slot = slot_of(ids[i]);
        if (slot == IdMap::npos) throw std::out_of_range("id " + std::to_string(ids[i]) + " is not in the index");
        if (has_floats())
            std::memcpy(out + i * dim_, rows_unlocked() + slot * dim_, dim_ * sizeof(float));
        else if (keep_int8_)
            quant_.decode(tier_unlocked() + slot * dim_, 1, out + i * dim_);
        else if (dtype_ == Dtype::binary)
            bits_.decode(reinterpret_cast<const std::uint8_t*>(codes_unlocked()) + slot * code_cols(), 1,
                         out + i * dim_);
        else
            quant_.decode(codes_unlocked() + slot * dim_, 1, out + i * dim_);
    }
}

MemoryUsage FlatIndex::memory_breakdown() const {
    std::shared_lock<RwLock> lock(mu_);
    MemoryUsage m;
    // A file read into memory counts whole; a mapping is the page cache's, not this index's.
    m.file_image = base_ && !base_->mapped() ? base_->size() : 0;
    // Rows written, not the capacity reserved for growth: past 1 MiB that is address space, not memory.
    m.vectors = (data_.size() + norms_.size()) * sizeof(float) + codes_.size() + tier_.size();
    m.calibration = (quant_.offset().capacity() + quant_.scale().capacity() + bits_.center().capacity() +
                     bits_.scale().capacity()) * sizeof(float);
    m.ids = ids_.size() * sizeof(std::int64_t) + slot_of_.bytes();  // slot -> id, and id -> slot
    for (const ExtraSection& e : extras_) m.calibration += e.data.capacity();
    m.metadata = metadata_.capacity();
    m.partitions = ivf_ ? ivf_->bytes() : 0;
    return m;
}

std::size_t FlatIndex::memory_usage() const {
    const MemoryUsage m = memory_breakdown();
    return m.file_image + m.vectors + m.calibration + m.ids + m.metadata + m.partitions;
}

std::string FlatIndex::metadata() const {
    std::shared_lock<RwLock> lock(mu_);
    return metadata_;
}

void FlatIndex::set_metadata(std::string text) {
    std::unique_lock<RwLock> lock(mu_);
    metadata_ = std::move(text);
}

}  // namespace simdex
