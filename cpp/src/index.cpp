#include "simdex/index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "simdex/dispatch.hpp"
#include "simdex/scan.hpp"
#include "simdex/topk.hpp"

namespace simdex {
namespace {

bool all_finite(const float* x, std::size_t count, std::size_t* bad) {
    for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, x + i, 4);
        if ((bits & 0x7f800000u) == 0x7f800000u) {
            *bad = i;
            return false;
        }
    }
    return true;
}

void check_ip_norms(const float* x, std::size_t n, std::size_t dim, const char* what) {
    const std::size_t bad = first_row_over_ip_norm(x, n, dim);
    if (bad != n)
        throw std::invalid_argument(std::string(what) + ": row " + std::to_string(bad) + " has an L2 norm above " +
                                    "2**63; under the ip metric larger vectors could overflow float32 scores " +
                                    "(scale them down, or use the cosine metric); nothing was done");
}

// Float rows keep cosine scores in [-1, 1] and ip scores below 2^126 (kMaxIpNorm), but int8 scores from a loaded
// calibration have looser bounds, and a mapped file's rows are not checked at load. A result of inf (or -inf on a
// real row) would be silently wrong, so it is an error.
void check_scores_finite(const float* scores, const std::int64_t* ids, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        const bool padding = ids[i] == -1 && scores[i] == -std::numeric_limits<float>::infinity();
        if (!std::isfinite(scores[i]) && !padding)
            throw std::overflow_error("the score of a query and id " + std::to_string(ids[i]) +
                                      " overflows float32 (|score| > 3.4e38): scale the vectors down, or use the "
                                      "cosine metric");
    }
}

}  // namespace

const char* metric_name(Metric m) noexcept { return m == Metric::cosine ? "cosine" : "ip"; }

Metric parse_metric(const std::string& name) {
    if (name == "cosine") return Metric::cosine;
    if (name == "ip") return Metric::ip;
    throw std::invalid_argument("metric must be 'cosine' or 'ip', got '" + name + "'");
}

const char* dtype_name(Dtype d) noexcept { return d == Dtype::float32 ? "float32" : "int8"; }

Dtype parse_dtype(const std::string& name) {
    if (name == "float32") return Dtype::float32;
    if (name == "int8") return Dtype::int8;
    throw std::invalid_argument("dtype must be 'float32' or 'int8', got '" + name + "'");
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

std::size_t first_row_over_ip_norm(const float* x, std::size_t n, std::size_t dim) {
    const auto dot = active_kernels().dot_f32;
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = x + r * dim;
        if (dot(row, row, dim) <= 0x1p125f) continue;  // far inside the limit even after rounding
        double wide = 0.0;
        for (std::size_t i = 0; i < dim; ++i) wide += double(row[i]) * double(row[i]);
        if (wide > kMaxIpNorm * kMaxIpNorm) return r;
    }
    return n;
}

FlatIndex::FlatIndex(std::size_t dim, Metric metric, Dtype dtype, bool keep_originals)
    : dim_(dim), metric_(metric), dtype_(dtype), keep_originals_(keep_originals), quant_(dim) {
    if (dim == 0) throw std::invalid_argument("dim must be positive, got 0");
    if (dim > (std::size_t(1) << 20)) throw std::invalid_argument("dim must be at most 1048576, got " + std::to_string(dim));
    if (dtype == Dtype::float32 && keep_originals)
        throw std::invalid_argument(
            "keep_originals applies to dtype 'int8'; a float32 index stores the vectors themselves");
    if (dtype == Dtype::int8 && dim > kernels::kMaxI8Depth)
        throw std::invalid_argument("int8 indexes take dim up to " + std::to_string(kernels::kMaxI8Depth) +
                                    " (int32 sums of 127 * 127 products stay exact), got " + std::to_string(dim));
}

