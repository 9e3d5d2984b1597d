"""SIMDEX_SIMD lowers the level at import; an unknown or unsupported level warns and keeps the best one."""

import json
import subprocess
import sys

import pytest

import simdex

SUPPORTED = simdex.simd_info()["supported"]


def info_with(env_value):
    code = "import json, warnings, simdex; print(json.dumps(simdex.simd_info()))"
    env = {"SIMDEX_SIMD": env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout), out.stderr


@pytest.mark.parametrize("level", SUPPORTED)
def test_env_selects_level(level):
    info, _ = info_with(level)
    assert info["active"] == level


def test_env_unknown_level_warns_and_keeps_best():
    info, err = info_with("sse9")
    assert info["active"] == SUPPORTED[-1]
    assert "not a known level" in info["note"] and "RuntimeWarning" in err
