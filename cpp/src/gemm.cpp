#include "simdex/gemm.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace simdex {
namespace {

constexpr std::size_t kKc = 192;               // depth per micro-kernel call: the B micro-panel stays in L1
constexpr std::size_t kRowPanelsPerTile = 8;   // gemm_nt: A rows per task = 8 * mr (packed tile stays in L2)
constexpr std::size_t kColPanelsPerTile = 16;  // gemm_nt: B rows per task, so wide outputs split too
constexpr std::size_t kSerialFlops = std::size_t(1) << 22;  // below this, threads cost more than they save
constexpr std::size_t kSyrkBlock = 96;         // syrk: C block edge (rounded to mr / nr multiples)
constexpr std::size_t kPackRows = 64;          // syrk: rows per packing task

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// Packs `rows` (<= W) rows of x (row stride dim) into one [dim][W] panel, zero-padding missing rows, k outermost
// so every store is contiguous. Returns the sum of x * 0 over the rows: NaN exactly when one value is NaN or
// Inf, which checks the input in the same pass that reads it.
template <std::size_t W>
float pack_panel_fixed(const float* x, std::size_t rows, std::size_t dim, float* out) {
    float poison = 0.0f;
    if (rows == W) {
        for (std::size_t k = 0; k < dim; ++k, out += W)
            for (std::size_t j = 0; j < W; ++j) {
                const float v = x[j * dim + k];
                out[j] = v;
                poison += v * 0.0f;
            }
        return poison;
    }
    for (std::size_t k = 0; k < dim; ++k, out += W) {
        std::size_t j = 0;
        for (; j < rows; ++j) {
            const float v = x[j * dim + k];
            out[j] = v;
            poison += v * 0.0f;
        }
        for (; j < W; ++j) out[j] = 0.0f;
    }
    return poison;
}

float pack_panel_any(const float* x, std::size_t rows, std::size_t dim, std::size_t width, float* out) {
    float poison = 0.0f;
    for (std::size_t k = 0; k < dim; ++k, out += width) {
        std::size_t j = 0;
        for (; j < rows; ++j) {
            const float v = x[j * dim + k];
            out[j] = v;
            poison += v * 0.0f;
        }
        for (; j < width; ++j) out[j] = 0.0f;
    }
    return poison;
}

// kernels::pack_panels with the finite check folded in; returns false if x holds a NaN or Inf.
bool pack_checked(const float* x, std::size_t rows, std::size_t dim, std::size_t width, float* out) {
    float poison = 0.0f;
    for (std::size_t p0 = 0; p0 < rows; p0 += width) {
        const std::size_t live = std::min(width, rows - p0);
        const float* src = x + p0 * dim;
        float* dst = out + p0 * dim;
        switch (width) {
            case 4: poison += pack_panel_fixed<4>(src, live, dim, dst); break;
            case 6: poison += pack_panel_fixed<6>(src, live, dim, dst); break;
            case 8: poison += pack_panel_fixed<8>(src, live, dim, dst); break;
            case 12: poison += pack_panel_fixed<12>(src, live, dim, dst); break;
            default: poison += pack_panel_any(src, live, dim, width, dst); break;
        }
    }
    return poison == 0.0f;
}

// out[p][s][i] = x[r0 + s][p * width + i] - shift[p * width + i] for s < rows, zero for columns >= d:
// column panels of a row block, the layout the micro-kernel reads for a product over rows (z^T z).
void pack_column_panels(const float* x, std::size_t d, std::size_t r0, std::size_t rows, std::size_t chunk_rows,
                        const float* shift, std::size_t width, float* out) {
    const std::size_t panels = ceil_div(d, width);
    for (std::size_t p = 0; p < panels; ++p) {
        const std::size_t c0 = p * width, live = std::min(width, d - c0);
        float* dst = out + p * chunk_rows * width + r0 * width;
        for (std::size_t s = 0; s < rows; ++s, dst += width) {
            const float* src = x + (r0 + s) * d + c0;
            for (std::size_t i = 0; i < live; ++i) dst[i] = src[i] - shift[c0 + i];
            for (std::size_t i = live; i < width; ++i) dst[i] = 0.0f;
        }
    }
}

}  // namespace

