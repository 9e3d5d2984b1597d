#include "simdex/dispatch.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define SIMDEX_X86 1
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__linux__) && (defined(__aarch64__) || defined(_M_ARM64))
#include <asm/hwcap.h>
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#if defined(__linux__) && defined(SIMDEX_X86)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace simdex {
namespace {

using namespace kernels;

// Every table names its fields. A level that shares one family of kernels with another level starts from that
// level's table and replaces the rest (the *_vnni / *_dotprod levels add int8 instructions to their base level).
// complete() checks at compile time that no field was left out (it would read as null or 0).
constexpr bool complete(const KernelTable& t) {
    return t.name && t.dot_f32 && t.dot_rows_f32 && t.gemm_f32 && t.gemm_mr && t.gemm_nr && t.select_ge_f32 &&
           t.pack_nr_f32 && t.i8_name && t.dot_i8 && t.dot_rows_i8 && t.gemm_i8 && t.gemm_i8_mr && t.gemm_i8_nr &&
           t.b1_name && t.hamming_b1 && t.hamming_rows_b1 && t.dot_b1 && t.sums_rows_b1 && t.hamming_select_b1;
}
// Under AddressSanitizer GCC does not treat a function's address as a constant, so there the check runs when the
// library loads (a table left incomplete aborts at once rather than crashing at its first call).
#if defined(__SANITIZE_ADDRESS__)
#define SIMDEX_CHECK_COMPLETE(t)                              \
    [[maybe_unused]] const bool t##_complete =                \
        complete(t) || (std::fputs(#t " is incomplete\n", stderr), std::abort(), false)
#else
#define SIMDEX_CHECK_COMPLETE(t) static_assert(complete(t))
#endif

constexpr KernelTable kScalarTable = [] {
    KernelTable t{};
    t.isa = Isa::scalar;
    t.name = "scalar";
    t.dot_f32 = dot_f32_scalar;
    t.dot_rows_f32 = dot_rows_f32_scalar;
    t.gemm_f32 = gemm_f32_scalar;
    t.gemm_mr = kScalarMr;
    t.gemm_nr = kScalarNr;
    t.select_ge_f32 = select_ge_f32_scalar;
    t.pack_nr_f32 = pack_nr_f32_scalar;
    t.i8_name = "scalar";
    t.dot_i8 = dot_i8_scalar;
    t.dot_rows_i8 = dot_rows_i8_scalar;
    t.gemm_i8 = gemm_i8_scalar;
    t.gemm_i8_mr = kScalarI8Mr;
    t.gemm_i8_nr = kScalarI8Nr;
    t.gemm_i8_flip = false;
    t.b1_name = "scalar";
    t.hamming_b1 = hamming_b1_scalar;
    t.hamming_rows_b1 = hamming_rows_b1_scalar;
    t.dot_b1 = dot_b1_scalar;
    t.sums_rows_b1 = sums_rows_b1_scalar;
    t.hamming_select_b1 = hamming_select_b1_scalar;  // the batch prefilter runs where popcount is fast only
    return t;
}();
SIMDEX_CHECK_COMPLETE(kScalarTable);
#ifdef SIMDEX_COMPILED_AVX2
constexpr KernelTable kAvx2Table = [] {
    KernelTable t{};
    t.isa = Isa::avx2;
    t.name = "avx2";
    t.dot_f32 = dot_f32_avx2;
    t.dot_rows_f32 = dot_rows_f32_avx2;
    t.gemm_f32 = gemm_f32_avx2;
    t.gemm_mr = kAvx2Mr;
    t.gemm_nr = kAvx2Nr;
    t.select_ge_f32 = select_ge_f32_avx2;
    t.pack_nr_f32 = pack_nr_f32_avx2;
    t.i8_name = "avx2";
    t.dot_i8 = dot_i8_avx2;
    t.dot_rows_i8 = dot_rows_i8_avx2;
    t.gemm_i8 = gemm_i8_avx2;
    t.gemm_i8_mr = kAvx2I8Mr;
    t.gemm_i8_nr = kAvx2I8Nr;
    t.gemm_i8_flip = false;
    t.b1_name = "avx2";
    t.hamming_b1 = hamming_b1_avx2;
    t.hamming_rows_b1 = hamming_rows_b1_avx2;
    t.dot_b1 = dot_b1_avx2;
    t.sums_rows_b1 = sums_rows_b1_avx2;
    t.hamming_select_b1 = hamming_select_b1_scalar;  // the batch prefilter runs where popcount is fast only
    return t;
}();
SIMDEX_CHECK_COMPLETE(kAvx2Table);
#endif
#ifdef SIMDEX_COMPILED_AVX_VNNI
constexpr KernelTable kAvxVnniTable = [] {
    KernelTable t = kAvx2Table;  // float kernels: AVX2
    t.isa = Isa::avx_vnni;
    t.name = "avx_vnni";
    t.i8_name = "avx_vnni";
    t.i8_dot = true;
    t.dot_i8 = dot_i8_avx_vnni;
    t.dot_rows_i8 = dot_rows_i8_avx_vnni;
    t.gemm_i8 = gemm_i8_avx_vnni;
    t.gemm_i8_mr = kAvxVnniI8Mr;
    t.gemm_i8_nr = kAvxVnniI8Nr;
    t.gemm_i8_flip = true;
    return t;
}();
SIMDEX_CHECK_COMPLETE(kAvxVnniTable);
#endif
#ifdef SIMDEX_COMPILED_AVX512
#ifndef SIMDEX_COMPILED_AVX2
#error "the avx512 level runs the AVX2 int8 kernels: SIMDEX_COMPILED_AVX512 needs SIMDEX_COMPILED_AVX2"
#endif
// AVX-512 without VNNI (Skylake-SP): float kernels at 512 bits, int8 through the AVX2 sign trick.
constexpr KernelTable kAvx512Table = [] {
    KernelTable t = kAvx2Table;  // int8 kernels: AVX2
    t.isa = Isa::avx512;
    t.name = "avx512";
    t.dot_f32 = dot_f32_avx512;
    t.dot_rows_f32 = dot_rows_f32_avx512;
    t.gemm_f32 = gemm_f32_avx512;
    t.gemm_mr = kAvx512Mr;
    t.gemm_nr = kAvx512Nr;
    t.select_ge_f32 = select_ge_f32_avx512;
    t.pack_nr_f32 = pack_nr_f32_avx512;
    t.b1_name = "avx512 (hamming: avx2)";  // VPOPCNTDQ is not part of the level: kAvx512PopcntTable adds it
    t.dot_b1 = dot_b1_avx512;
    t.sums_rows_b1 = sums_rows_b1_avx512;
    return t;
}();
SIMDEX_CHECK_COMPLETE(kAvx512Table);
#endif
#ifdef SIMDEX_COMPILED_AVX512_VNNI
constexpr KernelTable kAvx512VnniTable = [] {
    KernelTable t = kAvx512Table;  // float kernels: AVX-512
    t.isa = Isa::avx512_vnni;
    t.name = "avx512_vnni";
    t.i8_name = "avx512_vnni";
    t.i8_dot = true;
    t.dot_i8 = dot_i8_avx512_vnni;
    t.dot_rows_i8 = dot_rows_i8_avx512_vnni;
    t.gemm_i8 = gemm_i8_avx512_vnni;
    t.gemm_i8_mr = kAvx512VnniI8Mr;
    t.gemm_i8_nr = kAvx512VnniI8Nr;
    t.gemm_i8_flip = true;
    return t;
}();
SIMDEX_CHECK_COMPLETE(kAvx512VnniTable);
#endif
#ifdef SIMDEX_COMPILED_AVX512_VPOPCNTDQ
// The avx512 levels on CPUs with AVX512_VPOPCNTDQ (Ice Lake, Zen 4 and later): the same tables with the VPOPCNTDQ
// Hamming kernels. table_of picks them when CPUID reports the feature.
constexpr KernelTable with_vpopcntdq(KernelTable t) {
    t.b1_name = "avx512+vpopcntdq";
    t.hamming_b1 = hamming_b1_avx512_vpopcntdq;
    t.hamming_rows_b1 = hamming_rows_b1_avx512_vpopcntdq;
    t.hamming_select_b1 = hamming_select_b1_avx512_vpopcntdq;
    t.hamming_prefilter = true;
    return t;
}
constexpr KernelTable kAvx512PopcntTable = with_vpopcntdq(kAvx512Table);
SIMDEX_CHECK_COMPLETE(kAvx512PopcntTable);
#ifdef SIMDEX_COMPILED_AVX512_VNNI
constexpr KernelTable kAvx512VnniPopcntTable = with_vpopcntdq(kAvx512VnniTable);
SIMDEX_CHECK_COMPLETE(kAvx512VnniPopcntTable);
#endif
#endif
#ifdef SIMDEX_COMPILED_NEON
constexpr KernelTable kNeonTable = [] {
    KernelTable t{};
    t.isa = Isa::neon;
    t.name = "neon";
    t.dot_f32 = dot_f32_neon;
    t.dot_rows_f32 = dot_rows_f32_neon;
    t.gemm_f32 = gemm_f32_neon;
    t.gemm_mr = kNeonMr;
    t.gemm_nr = kNeonNr;
    t.select_ge_f32 = select_ge_f32_neon;
    t.pack_nr_f32 = pack_nr_f32_neon;
    t.i8_name = "neon";
    t.dot_i8 = dot_i8_neon;
    t.dot_rows_i8 = dot_rows_i8_neon;
    t.gemm_i8 = gemm_i8_neon;
    t.gemm_i8_mr = kScalarI8Mr;  // gemm_i8_neon is the scalar micro-kernel
    t.gemm_i8_nr = kScalarI8Nr;
    t.gemm_i8_flip = false;
    t.b1_name = "neon";
    t.hamming_b1 = hamming_b1_neon;
    t.hamming_rows_b1 = hamming_rows_b1_neon;
    t.dot_b1 = dot_b1_neon;
    t.sums_rows_b1 = sums_rows_b1_neon;
    t.hamming_select_b1 = hamming_select_b1_scalar;  // the batch prefilter runs where popcount is fast only
    return t;
}();
SIMDEX_CHECK_COMPLETE(kNeonTable);
#endif
#ifdef SIMDEX_COMPILED_NEON_DOTPROD
constexpr KernelTable kNeonDotprodTable = [] {
    KernelTable t = kNeonTable;  // float kernels: NEON
    t.isa = Isa::neon_dotprod;
    t.name = "neon_dotprod";
    t.i8_name = "neon_dotprod";
    t.i8_dot = true;
    t.dot_i8 = dot_i8_neon_dotprod;
    t.dot_rows_i8 = dot_rows_i8_neon_dotprod;
    t.gemm_i8 = gemm_i8_neon_dotprod;
    t.gemm_i8_mr = kNeonDotI8Mr;
    t.gemm_i8_nr = kNeonDotI8Nr;
    t.gemm_i8_flip = false;
    return t;
}();
SIMDEX_CHECK_COMPLETE(kNeonDotprodTable);
#endif

// From the lowest level to the best one; supported_isas() keeps this order.
constexpr Isa kAllIsas[] = {Isa::scalar,      Isa::avx2, Isa::avx_vnni,    Isa::avx512,
                            Isa::avx512_vnni, Isa::neon, Isa::neon_dotprod};

#if defined(SIMDEX_X86) && defined(SIMDEX_COMPILED_AVX512_VPOPCNTDQ)
bool cpu_vpopcntdq() {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 14));  // CPUID.(7,0):ECX bit 14
}
#endif

const KernelTable* table_of(Isa isa) {
#if defined(SIMDEX_X86) && defined(SIMDEX_COMPILED_AVX512_VPOPCNTDQ)
    static const bool popcnt = cpu_vpopcntdq();
    if (popcnt && isa == Isa::avx512) return &kAvx512PopcntTable;
#ifdef SIMDEX_COMPILED_AVX512_VNNI
    if (popcnt && isa == Isa::avx512_vnni) return &kAvx512VnniPopcntTable;
#endif
#endif
    switch (isa) {
        case Isa::scalar: return &kScalarTable;
#ifdef SIMDEX_COMPILED_AVX2
        case Isa::avx2: return &kAvx2Table;
#endif
#ifdef SIMDEX_COMPILED_AVX512
        case Isa::avx512: return &kAvx512Table;
#endif
#ifdef SIMDEX_COMPILED_NEON
        case Isa::neon: return &kNeonTable;
#endif
#ifdef SIMDEX_COMPILED_AVX_VNNI
        case Isa::avx_vnni: return &kAvxVnniTable;
#endif
#ifdef SIMDEX_COMPILED_AVX512_VNNI
        case Isa::avx512_vnni: return &kAvx512VnniTable;
#endif
#ifdef SIMDEX_COMPILED_NEON_DOTPROD
        case Isa::neon_dotprod: return &kNeonDotprodTable;
#endif
        default: return nullptr;
    }
}

#ifdef SIMDEX_X86
unsigned long long xgetbv0() {
    unsigned eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

struct X86Features {
    bool avx2 = false, avx512 = false, avx_vnni = false, avx512_vnni = false;
};

X86Features detect_x86() {
    X86Features f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!(osxsave && avx)) return f;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;   // XMM and YMM state enabled by the OS
    bool zmm_os = (xcr0 & 0xE6) == 0xE6;       // plus opmask, ZMM_Hi256, Hi16_ZMM
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    f.avx2 = ymm_os && fma && (b & (1u << 5));
    const bool avx512_bits = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));
