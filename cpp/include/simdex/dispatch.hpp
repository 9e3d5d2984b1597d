// Run-time kernel selection: one table per ISA, the active one chosen once (CPUID + XGETBV on x86),
// optionally lowered by SIMDEX_SIMD, then read-only unless a test or benchmark calls set_active_isa.
#pragma once
#include <string>
#include <vector>

#include "simdex/kernels.hpp"

namespace simdex {

struct KernelTable {
    Isa isa;
    const char* name;
    kernels::DotF32Fn dot_f32;
    kernels::DotRowsF32Fn dot_rows_f32;
    kernels::GemmF32Fn gemm_f32;
    std::size_t gemm_mr;
    std::size_t gemm_nr;
    kernels::SelectGeF32Fn select_ge_f32;
    kernels::PackF32Fn pack_nr_f32;
    // int8
    const char* i8_name;  // which int8 kernels this level runs (e.g. "avx2" for the avx512 level)
    kernels::DotI8Fn dot_i8;
    kernels::DotRowsI8Fn dot_rows_i8;
    kernels::GemmI8Fn gemm_i8;
    std::size_t gemm_i8_mr;
    std::size_t gemm_i8_nr;
    bool gemm_i8_flip;  // database panels packed as x ^ 0x80 (vpdpbusd), with the bias subtracted in the kernel
    // binary (1-bit codes)
    const char* b1_name;  // which binary kernels this level runs (e.g. "avx512+vpopcntdq")
    kernels::HammingB1Fn hamming_b1;
    kernels::HammingRowsB1Fn hamming_rows_b1;
    kernels::DotB1Fn dot_b1;
    kernels::SumsRowsB1Fn sums_rows_b1;
    kernels::HammingSelectB1Fn hamming_select_b1;
    bool hamming_prefilter = false;  // batches rank binary rows by Hamming first (fast popcount: VPOPCNTDQ)
    bool i8_dot = false;  // the int8 kernels run on a dot-product instruction (VNNI, dotprod): k-means goes int8 first
};

const char* isa_name(Isa isa) noexcept;
Isa parse_isa(const std::string& name);  // std::invalid_argument on an unknown name

std::vector<Isa> compiled_isas();   // built into this binary
std::vector<Isa> supported_isas();  // compiled and runnable on this CPU (and OS), best last
bool is_supported(Isa isa);

const KernelTable& active_kernels();         // the table searches use
const KernelTable& kernels_for(Isa isa);     // std::invalid_argument if not supported here
void set_active_isa(Isa isa);                // std::invalid_argument if not supported here
std::string dispatch_note();

// True when kernels::syrk_block_bf16_amx can run: compiled in, the CPU has AMX-TILE and AMX-BF16, the OS keeps tile
// state (XCR0 bits 17-18) and granted this process the tile data permission (Linux arch_prctl), and the active
// level is avx512 (a lowered SIMD level turns it off too).
bool amx_bf16_usable();                 // why the active level differs from the best one, or ""

}  // namespace simdex
