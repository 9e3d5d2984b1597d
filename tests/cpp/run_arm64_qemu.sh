#!/bin/sh
# Cross-compiles the int8 kernel checks for AArch64 and runs them under qemu-user, with and without the
# dot-product extension (needs g++-aarch64-linux-gnu and qemu-user). Usage: tests/cpp/run_arm64_qemu.sh
set -eu
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
cxx="aarch64-linux-gnu-g++ -std=c++17 -O2 -Wall -Wextra -Icpp/include"
$cxx -c cpp/src/kernels_scalar.cpp -o "$out/scalar.o"
$cxx -DSIMDEX_COMPILED_NEON=1 -DSIMDEX_COMPILED_NEON_DOTPROD=1 -c cpp/src/dispatch.cpp -o "$out/dispatch.o"
$cxx -c cpp/src/simd/kernels_neon.cpp -o "$out/neon.o"
$cxx -c cpp/src/simd/kernels_i8_neon.cpp -o "$out/i8_neon.o"
$cxx -march=armv8.2-a+dotprod -c cpp/src/simd/kernels_i8_neon_dotprod.cpp -o "$out/i8_neon_dotprod.o"
$cxx tests/cpp/test_i8_kernels.cpp "$out"/*.o -static -o "$out/test_i8_kernels"
qemu-aarch64 -cpu max "$out/test_i8_kernels"         # neon + neon_dotprod
qemu-aarch64 -cpu cortex-a57 "$out/test_i8_kernels"  # no FEAT_DotProd: neon only
rm -rf "$out"