PackedRows pack_rows(const KernelTable& kt, const float* b, std::size_t n, std::size_t k) {
    PackedRows p;
    p.isa = kt.isa;
    p.n = n;
    p.k = k;
    p.nr = kt.gemm_nr;
    p.data.resize(ceil_div(n, p.nr) * p.nr * k);
    kernels::pack_panels(b, n, k, p.nr, p.data.data());
    return p;
}

void gemm_nt(const KernelTable& kt, const float* a, std::size_t m, const PackedRows& b, const float* bias, float* c,
             std::size_t ldc, const InterruptFn& interrupt) {
    if (b.isa != kt.isa || b.nr != kt.gemm_nr)
        throw std::invalid_argument(std::string("gemm_nt: operand packed for ") + isa_name(b.isa) + ", kernels are " +
                                    kt.name);
    if (m == 0 || b.n == 0) return;
    const std::size_t mr = kt.gemm_mr, nr = kt.gemm_nr, k = b.k;
    const std::size_t mc = mr * kRowPanelsPerTile;
    const std::size_t col_panels = ceil_div(b.n, nr);
    const std::size_t row_tiles = ceil_div(m, mc), col_tiles = ceil_div(col_panels, kColPanelsPerTile);
    const std::size_t tile_cols = std::min(col_panels, kColPanelsPerTile) * nr;

    const bool serial = m * b.n * std::max<std::size_t>(k, 1) < kSerialFlops;
    const std::size_t workers = serial ? 1 : num_threads();
    struct Scratch {
        FloatBuffer a, c;
    };
    std::vector<Scratch> scratch(workers);
    // Tasks walk row tiles in the outer order so consecutive tasks of a worker share its packed A tile.
    std::vector<std::size_t> packed_tile(workers, SIZE_MAX);

    parallel_for(
        row_tiles * col_tiles, workers,
        [&](std::size_t t, std::size_t w) {
            Scratch& s = scratch[w];
            if (s.a.empty()) {
                s.a.resize(kRowPanelsPerTile * mr * std::max<std::size_t>(k, 1));
                s.c.resize(mc * tile_cols);
            }
            const std::size_t rt = t / col_tiles, ct = t % col_tiles;
            const std::size_t r0 = rt * mc, rows = std::min(mc, m - r0), a_panels = ceil_div(rows, mr);
            if (packed_tile[w] != rt) {
                if (!pack_checked(a + r0 * k, rows, k, mr, s.a.data())) throw NonFiniteInput(r0, rows);
                packed_tile[w] = rt;
            }
            const std::size_t p0 = ct * kColPanelsPerTile, p1 = std::min(col_panels, p0 + kColPanelsPerTile);
            const std::size_t ldt = (p1 - p0) * nr;
            if (k == 0) std::fill(s.c.begin(), s.c.end(), 0.0f);
            for (std::size_t k0 = 0; k0 < k; k0 += kKc) {
                const std::size_t kc = std::min(kKc, k - k0);
                for (std::size_t jp = p0; jp < p1; ++jp) {
                    const float* bp = b.data.data() + jp * nr * k + k0 * nr;
                    for (std::size_t ip = 0; ip < a_panels; ++ip)
                        kt.gemm_f32(kc, s.a.data() + ip * mr * k + k0 * mr, bp, s.c.data() + ip * mr * ldt + (jp - p0) * nr,
                                    ldt, k0 > 0);
                }
            }
            const std::size_t j0 = p0 * nr, cols = std::min(b.n, p1 * nr) - j0;
            for (std::size_t i = 0; i < rows; ++i) {
                const float* src = s.c.data() + i * ldt;
                float* dst = c + (r0 + i) * ldc + j0;
                if (bias)
                    for (std::size_t j = 0; j < cols; ++j) dst[j] = src[j] - bias[j0 + j];
                else
                    std::copy(src, src + cols, dst);
            }
        },
        interrupt);
}

