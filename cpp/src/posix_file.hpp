// POSIX file helpers shared by the container's reader (blob.cpp) and writer (format.cpp).
#pragma once
#include <string>
#include <system_error>
#include <unistd.h>

namespace simdex {
namespace format {
namespace detail {

[[noreturn]] inline void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace detail
}  // namespace format
}  // namespace simdex
