// CRC32C with the SSE4.2 crc32 instruction. Flags: -msse4.2 (this file only; called after a CPUID check).
// One 8-byte crc32 per step on a single dependency chain (3-cycle latency: ~2.7 bytes/cycle); byte steps for
// the unaligned head and the tail. Same reflected convention as crc32c_portable, so the results are identical.
#include <nmmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace simdex {
namespace kernels {

std::uint32_t crc32c_sse42(const void* data, std::size_t n, std::uint32_t crc) noexcept {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::uint64_t c = ~crc;
    for (; n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7) != 0; --n, ++p)
        c = _mm_crc32_u8(static_cast<std::uint32_t>(c), *p);
    for (; n >= 32; n -= 32, p += 32) {
        std::uint64_t w[4];
        std::memcpy(w, p, 32);
        c = _mm_crc32_u64(c, w[0]);
        c = _mm_crc32_u64(c, w[1]);
        c = _mm_crc32_u64(c, w[2]);
        c = _mm_crc32_u64(c, w[3]);
    }
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    for (; n > 0; --n, ++p) c = _mm_crc32_u8(static_cast<std::uint32_t>(c), *p);
    return ~static_cast<std::uint32_t>(c);
}

}  // namespace kernels
}  // namespace simdex