#if defined(__APPLE__)
    // macOS enables AVX-512 state lazily, so XCR0 can read "off" before the first use; ask the kernel instead.
    int on = 0;
    size_t len = sizeof(on);
    if (sysctlbyname("hw.optional.avx512f", &on, &len, nullptr, 0) == 0) zmm_os = on != 0 && ymm_os;
#endif
    f.avx512 = f.avx2 && zmm_os && avx512_bits;
    f.avx512_vnni = f.avx512 && (c & (1u << 11));  // CPUID.(7,0):ECX bit 11 AVX512_VNNI
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    if (a >= 1 && __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1))
        f.avx_vnni = f.avx2 && (a1 & (1u << 4));  // CPUID.(7,1):EAX bit 4 AVX-VNNI
    return f;
}
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
bool arm_dotprod() {
#if defined(__APPLE__)
    int on = 0;
    size_t len = sizeof(on);
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &on, &len, nullptr, 0) == 0 && on != 0;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;
#endif
}
#endif

#if defined(SIMDEX_X86) && defined(SIMDEX_COMPILED_AMX) && defined(__linux__)
bool detect_amx_bf16() {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
    if (!amx_bf16 || !amx_tile) return false;
    if ((xgetbv0() & (3ull << 17)) != (3ull << 17)) return false;  // XTILECFG and XTILEDATA state
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}
#endif