FlatIndex::FlatIndex(FlatIndex&& o) noexcept
    : dim_(o.dim_), metric_(o.metric_), dtype_(o.dtype_), keep_originals_(o.keep_originals_),
      quant_(std::move(o.quant_)), codes_(std::move(o.codes_)), base_codes_(o.base_codes_), data_(std::move(o.data_)),
      base_(std::move(o.base_)), base_rows_(o.base_rows_), base_rows_crc_(o.base_rows_crc_),
      base_codes_crc_(o.base_codes_crc_), base_checked_(o.base_checked_), ids_(std::move(o.ids_)),
      slot_of_(std::move(o.slot_of_)),
      next_id_(o.next_id_), metadata_(std::move(o.metadata_)), extras_(std::move(o.extras_)) {}

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
    if (dtype_ == Dtype::int8) {
        RowStore<std::int8_t> owned;
        owned.reserve((ids_.size() + extra_rows) * dim_);
        owned.append(base_codes_, ids_.size() * dim_);
        codes_ = std::move(owned);
    }
    base_.reset();
    base_rows_ = nullptr;
    base_codes_ = nullptr;
}

void FlatIndex::train(const float* x, std::size_t n) {
    if (dtype_ != Dtype::int8)
        throw std::invalid_argument("train applies to dtype 'int8' indexes; a float32 index needs no training");
    if (n == 0) throw std::invalid_argument("train: expected at least one vector, got 0");
    std::size_t bad = 0;
    if (!all_finite(x, n * dim_, &bad))
        throw std::invalid_argument("training vectors must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf");
    FloatBuffer tmp;
    if (metric_ == Metric::cosine) {
        tmp.assign(x, x + n * dim_);
        normalize_rows(tmp.data(), n, dim_);
        x = tmp.data();
    }
    Quantizer q(dim_);
    q.train(x, n);
    std::unique_lock<RwLock> lock(mu_);
    if (quant_.trained())
        throw std::invalid_argument("this int8 index is already calibrated, and the calibration is fixed so that every "
                                    "batch is encoded the same way; create a new index to calibrate again");
    quant_ = std::move(q);
}

bool FlatIndex::trained() const {
    std::shared_lock<RwLock> lock(mu_);
    return dtype_ == Dtype::float32 || quant_.trained();
}

std::vector<float> FlatIndex::calibration() const {
    std::shared_lock<RwLock> lock(mu_);
    if (dtype_ != Dtype::int8 || !quant_.trained())
        throw std::invalid_argument(dtype_ == Dtype::int8 ? "this int8 index is not calibrated yet (train or add first)"
                                                          : "a float32 index has no int8 calibration");
    std::vector<float> out(quant_.offset());
    out.insert(out.end(), quant_.scale().begin(), quant_.scale().end());
    return out;
}

void FlatIndex::codes(const std::int64_t* ids, std::size_t n, std::int8_t* out) const {
    std::shared_lock<RwLock> lock(mu_);
    if (dtype_ != Dtype::int8) throw std::invalid_argument("a float32 index stores no int8 codes");
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t slot = slot_of(ids[i]);
        if (slot == IdMap::npos) throw std::out_of_range("id " + std::to_string(ids[i]) + " is not in the index");
        std::memcpy(out + i * dim_, codes_unlocked() + slot * dim_, dim_);
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
    if (metric_ == Metric::ip) check_ip_norms(x, n, dim_, "vectors");
    std::unique_lock<RwLock> lock(mu_);
    if (ids) check_ids_unlocked(ids, n);
    if (!ids && n > kIdLimit - next_id_)
        throw std::invalid_argument("automatic ids for " + std::to_string(n) + " vectors would pass 2**63 - 1 (the " +
                                    "next automatic id is " + std::to_string(next_id_) + "); pass ids explicitly, " +
                                    "nothing was added");
    if (n > IdMap::kMaxRows - ids_.size())
        throw std::invalid_argument("an index holds at most " + std::to_string(IdMap::kMaxRows) + " vectors; it has " +
                                    std::to_string(ids_.size()) + ", this batch " + std::to_string(n));
    make_writable_unlocked(n, "add vectors");
    // Below 2^63 whenever an automatic id is handed out (checked above); n == 0 returns the clamped value.
    const std::int64_t first = static_cast<std::int64_t>(std::min(next_id_, kIdLimit - 1));
    const std::size_t old = ids_.size();
    if (dtype_ == Dtype::int8) {
        add_i8_unlocked(x, n);
    } else {
        // Reserve first so a bad_alloc leaves the index as it was.
        data_.make_room((old + n) * dim_);
        ids_.make_room(old + n);
        slot_of_.reserve(old + n, ids_.data());
        data_.append(x, n * dim_);
        if (metric_ == Metric::cosine) normalize_rows(data_.data() + old * dim_, n, dim_);
    }
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t id = ids ? ids[i] : first + static_cast<std::int64_t>(i);
        ids_.append(&id, 1);
        slot_of_.insert(id, old + i, ids_.data());
        next_id_ = std::max(next_id_, static_cast<std::uint64_t>(id) + 1);  // id >= 0, so no wrap
    }
    return first;
}

