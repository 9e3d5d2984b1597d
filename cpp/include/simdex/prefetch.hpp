// Software prefetch: asks for memory a loop will read soon, where the hardware cannot guess the address (the id
// map's entries and keys). A hint only; a no-op where the compiler offers none.
#pragma once
namespace simdex {

inline void prefetch_line(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

}  // namespace simdex
