// FlatIndex's partitioned (inverted-file) mode, docs/ivf.md: training the centroids, assigning rows to lists,
// probing. The scan over the probed lists is ivf_scan.cpp; add, remove and search call in here.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "index_checks.hpp"
#include "simdex/dispatch.hpp"
#include "simdex/index.hpp"
#include "simdex/partitions.hpp"

namespace simdex {
namespace {

constexpr std::size_t kDecodeRows = 4096;  // int8 rows decoded at a time when there are no float rows

// Under cosine rows and centroids are unit vectors (spherical k-means, nearest = largest inner product); under ip
// and l2 plain k-means groups rows by L2 distance. Queries probe by the metric's own score.
Match assign_rule(Metric m) { return m == Metric::cosine ? Match::dot : Match::l2; }
Match probe_rule(Metric m) { return m == Metric::l2 ? Match::l2 : Match::dot; }

}  // namespace

FlatIndex::~FlatIndex() = default;

std::unique_ptr<Partitions> make_partitions(std::size_t count, std::size_t dim, Metric metric) {
    return std::make_unique<Partitions>(count, dim, assign_rule(metric), probe_rule(metric));
}

void FlatIndex::train_partitions(const float* x, std::size_t n, const KMeansOptions& opt) {
    if (!partitions_)
        throw std::invalid_argument("train_partitions applies to a partitioned index (partitions > 0)");
    std::size_t bad = 0;
    if (!detail::all_finite(x, n * dim_, &bad))
        throw std::invalid_argument("training vectors must be finite: row " + std::to_string(bad / dim_) +
                                    ", column " + std::to_string(bad % dim_) + " is NaN or Inf");
    detail::check_norms(metric_, x, n, dim_, "training vectors");
    FloatBuffer tmp;
    x = unit_rows(x, n, tmp);
    const KernelTable& kt = active_kernels();
    FloatBuffer c = kmeans(kt, x, n, dim_, partitions_, assign_rule(metric_), opt);

    std::unique_lock<RwLock> lock(mu_);
    make_writable_unlocked(0, "train partitions");
    auto fresh = make_partitions(partitions_, dim_, metric_);
    fresh->set_centroids(std::move(c));
    fresh->default_nprobe = ivf_->default_nprobe;
    // Every stored row moves to its nearest new centroid.
    const std::size_t rows = ids_.size();
    std::vector<std::uint32_t> part(rows);
    if (has_floats()) {
        fresh->nearest(kt, rows_unlocked(), rows, part.data());
    } else {  // the decoded codes: int8, a binary index's int8 tier, or its bits
        FloatBuffer decoded(std::min(rows, kDecodeRows) * dim_);
        for (std::size_t r0 = 0; r0 < rows; r0 += kDecodeRows) {
            const std::size_t m = std::min(kDecodeRows, rows - r0);
            if (dtype_ == Dtype::int8)
                quant_.decode(codes_unlocked() + r0 * dim_, m, decoded.data());
            else if (keep_int8_)
                quant_.decode(tier_unlocked() + r0 * dim_, m, decoded.data());
            else
                bits_.decode(reinterpret_cast<const std::uint8_t*>(codes_unlocked()) + r0 * code_cols(), m,
                             decoded.data());
            fresh->nearest(kt, decoded.data(), m, part.data() + r0);
        }
    }
    // Stored grouped by partition, as add stores each batch (the scan reads runs of consecutive rows in place).
    permute_rows_unlocked(group_by_partition(part));
    fresh->append(part.data(), rows);
    ivf_ = std::move(fresh);
}

namespace {
template <class T>
void permute(RowStore<T>& store, std::size_t width, const std::vector<std::uint32_t>& order) {
    if (store.size() == 0) return;
    RowStore<T> out;
    out.reserve(order.size() * width);
    for (std::uint32_t src : order) out.append(store.data() + std::size_t(src) * width, width);
    store = std::move(out);
}
}  // namespace

void FlatIndex::permute_rows_unlocked(const std::vector<std::uint32_t>& order) {
    permute(data_, dim_, order);
    permute(codes_, code_cols(), order);
    permute(tier_, dim_, order);
    permute(norms_, 1, order);
    permute(ids_, 1, order);
    slot_of_ = IdMap();
    slot_of_.reserve(ids_.size(), ids_.data());
    for (std::size_t i = 0; i < ids_.size(); ++i) slot_of_.insert(ids_.data()[i], i, ids_.data());
}

bool FlatIndex::partitions_trained() const {
    std::shared_lock<RwLock> lock(mu_);
    return ivf_ && ivf_->trained();
}

std::vector<float> FlatIndex::centroids() const {
    std::shared_lock<RwLock> lock(mu_);
    if (!ivf_ || !ivf_->trained()) return {};
    return std::vector<float>(ivf_->centroids(), ivf_->centroids() + partitions_ * dim_);
}

std::vector<std::uint64_t> FlatIndex::list_sizes() const {
    std::shared_lock<RwLock> lock(mu_);
    std::vector<std::uint64_t> out(partitions_);
    for (std::size_t p = 0; p < partitions_; ++p) out[p] = ivf_->list_size(p);
    return out;
}

std::size_t FlatIndex::default_nprobe() const {
    std::shared_lock<RwLock> lock(mu_);
    if (!ivf_) return 0;
    return ivf_->nprobe_or_default(0);
}

void FlatIndex::set_default_nprobe(std::size_t nprobe) {
    if (!partitions_) throw std::invalid_argument("nprobe applies to a partitioned index (partitions > 0)");
    if (nprobe == 0 || nprobe > partitions_)
        throw std::invalid_argument("nprobe must be in [1, partitions=" + std::to_string(partitions_) + "], got " +
                                    std::to_string(nprobe));
    std::unique_lock<RwLock> lock(mu_);
    ivf_->default_nprobe = nprobe;
}

std::vector<std::uint32_t> FlatIndex::assign_unlocked(const float* x, std::size_t n) const {
    if (!ivf_->trained())
        throw std::invalid_argument("this partitioned index has no centroids yet: train it (train_partitions) "
                                    "before adding; nothing was added");
    std::vector<std::uint32_t> part(n);
    if (metric_ != Metric::cosine) {
        ivf_->nearest(active_kernels(), x, n, part.data());
        return part;
    }
    FloatBuffer unit(x, x + n * dim_);
    normalize_rows(unit.data(), n, dim_);
    ivf_->nearest(active_kernels(), unit.data(), n, part.data());
    return part;
}

std::vector<std::uint32_t> FlatIndex::probe_unlocked(const KernelTable& kt, const float* queries, std::size_t nq,
                                                     const SearchParams& p, std::size_t* nprobe) const {
    const std::size_t np = ivf_->nprobe_or_default(p.nprobe);
    if (np > partitions_)
        throw std::invalid_argument("nprobe must be in [1, partitions=" + std::to_string(partitions_) + "], got " +
                                    std::to_string(np));
    std::vector<std::uint32_t> out(nq * np);
    if (nq && ivf_->trained()) ivf_->probe(kt, queries, nq, np, out.data(), p.interrupt);
    *nprobe = np;
    return out;
}

}  // namespace simdex

