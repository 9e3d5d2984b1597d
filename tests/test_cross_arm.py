"""The NEON kernels against the scalar reference on an x86 host: cross-compile the stand-alone kernel check
for aarch64 and run it under qemu. Skipped when the cross compiler or qemu is not installed
(Debian: g++-aarch64-linux-gnu qemu-user-static)."""

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


@pytest.mark.skipif(not (CXX and QEMU), reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (Debian packages)")
@pytest.mark.parametrize("cpu", ["max", "cortex-a57"])  # with FEAT_DotProd, and without (plain NEON only)
def test_neon_kernels_match_scalar_under_qemu(tmp_path, cpu):
    if not os.path.exists(os.path.join(ROOT, "cpp", "tests", "kernel_check.cpp")):
        pytest.skip("source tree not available (installed package only)")
    objs = []
    common = ["-std=c++17", "-O2", "-DSIMDEX_COMPILED_NEON=1", "-DSIMDEX_COMPILED_NEON_DOTPROD=1",
              "-I", os.path.join(ROOT, "cpp", "include")]
    sources = [os.path.join(ROOT, "cpp", "tests", "kernel_check.cpp"), os.path.join(ROOT, "cpp", "src", "dispatch.cpp"),
               os.path.join(ROOT, "cpp", "src", "kernels_scalar.cpp")]
    sources += sorted(glob.glob(os.path.join(ROOT, "cpp", "src", "simd", "*neon*.cpp")))
    for src in sources:
        obj = tmp_path / (os.path.basename(src) + ".o")
        flags = ["-march=armv8.2-a+dotprod"] if "dotprod" in src else []
        subprocess.run([CXX, *common, *flags, "-c", src, "-o", str(obj)], check=True, capture_output=True)
        objs.append(str(obj))
    exe = tmp_path / "kernel_check"
    subprocess.run([CXX, "-static", *objs, "-o", str(exe), "-lpthread"], check=True, capture_output=True)
    run = subprocess.run([QEMU, "-cpu", cpu, str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "neon: checked" in run.stdout and "0 failures" in run.stdout
    assert ("neon_dotprod: checked" in run.stdout) == (cpu == "max")  # dispatch reads HWCAP_ASIMDDP