void FlatIndex::add_i8_unlocked(const float* x, std::size_t n) {
    if (n == 0) return;  // nothing to calibrate on, nothing to store
    const std::size_t old = ids_.size();
    FloatBuffer tmp;
    if (metric_ == Metric::cosine) {
        tmp.assign(x, x + n * dim_);
        normalize_rows(tmp.data(), n, dim_);
        x = tmp.data();
    }
    // The first add of an index never trained calibrates on its own rows; later ones reuse that calibration.
    Quantizer q(dim_);
    if (!quant_.trained()) q.train(x, n);
    const Quantizer& use = quant_.trained() ? quant_ : q;
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
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t slot = slot_of(ids[i]), last = ids_.size() - 1;
        if (slot == IdMap::npos) continue;
        slot_of_.erase(ids[i], ids_.data());
        if (slot != last) {  // move the last row into the hole
            if (has_floats())
                std::memcpy(data_.data() + slot * dim_, data_.data() + last * dim_, dim_ * sizeof(float));
            if (dtype_ == Dtype::int8) std::memcpy(codes_.data() + slot * dim_, codes_.data() + last * dim_, dim_);
            ids_.data()[slot] = ids_.data()[last];
            slot_of_.assign(ids_.data()[slot], slot, ids_.data());
        }
        ids_.resize(last);
        if (has_floats()) data_.resize(ids_.size() * dim_);
        if (dtype_ == Dtype::int8) codes_.resize(ids_.size() * dim_);
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
    data_ = RowStore<float>();
    codes_ = RowStore<std::int8_t>();  // the int8 calibration stays (as FAISS's reset keeps training)
    ids_ = RowStore<std::int64_t>();
    slot_of_ = IdMap();
    next_id_ = 0;
}

void FlatIndex::search(const float* queries, std::size_t nq, const SearchParams& p, float* scores,
                       std::int64_t* ids) const {
    if (p.k == 0) throw std::invalid_argument("k must be positive, got 0");
    std::size_t bad = 0;
    if (!all_finite(queries, nq * dim_, &bad))
        throw std::invalid_argument("queries must be finite: row " + std::to_string(bad / dim_) + ", column " +
                                    std::to_string(bad % dim_) + " is NaN or Inf");
    if (metric_ == Metric::ip) check_ip_norms(queries, nq, dim_, "queries");
    const KernelTable& kt = active_kernels();  // dispatch once per call
    FloatBuffer normalized;
    if (metric_ == Metric::cosine) {
        normalized.assign(queries, queries + nq * dim_);
        normalize_rows(normalized.data(), nq, dim_);
        queries = normalized.data();
    }
    std::shared_lock<RwLock> lock(mu_);
    // Filter: an allow-list of ids becomes the sorted slots that qualify.
    std::vector<std::size_t> slots;
    if (p.has_filter) {
        slots.reserve(std::min(p.filter_size, ids_.size()));
        for (std::size_t i = 0; i < p.filter_size; ++i) {
            const std::size_t slot = slot_of(p.filter[i]);
            if (slot != IdMap::npos) slots.push_back(slot);
        }
        std::sort(slots.begin(), slots.end());
        slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    }
    if (dtype_ == Dtype::int8) {
        search_i8(kt, queries, nq, p, p.has_filter ? &slots : nullptr, scores, ids);
    } else {
        if (p.rescore) throw std::invalid_argument("rescore applies to int8 indexes; float32 scores are already exact");
        ScanView all{rows_unlocked(), ids_.data(), ids_.size(), dim_, nullptr};
        with_filter(all, p.has_filter ? &slots : nullptr,
                    [&](const ScanView& v) { run_search(kt, v, queries, nq, p, scores, ids); });
    }
    check_scores_finite(scores, ids, nq * p.k);  // a damaged mapped file is not read at load
}