namespace simdex {

// "ivf.params": u64 [partitions, default nprobe (0: none stored)]; "ivf.centroids": f32 partitions x dim, once
// trained; "ivf.assign": u32 per row, its partition, once trained. All required: an index read without them would
// scan lists it does not have.
void FlatIndex::write_partitions_unlocked(format::Writer& w) const {
    if (!ivf_) return;
    const std::uint64_t params[2] = {partitions_, ivf_->default_nprobe};
    w.add_copy(kPartitionSections[0], params, sizeof params, true);
    if (!ivf_->trained()) return;
    w.add(kPartitionSections[1], format::DType::f32, partitions_, dim_, ivf_->centroids(), true);
    w.add(kPartitionSections[2], format::DType::u32, ivf_->size(), 1, ivf_->assignment(), true);
}

void FlatIndex::read_partitions(const format::Reader& r) {
    const format::SectionView* params = r.find(kPartitionSections[0]);
    if (!params) {
        if (r.find(kPartitionSections[1]) || r.find(kPartitionSections[2]))
            r.fail("partition sections without 'ivf.params'");
        return;
    }
    std::uint64_t pv[2];
    std::memcpy(pv, r.get(kPartitionSections[0], format::DType::bytes, sizeof pv, 1).data, sizeof pv);
    if (pv[0] == 0 || pv[0] > Partitions::kMaxPartitions)
        r.fail("partitions " + std::to_string(pv[0]) + " is outside 1.." + std::to_string(Partitions::kMaxPartitions));
    if (pv[1] > pv[0]) r.fail("default nprobe " + std::to_string(pv[1]) + " is above partitions " + std::to_string(pv[0]));
    partitions_ = static_cast<std::size_t>(pv[0]);
    ivf_ = make_partitions(partitions_, dim_, metric_);
    ivf_->default_nprobe = static_cast<std::size_t>(pv[1]);
    const std::size_t n = ids_.size();
    if (!r.find(kPartitionSections[1])) {
        if (r.find(kPartitionSections[2])) r.fail("section 'ivf.assign' without centroids");
        if (n) r.fail("a partitioned index with vectors needs its centroids ('ivf.centroids')");
        return;
    }
    const format::SectionView& c = r.get(kPartitionSections[1], format::DType::f32, pv[0], dim_);
    const format::SectionView& a = r.get(kPartitionSections[2], format::DType::u32, n, 1);
    try {
        ivf_->set_centroids(FloatBuffer(c.as<float>(), c.as<float>() + partitions_ * dim_));
    } catch (const std::invalid_argument& e) {
        r.fail(e.what());
    }
    const std::uint32_t* part = a.as<std::uint32_t>();
    for (std::size_t i = 0; i < n; ++i)
        if (part[i] >= partitions_)
            r.fail("row " + std::to_string(i) + " is in partition " + std::to_string(part[i]) + " of " +
                   std::to_string(partitions_));
    ivf_->append(part, n);
}

}  // namespace simdex
