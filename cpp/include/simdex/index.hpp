// Exact inner-product / cosine / squared-L2 index over float32 rows, with stable int64 ids, removal and filtered search; or
// the same over int8 codes (Dtype::int8, docs/int8.md), optionally keeping the float rows for rescoring.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <vector>

#include "simdex/binary.hpp"
#include "simdex/format.hpp"
#include "simdex/id_map.hpp"
#include "simdex/quantize.hpp"
#include "simdex/row_store.hpp"
#include "simdex/rw_lock.hpp"
#include "simdex/thread_pool.hpp"

namespace simdex {

// l2: squared Euclidean distance, smallest first. The scan ranks by <q, x> - ||x||^2 / 2 with the dot kernels
// and a stored squared norm per row, then recomputes each result's distance directly as ||q - x||^2.
enum class Metric { cosine, ip, l2 };

// Ids are int64 values in [0, kIdLimit); -1 marks "no result".
constexpr std::uint64_t kIdLimit = std::uint64_t(1) << 63;
const char* metric_name(Metric m) noexcept;
Metric parse_metric(const std::string& name);  // std::invalid_argument on an unknown name

// How rows are stored and scored: float32 rows, int8 codes scored with the integer kernels, or 1-bit codes
// (binary.hpp) scored with the asymmetric binary kernels (cosine and ip only).
enum class Dtype { float32, int8, binary };
const char* dtype_name(Dtype d) noexcept;
Dtype parse_dtype(const std::string& name);  // std::invalid_argument on an unknown name

// 64-byte aligned storage for SIMD rows. Buffers of 32 MiB or more are 2 MiB aligned and advised to use
// transparent huge pages: a scan streams through them, and with 4 KiB pages it takes a TLB miss every 4 KiB (a
// two-level page walk under virtualization); streaming 384 MB measured 1.2-1.8x faster with huge pages here.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    static constexpr std::size_t kHugeBytes = std::size_t(32) << 20;
    static constexpr std::size_t kHugeAlign = std::size_t(2) << 20;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    static std::align_val_t alignment(std::size_t bytes) noexcept {
        return std::align_val_t(bytes >= kHugeBytes ? kHugeAlign : 64);
    }
    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        void* p = ::operator new(bytes, alignment(bytes));
        if (bytes >= kHugeBytes) detail::advise_huge_pages(p, bytes);  // before the first touch
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept { ::operator delete(p, alignment(n * sizeof(T))); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};
using FloatBuffer = std::vector<float, AlignedAllocator<float>>;
using CodeBuffer = std::vector<std::int8_t, AlignedAllocator<std::int8_t>>;

struct SearchParams {
    std::size_t k = 10;
    float min_score = -std::numeric_limits<float>::infinity();  // results below it are dropped (not under l2)
    float max_distance = std::numeric_limits<float>::infinity(); // l2 only: results farther than it are dropped
    bool has_filter = false;                                    // when true, only ids in filter qualify
    const std::int64_t* filter = nullptr;
    std::size_t filter_size = 0;
    InterruptFn interrupt;  // polled between blocks of work (Ctrl-C)
    // int8 / binary: 0 returns the codes' scores; R >= 1 takes the k * R best by code score and rescores them
    // exactly with the kept float rows, or a binary index's kept int8 codes (an index with neither throws
    // std::invalid_argument).
    std::size_t rescore = 0;
    // Partitioned index: how many partitions each query probes (0: the index's default_nprobe()).
    std::size_t nprobe = 0;
    // int8 with kept originals (index_exact.cpp): exactly the float32 top-k, certified by a bound on the int8
    // score's error; rescored (nq entries, when not null) receives how many rows each query rescored.
    bool exact = false;
    std::uint64_t* rescored = nullptr;
};

struct KernelTable;

// Bytes an index holds, by part.
struct MemoryUsage {
    std::size_t vectors = 0;      // float rows and int8 / binary codes
    std::size_t calibration = 0;  // int8 offsets and steps, binary centre and scale, pre-transform parameters
    std::size_t ids = 0;          // slot -> id array and id -> slot map
    std::size_t metadata = 0;
    std::size_t file_image = 0;   // a loaded (not mapped) file whose sections hold the rows
    std::size_t partitions = 0;   // centroids and the partition lists of a partitioned index
};
template <class T>
struct RowsView;
struct HammingNear;  // scan.hpp

// A section the Python layer keeps in the index file beside the vectors (an index pre-transform's parameters and
// matrices). Only names listed in io.cpp (kExtraSections, docs/format.md) are accepted.
struct ExtraSection {
    std::string name;
    format::DType dtype = format::DType::bytes;
    std::uint64_t rows = 0, cols = 0;
    bool required = false;  // an index that cannot be searched correctly without it
    std::vector<std::uint8_t> data;
};

class Partitions;
struct KMeansOptions;
// Section names of a partitioned index's file (docs/format.md): its parameters, centroids and row -> partition.
inline constexpr const char* kPartitionSections[] = {"ivf.params", "ivf.centroids", "ivf.assign"};

class FlatIndex {
  public:
    // keep_originals: an int8 index also keeps the float rows (for rescoring and reconstruct); std::invalid_argument
    // with float32, whose rows are the originals.
    // partitions > 0: an inverted-file index (docs/ivf.md): rows are grouped by their nearest of `partitions`
    // centroids, learned by train_partitions, and a search scores only the partitions each query probes.
    // keep_int8: a binary index also keeps int8 codes of the rows (docs/int8.md, "Binary codes"), which rescore
    // uses instead of float rows; std::invalid_argument with another dtype or with keep_originals.
    FlatIndex(std::size_t dim, Metric metric, Dtype dtype = Dtype::float32, bool keep_originals = false,
              std::size_t partitions = 0, bool keep_int8 = false);
    ~FlatIndex();
    FlatIndex(FlatIndex&& other) noexcept;