bool cpu_supports(Isa isa) {
    switch (isa) {
        case Isa::scalar: return true;
#ifdef SIMDEX_X86
        case Isa::avx2: { static const X86Features f = detect_x86(); return f.avx2; }
        case Isa::avx512: { static const X86Features f = detect_x86(); return f.avx512; }
        case Isa::avx_vnni: { static const X86Features f = detect_x86(); return f.avx_vnni; }
        case Isa::avx512_vnni: { static const X86Features f = detect_x86(); return f.avx512_vnni; }
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
        case Isa::neon: return true;  // Advanced SIMD is part of the AArch64 baseline
        case Isa::neon_dotprod: { static const bool ok = arm_dotprod(); return ok; }
#endif
        default: return false;
    }
}

std::string g_note;

const KernelTable* initial_table() {
    const std::vector<Isa> ok = supported_isas();
    Isa best = ok.back();
    const char* env = std::getenv("SIMDEX_SIMD");
    if (env && *env) {
        try {
            const Isa want = parse_isa(env);
            if (is_supported(want)) {
                best = want;
                g_note = std::string("SIMDEX_SIMD=") + env + " selected it";
            } else {
                g_note = std::string("SIMDEX_SIMD=") + env + " is not supported here; using " + isa_name(best);
            }
        } catch (const std::invalid_argument&) {
            g_note = std::string("SIMDEX_SIMD=") + env + " is not a known level; using " + isa_name(best);
        }
    }
    return table_of(best);
}