// Runs fn on the rows a filter leaves: a row mask checked inside the scan, or, when few rows qualify, a gathered
// copy of just them.
template <class T, class Fn>
void FlatIndex::with_filter(RowsView<T> all, const std::vector<std::size_t>* slots, Fn&& fn) const {
    if (!slots) return fn(all);
    if (slots->size() * 8 < all.n) {
        std::vector<T, AlignedAllocator<T>> sub(slots->size() * dim_);
        std::vector<std::int64_t> sub_ids(slots->size());
        for (std::size_t i = 0; i < slots->size(); ++i) {
            std::memcpy(sub.data() + i * dim_, all.data + (*slots)[i] * dim_, dim_ * sizeof(T));
            sub_ids[i] = ids_.data()[(*slots)[i]];
        }
        return fn(RowsView<T>{sub.data(), sub_ids.data(), slots->size(), dim_, nullptr});
    }
    std::vector<bool> mask(all.n, false);
    for (std::size_t r : *slots) mask[r] = true;
    all.allow = &mask;
    fn(all);
}

void FlatIndex::search_i8(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                          const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const {
    constexpr float kNone = -std::numeric_limits<float>::infinity();
    if (p.rescore && !keep_originals_)
        throw std::invalid_argument("rescore needs the original float vectors: create the index with "
                                    "keep_originals=True (or search without rescore)");
    if (p.rescore && p.k > std::numeric_limits<std::size_t>::max() / p.rescore)
        throw std::invalid_argument("k * rescore overflows");
    for (std::size_t i = 0; i < nq * p.k; ++i) {
        scores[i] = kNone;
        ids[i] = -1;
    }
    if (!quant_.trained() || ids_.size() == 0) return;

    // Queries become int8 weights u with a step t and a constant <q, offset> each (quantize.hpp).
    std::vector<std::int8_t> qcodes(nq * dim_);
    std::vector<float> step(nq);
    std::vector<double> offset_term(nq);
    for (std::size_t i = 0; i < nq; ++i)
        quant_.encode_query(queries + i * dim_, qcodes.data() + i * dim_, &step[i], &offset_term[i]);

    // The scan ranks by the exact integer dot products; min_score applies to final scores below.
    SearchParams sp = p;
    sp.k = p.rescore ? std::min(p.k * p.rescore, std::max(p.k, ids_.size())) : p.k;  // no more candidates than rows
    sp.min_score = kNone;
    sp.rescore = 0;
    std::vector<float> dots(nq * sp.k);
    std::vector<std::int64_t> found(nq * sp.k);
    ScanViewI8 all{codes_unlocked(), ids_.data(), ids_.size(), dim_, nullptr};
    with_filter(all, slots,
                [&](const ScanViewI8& v) { run_search_i8(kt, v, qcodes.data(), nq, sp, dots.data(), found.data()); });

    const float* originals = rows_unlocked();
    std::vector<std::pair<float, std::int64_t>> cand;
    for (std::size_t i = 0; i < nq; ++i) {
        const float* d = dots.data() + i * sp.k;
        const std::int64_t* f = found.data() + i * sp.k;
        float* out_s = scores + i * p.k;
        std::int64_t* out_i = ids + i * p.k;
        cand.clear();
        for (std::size_t j = 0; j < sp.k && f[j] >= 0; ++j) {
            float s;
            if (p.rescore) {
                s = kt.dot_f32(queries + i * dim_, originals + slot_of(f[j]) * dim_, dim_);
            } else {
                s = static_cast<float>(static_cast<double>(step[i]) * d[j] + offset_term[i]);
            }
            cand.emplace_back(s, f[j]);
        }
        if (p.rescore)
            std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
                return ranks_before(a.first, a.second, b.first, b.second);
            });
        std::size_t out = 0;
        for (std::size_t j = 0; j < cand.size() && out < p.k; ++j) {
            if (cand[j].first < p.min_score) break;
            out_s[out] = cand[j].first;
            out_i[out] = cand[j].second;
            ++out;
        }
    }
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
    m.vectors = data_.size() * sizeof(float) + codes_.size();
    m.calibration = (quant_.offset().capacity() + quant_.scale().capacity()) * sizeof(float);
    m.ids = ids_.size() * sizeof(std::int64_t) + slot_of_.bytes();  // slot -> id, and id -> slot
    for (const ExtraSection& e : extras_) m.calibration += e.data.capacity();
    m.metadata = metadata_.capacity();
    return m;
}

std::size_t FlatIndex::memory_usage() const {
    const MemoryUsage m = memory_breakdown();
    return m.file_image + m.vectors + m.calibration + m.ids + m.metadata;
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