    std::size_t dim() const noexcept { return dim_; }
    Metric metric() const noexcept { return metric_; }
    Dtype dtype() const noexcept { return dtype_; }
    bool keeps_originals() const noexcept { return dtype_ == Dtype::float32 || keep_originals_; }
    bool keeps_int8() const noexcept { return keep_int8_; }

    // int8 calibration. train learns it from n rows (normalized first under cosine) and fixes it: every later
    // batch is encoded the same way. Without train, the first add calibrates on its own rows. std::invalid_argument
    // for a float32 index or one already calibrated (create a new index to recalibrate).
    void train(const float* x, std::size_t n);
    bool trained() const;

    // Partitioned indexes (index_ivf.cpp). partitions(): 0 for the exact index.
    std::size_t partitions() const noexcept { return partitions_; }
    // k-means on n rows (normalized first under cosine); then every stored row moves to its nearest new centroid
    // (ids, rows and codes stay). Until it runs, add throws. std::invalid_argument on too few rows, a mapped
    // index, or an exact one.
    void train_partitions(const float* x, std::size_t n, const KMeansOptions& opt);
    bool partitions_trained() const;
    std::vector<float> centroids() const;           // partitions x dim; empty until trained
    std::vector<std::uint64_t> list_sizes() const;  // rows per partition
    // The nprobe a search uses when it names none: the stored one (tune), else max(1, partitions / 16).
    std::size_t default_nprobe() const;
    void set_default_nprobe(std::size_t nprobe);    // std::invalid_argument outside [1, partitions]
    // int8: offset (dim) then step (dim); binary: centre (dim) then scale (dim); std::invalid_argument when not
    // calibrated.
    std::vector<float> calibration() const;
    // Bytes per stored code row: dim (int8), ceil(dim / 8) (binary), 0 (float32).
    std::size_t code_cols() const noexcept {
        return dtype_ == Dtype::binary ? (dim_ + 7) / 8 : dtype_ == Dtype::int8 ? dim_ : 0;
    }
    // The stored codes of the given ids (n x code_cols() bytes: int8 codes, or binary bits); std::out_of_range if
    // one is missing.
    void codes(const std::int64_t* ids, std::size_t n, std::int8_t* out) const;
    std::size_t size() const;
    // One past the largest id ever added (removals do not lower it), in [0, 2^63]: 2^63 once id 2^63 - 1 was
    // added, after which automatic ids are refused rather than wrapped into ids that may be in use.
    std::uint64_t next_id() const;