std::atomic<const KernelTable*>& active_slot() {
    static std::atomic<const KernelTable*> slot{initial_table()};
    return slot;
}

}  // namespace

const char* isa_name(Isa isa) noexcept {
    switch (isa) {
        case Isa::scalar: return "scalar";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
        case Isa::neon: return "neon";
        case Isa::avx_vnni: return "avx_vnni";
        case Isa::avx512_vnni: return "avx512_vnni";
        case Isa::neon_dotprod: return "neon_dotprod";
    }
    return "unknown";
}

Isa parse_isa(const std::string& name) {
    for (Isa isa : kAllIsas)
        if (name == isa_name(isa)) return isa;
    throw std::invalid_argument("unknown SIMD level '" + name +
                                "': expected one of scalar, avx2, avx_vnni, avx512, avx512_vnni, neon, neon_dotprod");
}

std::vector<Isa> compiled_isas() {
    std::vector<Isa> out;
    for (Isa isa : kAllIsas)
        if (table_of(isa)) out.push_back(isa);
    return out;
}

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (Isa isa : compiled_isas())
        if (cpu_supports(isa)) out.push_back(isa);
    return out;
}

bool is_supported(Isa isa) { return table_of(isa) && cpu_supports(isa); }

const KernelTable& kernels_for(Isa isa) {
    if (!is_supported(isa))
        throw std::invalid_argument(std::string("SIMD level '") + isa_name(isa) +
                                    "' is not available on this machine or in this build");
    return *table_of(isa);
}

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

void set_active_isa(Isa isa) { active_slot().store(&kernels_for(isa), std::memory_order_release); }

bool amx_bf16_usable() {
#if defined(SIMDEX_X86) && defined(SIMDEX_COMPILED_AMX) && defined(__linux__)
    static const bool ok = cpu_supports(Isa::avx512) && detect_amx_bf16();
    return ok && active_kernels().isa == Isa::avx512;
#else
    return false;
#endif
}

std::string dispatch_note() {
    active_slot();  // make sure the environment has been read
    return g_note;
}

}  // namespace simdex
