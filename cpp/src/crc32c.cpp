// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of every section of an index
// file. Portable path: slicing-by-8 tables built at compile time (~1-2 GB/s). x86 with SSE4.2: the crc32
// instruction in simd/crc32c_sse42.cpp (~8 GB/s), chosen once at run time.
#include <cstring>

#include "simdex/format.hpp"

namespace simdex {
namespace kernels {
std::uint32_t crc32c_sse42(const void* data, std::size_t n, std::uint32_t crc) noexcept;
}

namespace format {
namespace {

struct CrcTables {
    std::uint32_t t[8][256];
    constexpr CrcTables() : t{} {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int b = 0; b < 8; ++b) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            t[0][i] = c;
        }
        for (std::uint32_t i = 0; i < 256; ++i)
            for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
};
constexpr CrcTables kCrc;

using CrcFn = std::uint32_t (*)(const void*, std::size_t, std::uint32_t) noexcept;

CrcFn pick_crc() noexcept {
#if defined(SIMDEX_COMPILED_SSE42) && (defined(__x86_64__) || defined(_M_X64))
    if (__builtin_cpu_supports("sse4.2")) return kernels::crc32c_sse42;
#endif
    return crc32c_portable;
}

}  // namespace

std::uint32_t crc32c_portable(const void* data, std::size_t n, std::uint32_t crc) noexcept {
    const auto* p = static_cast<const std::uint8_t*>(data);
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);  // little-endian host (format.hpp)
        w ^= crc;
        crc = kCrc.t[7][w & 0xFF] ^ kCrc.t[6][(w >> 8) & 0xFF] ^ kCrc.t[5][(w >> 16) & 0xFF] ^
              kCrc.t[4][(w >> 24) & 0xFF] ^ kCrc.t[3][(w >> 32) & 0xFF] ^ kCrc.t[2][(w >> 40) & 0xFF] ^
              kCrc.t[1][(w >> 48) & 0xFF] ^ kCrc.t[0][w >> 56];
    }
    for (; n > 0; --n, ++p) crc = kCrc.t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) noexcept {
    static const CrcFn fn = pick_crc();
    return fn(data, n, crc);
}

bool crc32c_hardware() noexcept { return pick_crc() != crc32c_portable; }

}  // namespace format
}  // namespace simdex