    // Validates everything, then adds n rows (normalized under cosine) in one step: a concurrent search sees all
    // of them or none. ids == nullptr: consecutive ids from the largest id ever added + 1. Returns the first id
    // given (for ids == nullptr; chosen under the lock, so concurrent adds cannot mix them up). Throws
    // std::invalid_argument, changing nothing, on a non-finite value, a negative id, an id already present (in
    // the index or twice in the batch), automatic ids that would pass 2^63 - 1, or a memory-mapped (read-only)
    // index.
    std::int64_t add(const float* x, std::size_t n, const std::int64_t* ids);
    // Removes the ids present; returns how many were removed. Other ids keep their vectors.
    std::size_t remove(const std::int64_t* ids, std::size_t n);
    void reset();
    // True when the rows are read in place from a read-only file mapping (load(path, true)).
    bool mapped() const;

    // scores / ids: nq x k, best first, padded with (-inf, -1); under l2 squared distances, nearest first,
    // padded with (+inf, -1).
    void search(const float* queries, std::size_t nq, const SearchParams& params, float* scores,
                std::int64_t* ids) const;

    std::vector<std::int64_t> ids() const;
    bool contains(std::int64_t id) const;
    // Copies the stored (normalized, under cosine) vectors of the given ids; std::out_of_range if one is missing.
    // int8: the kept float rows, or the decoded codes when the index keeps none.
    void reconstruct(const std::int64_t* ids, std::size_t n, float* out) const;
    std::size_t memory_usage() const;
    MemoryUsage memory_breakdown() const;

    // Opaque JSON text the Python layer keeps with the index (e.g. the embedding model's fingerprint).
    std::string metadata() const;
    void set_metadata(std::string text);

    // Extra sections saved with the index, replaced as a whole; std::invalid_argument on an unknown name, a
    // duplicate, or a size that does not match dtype x rows x cols.
    std::vector<ExtraSection> extra_sections() const;
    void set_extra_sections(std::vector<ExtraSection> sections);

    // Files (io.cpp, docs/format.md). save is atomic and durable; it excludes add/remove/reset for its whole
    // duration (a consistent snapshot) while searches go on. load validates the whole file before using it and
    // throws FormatError for anything malformed. mmap: the rows stay in a read-only mapping of the file (opening
    // is instant; the vectors' checksum is not computed, their sizes and bounds are) and the index is read-only.
    void save(const std::string& path) const;
    std::vector<std::uint8_t> to_bytes() const;
    static FlatIndex load(const std::string& path, bool mmap = false);
    static FlatIndex load_bytes(const void* data, std::size_t size);