void syrk_update(const KernelTable& kt, const float* x, std::size_t n, std::size_t d, const float* shift, double* s,
                 double* col_sum, const InterruptFn& interrupt) {
    if (n == 0 || d == 0) return;
    const std::size_t mr = kt.gemm_mr, nr = kt.gemm_nr;
    const std::size_t a_panels = ceil_div(d, mr), b_panels = ceil_div(d, nr);
    // Block edges: whole panels, about kSyrkBlock wide.
    const std::size_t mb = mr * std::max<std::size_t>(1, kSyrkBlock / mr);
    const std::size_t nb = nr * std::max<std::size_t>(1, kSyrkBlock / nr);
    const std::size_t block_rows = ceil_div(d, mb), block_cols = ceil_div(d, nb);
    // Only blocks that reach the diagonal or above it.
    std::vector<std::pair<std::size_t, std::size_t>> blocks;
    for (std::size_t bi = 0; bi < block_rows; ++bi)
        for (std::size_t bj = 0; bj < block_cols; ++bj)
            if ((bj + 1) * nb > bi * mb) blocks.emplace_back(bi, bj);

    const std::size_t chunk = std::min(n, kSyrkChunkRows);
    const std::size_t workers = num_threads();
    FloatBuffer pa(a_panels * mr * chunk), pb(b_panels * nr * chunk);
    std::vector<FloatBuffer> tiles(workers);
    std::vector<std::vector<double>> sums(workers, std::vector<double>(d, 0.0));

    for (std::size_t c0 = 0; c0 < n; c0 += chunk) {
        const std::size_t rows = std::min(chunk, n - c0);
        const float* xc = x + c0 * d;
        parallel_for(
            ceil_div(rows, kPackRows), workers,
            [&](std::size_t t, std::size_t w) {
                const std::size_t r0 = t * kPackRows, r = std::min(kPackRows, rows - r0);
                pack_column_panels(xc, d, r0, r, rows, shift, mr, pa.data());
                pack_column_panels(xc, d, r0, r, rows, shift, nr, pb.data());
                std::vector<double>& sum = sums[w];
                for (std::size_t i = 0; i < r; ++i) {
                    const float* row = xc + (r0 + i) * d;
                    for (std::size_t j = 0; j < d; ++j) sum[j] += static_cast<double>(row[j] - shift[j]);
                }
            },
            interrupt);
        parallel_for(
            blocks.size(), workers,
            [&](std::size_t t, std::size_t w) {
                FloatBuffer& tile = tiles[w];
                if (tile.empty()) tile.resize(mb * nb);
                const std::size_t bi = blocks[t].first, bj = blocks[t].second;
                const std::size_t i0 = bi * mb, j0 = bj * nb;
                const std::size_t ip0 = i0 / mr, ip1 = std::min(a_panels, ip0 + mb / mr);
                const std::size_t jp0 = j0 / nr, jp1 = std::min(b_panels, jp0 + nb / nr);
                for (std::size_t k0 = 0; k0 < rows; k0 += kKc) {
                    const std::size_t kc = std::min(kKc, rows - k0);
                    for (std::size_t jp = jp0; jp < jp1; ++jp) {
                        const float* bp = pb.data() + jp * nr * rows + k0 * nr;
                        // Micro-tiles wholly below the diagonal are never read: skip them.
                        for (std::size_t ip = ip0; ip < ip1 && ip * mr < (jp + 1) * nr; ++ip)
                            kt.gemm_f32(kc, pa.data() + ip * mr * rows + k0 * mr, bp,
                                        tile.data() + (ip - ip0) * mr * nb + (jp - jp0) * nr, nb, k0 > 0);
                    }
                }
                const std::size_t i1 = std::min(d, i0 + mb), j1 = std::min(d, j0 + nb);
                for (std::size_t i = i0; i < i1; ++i) {
                    const float* src = tile.data() + (i - i0) * nb;
                    double* dst = s + i * d;
                    for (std::size_t j = std::max(i, j0); j < j1; ++j) dst[j] += static_cast<double>(src[j - j0]);
                }
            },
            interrupt);
    }
    for (const auto& sum : sums)
        for (std::size_t j = 0; j < d; ++j) col_sum[j] += sum[j];
}

namespace {

constexpr std::size_t kBf16Block = 32;      // AMX block edge: 2 x 2 tiles of 16 x 16
constexpr std::size_t kPairsPerTask = 64;   // bf16 packing: pair rows per task
constexpr std::size_t kAmxChunkRows = 512;  // bf16: rows packed at a time

}  // namespace

