"""Copied into the wheel check's test folder (see .ci/wheel_check): proves what the other tests ran against.

The tests beside this file import simdex from the repaired wheel installed into a fresh venv, with no C/C++
compiler and no CMake on PATH; these checks fail if either stops being true.
"""

import importlib.metadata
import os
import shutil
import sys
import sysconfig

import simdex

BUILD_TOOLS = ("g++", "gcc", "cc", "c++", "clang", "clang++", "cmake", "ninja", "make", "ld")


def test_no_compiler_on_path():
    found = {tool: shutil.which(tool) for tool in BUILD_TOOLS if shutil.which(tool) is not None}
    assert shutil.which("g++") is None
    assert found == {}, f"build tools on PATH: {found}"


def test_simdex_comes_from_the_installed_wheel():
    site = os.path.realpath(sysconfig.get_paths()["platlib"])
    package = os.path.realpath(os.path.dirname(simdex.__file__))
    core = os.path.realpath(simdex._core.__file__)
    assert package == os.path.join(site, "simdex"), (package, site)
    assert core.startswith(package + os.sep), core
    assert sys.prefix != sys.base_prefix, "not running in a venv"
    assert importlib.metadata.version("simdex") == simdex.__version__
    # the source tree's python/ folder must not be importable from here
    assert not any(os.path.isdir(os.path.join(p or ".", "simdex", "text")) and
                   os.path.realpath(p or ".") != site for p in sys.path), sys.path


def test_installed_extension_runs():
    import numpy as np

    info = simdex.simd_info()
    assert info["active"] in info["supported"]
    x = np.eye(4, dtype=np.float32)
    index = simdex.Index(4, "ip")
    index.add(x)
    _, ids = index.search(x, 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]