  private:
    // Partitioned indexes (index_ivf.cpp). The nearest partition of n rows about to be added (normalized under
    // cosine), computed before anything changes; the probes of nq (normalized) queries, nq x *nprobe.
    std::vector<std::uint32_t> assign_unlocked(const float* x, std::size_t n) const;
    // exact=True (index_exact.cpp): one int8 scan keeps the rows within twice the error bound of each k-th score,
    // rescored exactly until no row left can reach it.
    void search_i8_exact(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                         const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const;
    // The largest quantization error ||x - decoded x||, code L1 and L2 norms and row norm over the stored rows,
    // computed on first use after a change (error_bounds_stale_).
    struct ErrorBounds {
        double error = 0, code_l1 = 0, code_l2 = 0, norm = 0;
    };
    ErrorBounds error_bounds_unlocked() const;
    std::vector<std::uint32_t> probe_unlocked(const KernelTable& kt, const float* queries, std::size_t nq,
                                              const SearchParams& p, std::size_t* nprobe) const;
    // Moves the row at slot order[i] to slot i, for every i (ids, rows, codes, norms and the id map follow).
    void permute_rows_unlocked(const std::vector<std::uint32_t>& order);
    // The partition sections of a file (kPartitionSections): written by save, checked and restored by load.
    void write_partitions_unlocked(format::Writer& w) const;
    void read_partitions(const format::Reader& r);
    // A binary file's centre, scale and bit rows (io.cpp): checked, then bits_ and base_codes_ set.
    void read_binary(const format::Reader& r, std::uint64_t count);
    void read_int8(const format::Reader& r, std::uint64_t count, const std::int8_t** codes, std::uint32_t* crc);
    static FlatIndex from_blob(format::BlobPtr blob);
    format::Writer writer_unlocked() const;
    void check_ids_unlocked(const std::int64_t* ids, std::size_t n) const;
    // The rows: owned data_, or a loaded file image base_ (read-only). int8: the kept float rows, or nullptr.
    const float* rows_unlocked() const noexcept { return base_ ? base_rows_ : data_.data(); }
    const std::int8_t* codes_unlocked() const noexcept { return base_ ? base_codes_ : codes_.data(); }
    bool has_floats() const noexcept { return dtype_ == Dtype::float32 || keep_originals_; }
    std::size_t slot_of(std::int64_t id) const noexcept { return slot_of_.find(id, ids_.data()); }  // or npos
    // The n rows as they are coded: under cosine a normalized copy held in tmp, else x itself.
    const float* unit_rows(const float* x, std::size_t n, FloatBuffer& tmp) const;
    void add_i8_unlocked(const float* x, std::size_t n);
    // Binary (index_binary.cpp): the first add learns the centre unless train did.
    void add_b1_unlocked(const float* x, std::size_t n);
    void search_b1(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                   const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const;
    // int8 / binary: the final top lists from the scan's candidates (cand_k per query, best first): the codes'
    // scores (step[i] * score + offset_term[i]; step nullptr: 1), or with p.rescore the exact float scores of the
    // kept rows (keep_int8_: of the decoded int8 rows), re-sorted; then p.min_score.
    void finish_codes(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                      std::size_t cand_k, const float* code_scores, const std::int64_t* found, const float* step,
                      const double* offset_term, float* scores, std::int64_t* ids) const;
    // Binary (index_search.cpp): the query weights rounded to integers rank a pool of 2 * sp.k + kB1PoolExtra
    // rows per query (a batch: int8 weights in the int8 GEMM; a single query, or the probed lists of a partitioned
    // index: int16 weights in the integer-sum scan), whose exact asymmetric scores pick the sp.k best (sums /
    // found: nq x sp.k, best first). queries: as search got them (normalized under cosine), for probing. pools:
    // when not null, a batch may take the Hamming prefilter (b1_hamming_pools), which fills it.
    static constexpr std::size_t kB1PoolExtra = 16;
    void b1_candidates(const KernelTable& kt, const RowsView<std::uint8_t>& all, const std::vector<std::size_t>* slots,
                       const float* queries, const float* weights, std::size_t nq, const SearchParams& sp,
                       std::vector<std::vector<HammingNear>>* pools, float* sums, std::int64_t* found) const;
    // Where popcount is fast, a batch first keeps each query's kB1HammingPool rows nearest in Hamming distance to
    // its weights' signs (run_hamming_pool_b1, into pools) and ranks those as a single query ranks its rows (the
    // integer sums, then dot_b1 on the gk best). search_b1 then keeps a query's answer only if its rows lie in the
    // nearer 1 / kB1HammingTrustShare of its pool. On real-minilm (bench/README_quant.md) 500 kept recall@10 at
    // R = 4 / 10 within 0.0005 of ranking every row.
    static constexpr std::size_t kB1HammingPool = 500, kB1HammingTrustShare = 4;
    // Below 256 dims Hamming ranks too coarsely; past 4,096 each query's distance histograms grow large.
    static constexpr std::size_t kB1HammingMinDim = 256, kB1HammingMaxDim = 4096;
    static constexpr std::size_t kB1HammingMinRows = 8 * kB1HammingPool;
    std::size_t b1_hamming_pool_rows(std::size_t cand_k) const noexcept {  // rows each query's pool keeps
        return std::max(kB1HammingPool, std::min(ids_.size(), 2 * cand_k + kB1PoolExtra));
    }
    void b1_hamming_pools(const KernelTable& kt, const RowsView<std::uint8_t>& all,
                          const std::vector<std::size_t>* slots, const float* weights, std::size_t nq, std::size_t gk,
                          const SearchParams& sp, std::vector<std::vector<HammingNear>>* pools, float* sums,
                          std::int64_t* found) const;
    bool has_codes() const noexcept { return dtype_ != Dtype::float32; }
    const std::int8_t* tier_unlocked() const noexcept { return base_ ? base_tier_ : tier_.data(); }
    // keep_int8_: the exact score of query q against the decoded int8 row at slot (the rescore of that tier).
    float tier_score(const float* q, std::size_t slot) const noexcept;
    bool is_calibrated() const noexcept {
        return dtype_ == Dtype::binary ? bits_.trained() : dtype_ == Dtype::int8 ? quant_.trained() : true;
    }
    void search_i8(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                   const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const;
    template <class T, class Fn>
    void with_filter(RowsView<T> all, const std::vector<std::size_t>* slots, Fn&& fn) const;
    // Before a change: refuses a mapped index; copies a loaded file image into data_ (room for extra_rows more).
    void make_writable_unlocked(std::size_t extra_rows, const char* what);
    // l2 (index_search.cpp): the squared norms of n rows just stored at slot `old` (int8: of their decoded codes).
    void append_norms_unlocked(std::size_t old, std::size_t n);
    const float* norms_unlocked() const noexcept { return base_ ? base_norms_ : norms_.data(); }
    // l2: the top lists the scan ranked (cand_k per query) become exact squared distances (nq x p.k).
    void finish_l2(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                   std::size_t cand_k, const std::int64_t* found, bool originals, float* dist,
                   std::int64_t* ids) const;
    // The top lists of float rows ranked for search (under l2 by <q, x> - ||x||^2 / 2).
    void search_f32(const KernelTable& kt, const float* queries, std::size_t nq, const SearchParams& p,
                    const std::vector<std::size_t>* slots, float* scores, std::int64_t* ids) const;

    std::size_t dim_;
    Metric metric_;
    Dtype dtype_ = Dtype::float32;
    bool keep_originals_ = false;
    bool keep_int8_ = false;           // binary: int8 codes kept for rescoring (quant_ their calibration)
    RowStore<std::int8_t> tier_;       // keep_int8_: size() rows of dim_ int8 codes, unless base_ holds them
    const std::int8_t* base_tier_ = nullptr;
    std::uint32_t base_tier_crc_ = 0;
    Quantizer quant_;                  // int8 calibration
    BitCoder bits_;                    // binary centre and scale
    RowStore<std::int8_t> codes_;      // int8 / binary: size() rows of code_cols() bytes, unless base_ holds them
    const std::int8_t* base_codes_ = nullptr;
    RowStore<float> data_;             // size() rows of dim_ floats (int8: only with keep_originals), unless base_
    format::BlobPtr base_;             // a loaded file (mapped or read) whose vectors section holds the rows
    const float* base_rows_ = nullptr;
    RowStore<float> norms_;            // l2: squared norm of each row (int8: of its decoded codes), unless base_
    const float* base_norms_ = nullptr;
    std::uint32_t base_norms_crc_ = 0;
    // The checksums base_'s vector and code sections had in the file (save compares what it copies against them),
    // and whether their contents were checked at load (a mapped file's are not: save checks them then).
    std::uint32_t base_rows_crc_ = 0, base_codes_crc_ = 0;
    bool base_checked_ = false;
    RowStore<std::int64_t> ids_;       // slot -> id
    IdMap slot_of_;                    // id -> slot; its keys are read from ids_ (slot_of)
    std::uint64_t next_id_ = 0;        // next_id(): at most kIdLimit
    std::string metadata_;
    std::vector<ExtraSection> extras_;
    std::size_t partitions_ = 0;
    std::unique_ptr<Partitions> ivf_;  // partitions_ > 0: centroids and lists (trained or not)
    mutable std::mutex bounds_mu_;     // guards the cached bounds below (searches share mu_)
    mutable bool bounds_valid_ = false;
    mutable ErrorBounds bounds_;
    mutable RwLock mu_;                // search / save / readers shared; add / remove / reset exclusive
};

// Normalizes each row to unit L2 norm in place (rows of norm 0 stay zero). Any finite non-zero row becomes its
// unit vector, however large or small its values.
void normalize_rows(float* x, std::size_t n, std::size_t dim);

// Under the ip metric, vectors and queries have an L2 norm of at most 2^63 (kMaxIpNorm): then no inner product,
// nor any partial sum of one, passes 2^126 < 3.4e38 (Cauchy-Schwarz), so float32 scores never overflow. Returns
// the first row over it, or n.
constexpr double kMaxIpNorm = 0x1p63;
// Under l2 the bound is 2^62 (kMaxL2Norm), so ||q - x||^2 <= (||q|| + ||x||)^2 <= 2^126 stays finite too.
constexpr double kMaxL2Norm = 0x1p62;
std::size_t first_row_over_ip_norm(const float* x, std::size_t n, std::size_t dim, double limit = kMaxIpNorm);
double max_norm(Metric m) noexcept;  // kMaxL2Norm under l2, else kMaxIpNorm

}  // namespace simdex
