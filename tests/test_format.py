"""The index file format (docs/format.md): round trips, layout, and every kind of file load must refuse."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sdxfile
import simdex
from sdxfile import BYTES, F32, F64, I64, REQUIRED, Section, build, index_sections, parse
from simdex import _core


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


def make_index(rng, n=300, dim=17, metric="cosine", remove=True, metadata=None):
    index = simdex.Index(dim, metric=metric)
    index.add(rng.standard_normal((n, dim)).astype(np.float32))
    if remove:
        index.remove(np.arange(0, n, 7))  # leaves holes, moves rows, so ids are not 0..n-1 in order
    index.metadata = metadata if metadata is not None else {"fingerprint": {"model": "tiny", "dim": dim}, "note": "é✓"}
    return index


def assert_same(a: simdex.Index, b: simdex.Index) -> None:
    assert (a.dim, a.metric, len(a), a._core.next_id, a.metadata) == (b.dim, b.metric, len(b), b._core.next_id,
                                                                        b.metadata)
    np.testing.assert_array_equal(a.ids(), b.ids())
    if len(a):
        ids = a.ids()
        np.testing.assert_array_equal(a.reconstruct(ids).view(np.uint32), b.reconstruct(ids).view(np.uint32))


def load_via(path, how):
    if how == "file":
        return simdex.load(path)
    if how == "mmap":
        return simdex.load(path, mmap=True)
    with open(path, "rb") as f:
        return simdex.load_bytes(f.read())


# -- CRC32C ---------------------------------------------------------------------------------------------------


def test_crc32c_check_value():
    assert _core.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert _core.crc32c(b"123456789", portable=True) == 0xE3069283
    assert _core.crc32c(b"") == 0


def test_crc32c_paths_agree_and_chain(rng):
    buf = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    for start in range(9):
        for n in (0, 1, 7, 8, 9, 31, 32, 33, 100, 4096 - start):
            piece = buf[start:start + n]
            assert _core.crc32c(piece) == _core.crc32c(piece, portable=True)
    assert _core.crc32c(buf[1000:], _core.crc32c(buf[:1000])) == _core.crc32c(buf)


# -- round trips and layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("how", ["file", "mmap", "bytes"])
def test_round_trip(tmp_path, rng, metric, how):
    index = make_index(rng, metric=metric)
    path = tmp_path / "a.sdx"
    index.save(path)
    loaded = load_via(path, how)
    assert_same(index, loaded)
    q = rng.standard_normal((5, index.dim)).astype(np.float32)
    for got, want in zip(loaded.search(q, 10), index.search(q, 10)):
        np.testing.assert_array_equal(got, want)
    assert loaded._core.mapped == (how == "mmap")


@pytest.mark.parametrize("how", ["file", "mmap", "bytes"])
def test_round_trip_empty_and_without_metadata(tmp_path, how):
    index = simdex.Index(5, metric="ip")
    path = tmp_path / "empty.sdx"
    index.save(path)
    loaded = load_via(path, how)
    assert_same(index, loaded)
    assert loaded.search(np.ones(5), 3).ids.tolist() == [[-1, -1, -1]]


def test_saved_file_matches_documented_layout(tmp_path, rng):
    index = make_index(rng)
    path = tmp_path / "a.sdx"
    index.save(path)
    data = path.read_bytes()
    assert data == index._core.to_bytes()
    f = parse(data)  # checks magic, sizes and every checksum independently of the C++ reader
    assert f.version == 1
    assert [s.name for s in f.sections] == ["index", "ids", "vectors.f32", "metadata"]
    assert [s.flags & REQUIRED for s in f.sections] == [1, 1, 1, 0]
    assert all(s.offset % 64 == 0 for s in f.sections)
    dim, count, next_id, metric, flags, _ = sdxfile.INDEX_HEADER.unpack(f.get("index").data)
    assert (dim, count, next_id, metric, flags) == (17, len(index), index._core.next_id, 0, 0)
    ids = np.frombuffer(f.get("ids").data, "<i8")
    np.testing.assert_array_equal(ids, index.ids())
    vec = np.frombuffer(f.get("vectors.f32").data, "<f4").reshape(count, dim)
    np.testing.assert_array_equal(vec, index.reconstruct(ids))


def test_python_built_file_loads(rng):
    """A file laid out from docs/format.md by an independent writer is read back by the C++ reader."""
    vec = rng.standard_normal((4, 3)).astype("<f4")
    data = build(index_sections(3, [5, 1, 9, 2], vec.tobytes(), metric=1, next_id=20, metadata=b'{"k": 1}'))
    index = simdex.load_bytes(data)
    assert (index.dim, index.metric, index.ids().tolist(), index._core.next_id) == (3, "ip", [5, 1, 9, 2], 20)
    assert index.metadata == {"k": 1}
    np.testing.assert_array_equal(index.reconstruct([9]), vec[2:3])


def test_load_bytes_accepts_buffers(tmp_path, rng):
    data = make_index(rng)._core.to_bytes()
    for buf in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert len(simdex.load_bytes(buf)) == 257
    with pytest.raises(TypeError):
        simdex.load_bytes("not bytes")
    with pytest.raises((TypeError, BufferError)):
        simdex.load_bytes(memoryview(data)[::2])  # not contiguous


def test_format_error_is_one_value_error_class():
    assert simdex.FormatError is _core.FormatError
    assert issubclass(simdex.FormatError, ValueError)
    assert simdex.FormatError.__module__ == "simdex"


# -- files that are not simdex indexes ----------------------------------------------------------------------------


def foreign_files(rng):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 4), np.float32))
    npy = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    npz = buf.getvalue()
    return {
        "empty": (b"", "empty"),
        "one byte": (b"\x89", "truncated"),
        "random": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a simdex index"),
        "zeros": (bytes(100), "not a simdex index"),
        "pickle": (pickle.dumps({"a": np.arange(3)}), "pickle"),
        "npy": (npy, ".npy"),
        "npz": (npz, "zip"),
        "text": (b"hello, this is a text file\n" * 10, "not a simdex index"),
        "pre-release simdex": (b"SIMDEX\x00\x01" + bytes(60), "pre-release"),
        "magic only": (sdxfile.MAGIC, "truncated"),
    }


@pytest.mark.parametrize("how", ["file", "mmap", "bytes"])
def test_foreign_files_raise_format_error(tmp_path, rng, how):
    for name, (data, words) in foreign_files(rng).items():
        path = tmp_path / "x.sdx"
        path.write_bytes(data)
        with pytest.raises(simdex.FormatError, match=words) as e:
            load_via(path, how)
        assert str(e.value), name


def test_smallest_valid_file_is_a_header_without_sections():
    data = build([])
    assert len(data) == 64
    with pytest.raises(simdex.FormatError, match="section 'index' is missing"):
        simdex.load_bytes(data)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(simdex.FormatError, match="directory"):
        simdex.load(tmp_path)
    with pytest.raises(simdex.FormatError, match="directory"):
        simdex.load(tmp_path, mmap=True)
    with pytest.raises(FileNotFoundError):
        simdex.load(tmp_path / "missing.sdx")
    with pytest.raises(FileNotFoundError):
        simdex.load(tmp_path / "missing.sdx", mmap=True)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("mmap", [False, True])
def test_pipes_and_devices_are_refused_without_blocking(tmp_path, mmap):
    fifo = tmp_path / "pipe.sdx"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came, if the loader waited
    with pytest.raises(simdex.FormatError, match="not a regular file"):
        simdex.load(fifo, mmap=mmap)
    if os.path.exists("/dev/zero"):
        with pytest.raises(simdex.FormatError, match="not a regular file"):
            simdex.load("/dev/zero", mmap=mmap)


def test_future_version_is_refused_with_upgrade_hint(rng):
    data = build(index_sections(2, [0], b"\0" * 8), version=2)
    with pytest.raises(simdex.FormatError, match="format version 2 by a newer simdex.*upgrade"):
        simdex.load_bytes(data)


def test_damaged_version_field_reads_as_damage_not_as_newer(rng):
    data = bytearray(make_index(rng)._core.to_bytes())
    data[8] ^= 0x02  # version 1 -> 3, header checksum left as it was
    with pytest.raises(simdex.FormatError, match="header checksum mismatch"):
        simdex.load_bytes(bytes(data))


def test_unknown_optional_section_is_skipped(rng):
    vec = rng.standard_normal((2, 4)).astype("<f4").tobytes()
    extra = Section("zz.future", 99, 3, 1, b"abc", 0)  # unknown dtype code too: it is never looked at
    data = build(index_sections(4, [0, 1], vec) + [extra])
    assert len(simdex.load_bytes(data)) == 2


def test_unknown_required_section_is_refused(rng):
    vec = rng.standard_normal((2, 4)).astype("<f4").tobytes()
    extra = Section("pca.transform", F32, 1, 1, b"\0\0\0\0", REQUIRED)
    with pytest.raises(simdex.FormatError, match="needs section 'pca.transform'.*upgrade"):
        simdex.load_bytes(build(index_sections(4, [0, 1], vec) + [extra]))


# -- hostile files: checksums right, contents wrong -------------------------------------------------------------

VEC = np.arange(8, dtype="<f4").tobytes()  # 2 rows x 4


def secs(**kw):
    return index_sections(4, kw.pop("ids", [0, 1]), kw.pop("vectors", VEC), **kw)


def with_section(sections, name, **changes):
    out = []
    for s in sections:
        if s.name == name:
            s = Section(**{**s.__dict__, **changes})
        out.append(s)
    return out


def entry_patch(data: bytes, index: int, fmt: str, field_offset: int, value) -> bytes:
    """Rewrites one field of section table entry `index` and fixes the table and header checksums."""
    b = bytearray(data)
    struct.pack_into(fmt, b, 64 + 64 * index + field_offset, value)
    count = struct.unpack_from("<I", b, 32)[0]
    struct.pack_into("<I", b, 40, sdxfile.crc(bytes(b[64:64 + 64 * count])))
    struct.pack_into("<I", b, 60, sdxfile.crc(bytes(b[:60])))
    return bytes(b)


def hostile_files():
    good = build(secs())
    huge = 2**40
    nan = np.array([0, 1, np.nan, 3, 4, 5, 6, 7], "<f4").tobytes()
    return {
        "count claims 2^40 rows": (build(secs(count=huge)), "shape"),
        "ids rows overflow 64 bits": (entry_patch(good, 1, "<Q", 40, 2**62), "does not match its length"),
        "vectors claim 2^37 rows of the right length": (
            entry_patch(entry_patch(good, 2, "<Q", 40, 2**37), 2, "<Q", 32, 2**37 * 16), "past the end"),
        "offset past end": (entry_patch(good, 1, "<Q", 24, 2**63), "past the end"),
        "offset misaligned": (entry_patch(good, 1, "<Q", 24, 64 * 5 + 8), "aligned"),
        "offset inside table": (entry_patch(good, 1, "<Q", 24, 64), "overlaps the header or table"),
        "sections overlap": (entry_patch(good, 2, "<Q", 24, parse(good).get("ids").offset), "overlap"),
        "duplicate names": (build(secs() + [Section("ids", I64, 0, 1, b"", 0)]), "twice"),
        "bad name": (build(secs() + [Section("Bad Name", BYTES, 0, 1, b"", 0)]), "invalid section name"),
        "name not terminated": (entry_patch(good, 3, "<16s", 0, b"m" * 16), "not NUL-terminated"),
        "entry flags": (entry_patch(good, 3, "<I", 20, 6), "unknown flags"),
        "header flags": (build(secs(), header_flags=1), "flags"),
        "file size field": (build(secs(), file_size=10**6), "truncated"),
        "dim 0": (build(index_sections(0, [], b"")), "dim 0"),
        "dim 2^21": (build(index_sections(2**21, [], b"")), "dim 2097152"),
        "metric 7": (build(secs(metric=7)), "metric"),
        "next id negative": (build(secs(next_id=-5)), "negative"),
        "duplicate ids": (build(secs(ids=[3, 3], next_id=4)), "twice"),
        "negative id": (build(secs(ids=[-2, 1], next_id=4)), "outside"),
        "id past next id": (build(secs(ids=[0, 9], next_id=4)), "outside"),
        "NaN vector": (build(secs(vectors=nan)), "NaN"),
        "vectors float64": (build(with_section(secs(), "vectors.f32", dtype=F64, cols=2)), "float64"),
        "vectors wrong cols": (build(with_section(secs(), "vectors.f32", cols=2, rows=4)), "shape"),
        "missing ids": (build([s for s in secs() if s.name != "ids"]), "'ids' is missing"),
        "metadata not UTF-8": (build(secs(metadata=b'{"a": "\xff"}')), "UTF-8"),
        "metadata surrogate": (build(secs(metadata=b'{"a": "\xed\xa0\x80"}')), "UTF-8"),
        "metadata not JSON": (build(secs(metadata=b"{nope")), "not valid JSON"),
        "metadata JSON list": (build(secs(metadata=b"[1, 2]")), "JSON list"),
    }


HOSTILE = hostile_files()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_raises_format_error(name):
    data, words = HOSTILE[name]
    with pytest.raises(simdex.FormatError, match=words):
        simdex.load_bytes(data)


@pytest.mark.parametrize("name", [n for n in HOSTILE if n != "NaN vector"])  # mapped vectors are not scanned
def test_hostile_file_raises_format_error_mapped(tmp_path, name):
    data, words = HOSTILE[name]
    path = tmp_path / "h.sdx"
    path.write_bytes(data)
    with pytest.raises(simdex.FormatError, match=words):
        simdex.load(path, mmap=True)


def test_section_table_claiming_too_many_sections_is_refused():
    data = bytearray(build(secs()))
    struct.pack_into("<I", data, 32, 5000)
    struct.pack_into("<I", data, 60, sdxfile.crc(bytes(data[:60])))
    with pytest.raises(simdex.FormatError, match="5000 sections"):
        simdex.load_bytes(bytes(data))
    struct.pack_into("<I", data, 32, 4000)
    struct.pack_into("<I", data, 60, sdxfile.crc(bytes(data[:60])))
    with pytest.raises(simdex.FormatError, match="runs past the end"):
        simdex.load_bytes(bytes(data))


@pytest.mark.skipif(sys.platform != "linux" or "asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="RLIMIT_AS is Linux; AddressSanitizer reserves terabytes of address space")
def test_hostile_files_allocate_nothing_large(tmp_path):
    """With 1 GiB of address space, files claiming terabytes still fail with FormatError, not MemoryError."""
    for i, (data, _) in enumerate(HOSTILE.values()):
        (tmp_path / f"{i}.sdx").write_bytes(data)
    code = textwrap.dedent(f"""
        import resource, glob, simdex
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        n = 0
        for path in sorted(glob.glob({str(tmp_path)!r} + "/*.sdx")):
            for mmap in (False, True):
                try:
                    simdex.load(path, mmap=mmap)
                except simdex.FormatError:
                    n += 1
        print(n)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 2 * len(HOSTILE) - 1  # all but the mapped NaN file
