"""Hostile files and extreme values (docs/reliability.md): crafted counts, ids at the top of int64, damage in a
mapped file, rows of 1e20 and 1e-30, and the structure-aware fuzzer."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import sdxfile
import simdex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
INT64_MAX = 2**63 - 1
pytestmark = pytest.mark.filterwarnings("ignore:this first add calibrates")


# -- 1. a count of 2^64 - 1 ---------------------------------------------------------------------------------------

def crafted_count_file() -> bytes:
    """Two real rows, while the index section claims 2^64 - 1; every checksum is right."""
    vectors = np.eye(2, 4, dtype=np.float32).tobytes()
    return sdxfile.build(sdxfile.index_sections(4, [0, 1], vectors, count=2**64 - 1))


def test_count_of_2_pow_64_minus_1_is_refused_not_a_crash(tmp_path):
    """It used to collide with the reader's 'any count' value and segfault; every load path runs in a child so a
    crash fails the test instead of ending the run."""
    path = tmp_path / "crafted.sdx"
    path.write_bytes(crafted_count_file())
    code = (f"import simdex\nfor how in ('bytes', 'read', 'mmap'):\n"
            f"    try:\n"
            f"        simdex.load_bytes(open({str(path)!r}, 'rb').read()) if how == 'bytes' else "
            f"simdex.load({str(path)!r}, mmap=how == 'mmap')\n"
            f"    except simdex.FormatError as e:\n"
            f"        print(how, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["bytes", "read", "mmap"]
    assert all("18446744073709551615" in line for line in lines)


# -- 2. ids at the top of int64 -----------------------------------------------------------------------------------

def test_automatic_ids_after_the_largest_id_refuse_instead_of_wrapping(tmp_path, rng):
    index = simdex.Index(4)
    index.add(rng.standard_normal((1, 4)).astype(np.float32), ids=[INT64_MAX])
    with pytest.raises(ValueError, match=r"2\*\*63 - 1.*pass ids explicitly"):
        index.add(rng.standard_normal((2, 4)).astype(np.float32))
    assert index.ids().tolist() == [INT64_MAX]  # nothing was added
    index.add(rng.standard_normal((2, 4)).astype(np.float32), ids=[0, 5])  # explicit ids still work
    for mmap in (False, True):
        index.save(tmp_path / "top.sdx")
        back = simdex.load(tmp_path / "top.sdx", mmap=mmap)
        assert sorted(back.ids().tolist()) == [0, 5, INT64_MAX]
        assert back._core.next_id == 2**63


def test_automatic_ids_stop_exactly_at_the_limit(rng):
    index = simdex.Index(2)
    index.add(np.ones((1, 2), np.float32), ids=[INT64_MAX - 2])
    assert index.add(np.ones((2, 2), np.float32)).tolist() == [INT64_MAX - 1, INT64_MAX]
    with pytest.raises(ValueError, match="would pass"):
        index.add(np.ones((1, 2), np.float32))


ID = st.integers(0, INT64_MAX)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(ID, min_size=1, max_size=4, unique=True)),
    st.tuples(st.just("auto"), st.integers(1, 3)),
    st.tuples(st.just("remove"), st.lists(ID, max_size=3)),
    st.tuples(st.just("save"), st.sampled_from(["read", "mmap", "bytes"])),
), max_size=12))
def test_ids_from_the_whole_int64_range_survive_any_sequence(tmp_path, steps):
    """Random add / automatic add / remove / save-load sequences keep the id set identical to a model, and every
    saved file loads."""
    index, model, next_id = simdex.Index(3), set(), 0
    path = tmp_path / "p.sdx"
    for op, arg in steps:
        if op == "add":
            x = np.ones((len(arg), 3), np.float32)
            if any(i in model for i in arg):
                with pytest.raises(ValueError, match="already in the index"):
                    index.add(x, ids=arg)
                continue
            index.add(x, ids=arg)
            model |= set(arg)
            next_id = max(next_id, max(arg) + 1)
        elif op == "auto":
            x = np.ones((arg, 3), np.float32)
            if next_id + arg > 2**63:
                with pytest.raises(ValueError, match="would pass"):
                    index.add(x)
                continue
            assert index.add(x).tolist() == list(range(next_id, next_id + arg))
            model |= set(range(next_id, next_id + arg))
            next_id += arg
        elif op == "remove":
            assert index.remove(arg) == len(model & set(arg))
            model -= set(arg)
        else:
            index.save(path)
            if arg == "bytes":
                index = simdex.load_bytes(path.read_bytes())
            else:
                loaded = simdex.load(path, mmap=arg == "mmap")
                assert set(loaded.ids().tolist()) == model
                index = simdex.load(path)  # writable again for the next steps
        assert set(index.ids().tolist()) == model
        assert index._core.next_id == next_id


# -- 3. damage in a mapped file is reported, never re-signed ------------------------------------------------------

def damaged_copy(tmp_path, rng, dtype="float32", section="vectors.f32"):
    index = simdex.Index(8, dtype=dtype, keep_originals=dtype == "int8")
    index.add(rng.standard_normal((50, 8)).astype(np.float32))
    path = tmp_path / "good.sdx"
    index.save(path)
    raw = bytearray(path.read_bytes())
    offset = sdxfile.parse(bytes(raw)).get(section).offset
    raw[offset + 21] ^= 0x04  # one bit of one value; the stored checksum no longer matches
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("dtype, section", [("float32", "vectors.f32"), ("int8", "vectors.f32"),
                                            ("int8", "int8.codes")])
def test_saving_a_damaged_mapped_index_refuses(tmp_path, rng, dtype, section):
    path = damaged_copy(tmp_path, rng, dtype, section)
    mapped = simdex.load(path, mmap=True)  # opens: the vectors' checksum is left for later
    target = tmp_path / "copy.sdx"
    with pytest.raises(simdex.FormatError, match=rf"{section}' does not match its checksum.*nothing was written"):
        mapped.save(target)
    assert sorted(os.listdir(tmp_path)) == ["good.sdx"]  # no copy, no temp file
    with pytest.raises(simdex.FormatError, match="checksum"):
        simdex.load(path)


def test_saving_an_intact_mapped_index_still_works(tmp_path, rng):
    index = simdex.Index(8)
    index.add(rng.standard_normal((50, 8)).astype(np.float32))
    index.save(tmp_path / "a.sdx")
    simdex.load(tmp_path / "a.sdx", mmap=True).save(tmp_path / "b.sdx")
    assert (tmp_path / "a.sdx").read_bytes() == (tmp_path / "b.sdx").read_bytes()


def test_a_mapped_file_with_valid_checksums_but_nan_is_not_copied(tmp_path):
    vectors = np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32).tobytes()
    path = tmp_path / "nan.sdx"
    path.write_bytes(sdxfile.build(sdxfile.index_sections(4, [0, 1], vectors)))
    mapped = simdex.load(path, mmap=True)
    with pytest.raises(simdex.FormatError, match="NaN or Inf.*nothing was written"):
        mapped.save(tmp_path / "copy.sdx")


# -- 5. extreme finite values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1e20, 3e38, -3e38, 1e-30, 1e-45])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_every_finite_nonzero_row_is_stored_as_its_unit_vector(value, dtype):
    index = simdex.Index(4, dtype=dtype, keep_originals=dtype == "int8")
    x = np.full((2, 4), value, np.float32)
    x[1, :2] = 0
    with np.errstate(all="ignore"):
        want = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    index.add(x)
    got = index.reconstruct([0, 1])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    scores, ids = index.search(x, 1, **({"rescore": 2} if dtype == "int8" else {}))
    assert ids[:, 0].tolist() == [0, 1]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-6)


def test_ip_refuses_vectors_and_queries_whose_scores_could_overflow():
    index = simdex.Index(4, metric="ip")
    with pytest.raises(ValueError, match=r"norm above 2\*\*63"):
        index.add(np.full((1, 4), 1e20, np.float32))
    assert len(index) == 0
    index.add(np.full((1, 4), 2.0**61, np.float32))  # norm 2^62: allowed
    scores, _ = index.search(np.full((1, 4), 2.0**61, np.float32), 1)
    assert scores[0, 0] == pytest.approx(4 * 2.0**122)  # finite, exact
    with pytest.raises(ValueError, match="queries: row 0"):
        index.search(np.full((1, 4), 3e38, np.float32), 1)


def test_ip_limit_holds_in_files_too():
    vectors = np.full((1, 4), 1e20, np.float32).tobytes()
    data = sdxfile.build(sdxfile.index_sections(4, [0], vectors, metric=1))
    with pytest.raises(simdex.FormatError, match="ip limit"):
        simdex.load_bytes(data)


def test_cosine_rows_in_a_file_must_be_unit_or_zero():
    vectors = np.array([[3e38, 0, 0, 0]], np.float32).tobytes()
    with pytest.raises(simdex.FormatError, match="unit-norm"):
        simdex.load_bytes(sdxfile.build(sdxfile.index_sections(4, [0], vectors, normalize=False)))


def test_a_damaged_mapped_cosine_row_gives_an_error_not_inf(tmp_path):
    vectors = np.array([[3e38, 3e38, 0, 0], [0, 0, 1, 0]], np.float32).tobytes()
    path = tmp_path / "big.sdx"
    path.write_bytes(sdxfile.build(sdxfile.index_sections(4, [0, 1], vectors, normalize=False)))
    mapped = simdex.load(path, mmap=True)  # rows are not read at open
    with pytest.raises(OverflowError, match="overflows float32"):
        mapped.search(np.array([[1, 1, 0, 0]], np.float32), 2)


def test_int8_calibration_past_any_trained_range_is_refused(rng):
    index = simdex.Index(4, dtype="int8")
    index.add(rng.standard_normal((64, 4)).astype(np.float32))
    f = sdxfile.parse(index._core.to_bytes())
    step = f.get("int8.step")
    step.data = struct.pack("<4f", 0.01, 0.01, 3.4e38, 0.01)
    with pytest.raises(simdex.FormatError, match="decodes past 2"):
        simdex.load_bytes(sdxfile.build(f.sections))


# -- the structure-aware fuzzer -----------------------------------------------------------------------------------

def test_structured_fuzz_never_crashes_and_what_loads_is_right(tmp_path):
    """Every header, table and index-section field set to boundary values, checksums recomputed: each file is
    refused with FormatError or loads into an index that matches a brute force; mapped saves never launder."""
    n = int(os.environ.get("SIMDEX_STRUCTURED_FUZZ", "50000"))
    out = subprocess.run([sys.executable, "-W", "ignore", os.path.join(HERE, "structured_fuzz.py"), str(n), "3"],
                         capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    last = out.stderr.strip().splitlines()[-20:]
    assert out.returncode == 0, f"fuzz process failed ({out.returncode}):\n" + "\n".join(last)
    stats = json.loads(out.stdout)
    assert stats["tried"] == n
    assert stats["refused"] + stats["loaded"] == n
    assert stats["loaded"] > 0.05 * n and stats["refused"] > 0.5 * n  # both outcomes are exercised
    assert stats["mapped_saved"] > 0 and stats["mapped_save_refused"] > 0


def test_sharded_automatic_ids_refuse_at_the_top_of_int64(tmp_path):
    sharded = simdex.ShardedIndex([simdex.Index(2), simdex.Index(2)])
    sharded.add(np.ones((1, 2), np.float32), ids=[INT64_MAX])
    with pytest.raises(ValueError, match="would pass"):
        sharded.add(np.ones((1, 2), np.float32))
    assert len(sharded) == 1


def test_int8_file_with_a_dim_the_kernels_cannot_take_is_a_format_error():
    """Found by libFuzzer: the constructor's ValueError escaped load as a plain ValueError."""
    dim = 133145  # one past kMaxI8Depth: int32 sums of 127 * 127 products would no longer be exact
    head = sdxfile.INDEX_HEADER.pack(dim, 0, 0, 0, 1, bytes(32))
    sections = [sdxfile.Section("index", sdxfile.BYTES, 64, 1, head, sdxfile.REQUIRED),
                sdxfile.Section("ids", sdxfile.I64, 0, 1, b"", sdxfile.REQUIRED),
                sdxfile.Section("int8.codes", sdxfile.I8, 0, dim, b"", sdxfile.REQUIRED)]
    with pytest.raises(simdex.FormatError, match="largest an int8 index takes"):
        simdex.load_bytes(sdxfile.build(sections))