void syrk_update_bf16(const float* x, std::size_t n, std::size_t d, const float* shift, double* s, double* col_sum,
                      const InterruptFn& interrupt) {
#ifdef SIMDEX_COMPILED_AMX
    if (n == 0 || d == 0) return;
    constexpr std::size_t B = kBf16Block;
    const std::size_t nb = ceil_div(d, B), dp = nb * B;
    // Short chunks keep both packed operands (4 * chunk * dp bytes) in L2: AMX reads 64 bytes per cycle.
    // The fp32 block sums carry across chunks and go into double every kSyrkChunkRows rows.
    const std::size_t chunk = std::min(ceil_div(n, B) * B, kAmxChunkRows);
    const std::size_t max_pairs = chunk / 2;
    FloatBuffer acc(nb * nb * B * B);  // fp32 sums per block, [block][32][32]
    // Both operands blocked so each tile step reads 2 KB in one contiguous run (strided tile loads from a
    // row-major layout were latency-bound):
    //   b: [column block][pair row p][32 columns] words (VNNI: low half row 2p, high half row 2p + 1);
    //   a: [column block][p / 16][32 columns][16 pairs] words (the same words, transposed per 16-pair step).
    std::vector<std::uint32_t> b(nb * max_pairs * B), a(nb * max_pairs * B);
    std::vector<std::pair<std::size_t, std::size_t>> blocks;
    for (std::size_t bi = 0; bi < nb; ++bi)
        for (std::size_t bj = bi; bj < nb; ++bj) blocks.emplace_back(bi, bj);
    const std::size_t workers = num_threads();
    std::vector<std::vector<double>> sums(workers, std::vector<double>(d, 0.0));
    std::size_t since_flush = 0;

    for (std::size_t c0 = 0; c0 < n; c0 += chunk) {
        const std::size_t rows = std::min(chunk, n - c0);
        const std::size_t pairs = ceil_div(rows, B) * B / 2;  // whole 16-pair tile steps
        const bool fresh = since_flush == 0;
        since_flush += rows;
        const bool flush = since_flush >= kSyrkChunkRows || c0 + rows == n;
        if (flush) since_flush = 0;
        const float* xc = x + c0 * d;
        parallel_for(
            ceil_div(pairs, kPairsPerTask), workers,
            [&](std::size_t t, std::size_t w) {
                double* sum = sums[w].data();
                const std::size_t p0 = t * kPairsPerTask, p1 = std::min(pairs, p0 + kPairsPerTask);
                for (std::size_t p = p0; p < p1; ++p) {
                    // A missing row reads shift itself, so its z is exactly zero.
                    const float* lo = 2 * p < rows ? xc + 2 * p * d : shift;
                    const float* hi = 2 * p + 1 < rows ? xc + (2 * p + 1) * d : shift;
                    kernels::pack_pair_bf16_amx(lo, hi, shift, d, b.data() + p * B, max_pairs * B,
                                                a.data() + (p / 16) * B * 16 + p % 16, max_pairs * B, sum);
                }
            },
            interrupt);
        parallel_for(
            blocks.size(), workers,
            [&](std::size_t t, std::size_t) {
                const std::size_t bi = blocks[t].first, bj = blocks[t].second;
                float* tile = acc.data() + (bi * nb + bj) * B * B;
                kernels::syrk_block_bf16_amx(a.data() + bi * max_pairs * B, b.data() + bj * max_pairs * B, pairs,
                                             tile, B, !fresh);
                if (!flush) return;
                const std::size_t i0 = bi * B, j0 = bj * B;
                const std::size_t i1 = std::min(d, i0 + B), j1 = std::min(d, j0 + B);
                for (std::size_t i = i0; i < i1; ++i) {
                    const float* src = tile + (i - i0) * B;
                    double* dst = s + i * d;
                    for (std::size_t j = std::max(i, j0); j < j1; ++j) dst[j] += static_cast<double>(src[j - j0]);
                }
            },
            interrupt);
    }
    for (const auto& sum : sums)
        for (std::size_t j = 0; j < d; ++j) col_sum[j] += sum[j];
#else
    (void)x, (void)n, (void)d, (void)shift, (void)s, (void)col_sum, (void)interrupt;
    throw std::logic_error("syrk_update_bf16: this build has no AMX kernel");
#endif
}

}  // namespace simdex
