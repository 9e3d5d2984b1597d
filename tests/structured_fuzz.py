"""Structure-aware mutation of index files: every header, section-table and index-section field, and the section
contents, set to boundary values (0, 1, 2^31, 2^32, 2^63, 2^64-1, values whose offset + length wraps) with the
checksums recomputed, so each mutation reaches the checks behind the CRCs.

Every mutated file must either be refused with FormatError or load into an index whose search matches a NumPy
float64 brute force over reconstruct(); a mapped load that saves must write a file a full load accepts (or refuse
with FormatError). Anything else, a crash, a hang, another exception, is a finding.

    python tests/structured_fuzz.py 50000 [seed]    # prints the counts as JSON; exit 1 on a finding

tests/test_reliability.py runs it in a subprocess (a crash names the last mutation printed on stderr).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simdex  # noqa: E402
from simdex import _core  # noqa: E402

HEADER_FIELDS = [  # (name, offset, struct code) of the 64-byte file header
    ("version", 8, "I"), ("header_size", 12, "I"), ("file_size", 16, "Q"), ("table_offset", 24, "Q"),
    ("section_count", 32, "I"), ("entry_size", 36, "I"), ("flags", 44, "I"), ("reserved", 48, "I"),
]
ENTRY_FIELDS = [("name", 0, "Q"), ("dtype", 16, "I"), ("flags", 20, "I"), ("offset", 24, "Q"), ("length", 32, "Q"),
                ("rows", 40, "Q"), ("cols", 48, "Q"), ("reserved", 60, "I")]
INDEX_FIELDS = [("dim", 0, "Q"), ("count", 8, "Q"), ("next_id", 16, "Q"), ("metric", 24, "I"), ("flags", 28, "I"),
                ("reserved", 32, "Q")]
BOUNDARY = [0, 1, 2, 3, 63, 64, 65, 127, 128, 255, 4096, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 64,
            2**62, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 64, 2**64 - 1]


def seed_files() -> list[bytes]:
    """Valid files of every kind the loader knows: cosine, ip with id holes and metadata, int8 with and without
    the originals, a PCA pre-transform, an empty index, ids at the top of int64, partitioned float32 and int8,
    l2 float32 and int8 (with their stored norms), binary (bits only, with the float rows, with the int8 tier;
    flat and partitioned)."""
    rng = np.random.default_rng(7)
    out = []

    def add(index):
        out.append(index.to_bytes() if hasattr(index, "to_bytes") else index._core.to_bytes())

    a = simdex.Index(5)
    a.add(rng.standard_normal((9, 5)).astype(np.float32))
    a.remove([2, 3])
    add(a)
    b = simdex.Index(3, metric="ip")
    b.add(rng.standard_normal((4, 3)).astype(np.float32), ids=[7, 1, 40, 2**63 - 1])
    b.metadata = {"fingerprint": {"model": "m", "dim": 3}, "é": "✓"}
    add(b)
    for keep in (False, True):
        c = simdex.Index(6, dtype="int8", keep_originals=keep)
        c.train(rng.standard_normal((64, 6)).astype(np.float32))
        c.add(rng.standard_normal((7, 6)).astype(np.float32))
        add(c)
    d = simdex.Index(8, transform=simdex.PCA(4))
    d.add(rng.standard_normal((20, 8)).astype(np.float32))
    add(d)
    add(simdex.Index(4))
    for dtype in ("float32", "int8"):
        e = simdex.Index(6, dtype=dtype, keep_originals=dtype == "int8", partitions=3)
        e.add(rng.standard_normal((30, 6)).astype(np.float32))
        e.remove([4, 29])
        add(e)
    for dtype in ("float32", "int8"):
        f = simdex.Index(5, metric="l2", dtype=dtype)
        f.add((rng.standard_normal((12, 5)) + 1.0).astype(np.float32))
        f.remove([3])
        add(f)
    for keep, parts in ((False, None), (True, None), ("int8", None), (True, 3), ("int8", 3)):
        g = simdex.Index(11, dtype="binary", keep_originals=keep, partitions=parts)
        g.train(rng.standard_normal((64, 11)).astype(np.float32))
        g.add(rng.standard_normal((25, 11)).astype(np.float32))
        g.remove([6])
        add(g)
    return out


def _fields(buf: bytes) -> list[tuple[int, str, str]]:
    """(offset, struct code, role) of every field a mutation may set."""
    count = struct.unpack_from("<I", buf, 32)[0]
    fields = [(off, code, "header") for _, off, code in HEADER_FIELDS]
    for i in range(count):
        base = 64 + 64 * i
        fields += [(base + off, code, "entry") for _, off, code in ENTRY_FIELDS]
        name = buf[base:base + 16].rstrip(b"\0")
        offset, length = struct.unpack_from("<QQ", buf, base + 24)
        if name == b"index" and length == 64:
            fields += [(offset + off, code, "index") for _, off, code in INDEX_FIELDS]
        elif length and offset + length <= len(buf):
            width = {b"ids": 8, b"vectors.f32": 4, b"int8.codes": 1, b"int8.step": 4, b"int8.offset": 4,
                     b"l2.norms": 4}.get(name)
            if width:
                fields += [(offset + j * width, {8: "q", 4: "f", 1: "b"}[width], "data") for j in range(length // width)]
            else:
                fields += [(offset + j, "B", "data") for j in range(length)]
    return fields


def _value(rng, code: str, current, buf_len: int):
    if code == "f":
        with np.errstate(over="ignore"):  # twice the largest float is inf, a value worth trying too
            return float(np.float32(rng.choice([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e20, 1e-30, 1e-45, 0.0,
                                                -0.0, current * 2.0, -current])))
    if code == "b":
        return int(rng.choice([-128, 127, -127, 0, 1]))
    if code == "B":
        return int(rng.integers(0, 256))
    if code == "q":
        v = int(rng.choice([-1, -(2**63), 2**63 - 1, 0, 1, current + 1, current - 1, 2**62]))
        return (v + 2**63) % 2**64 - 2**63
    top = 2**32 if code == "I" else 2**64
    pool = BOUNDARY + [current + 1, current - 1, current + 64, current - 64, current * 2, buf_len, buf_len - current,
                       top - current, top - current + 64, buf_len + 64]
    return int(rng.choice(pool)) % top


def fix_checksums(buf: bytearray) -> None:
    """Recomputes every section checksum that lies inside the file, then the table's and the header's."""
    count = min(struct.unpack_from("<I", buf, 32)[0], (len(buf) - 64) // 64)
    for i in range(count):
        base = 64 + 64 * i
        offset, length = struct.unpack_from("<QQ", buf, base + 24)
        if offset + length <= len(buf):
            struct.pack_into("<I", buf, base + 56, _core.crc32c(bytes(buf[offset:offset + length])))
    table = bytes(buf[64:64 + 64 * count])
    struct.pack_into("<I", buf, 40, _core.crc32c(table))
    struct.pack_into("<I", buf, 60, _core.crc32c(bytes(buf[:60])))


def mutate(rng, good: bytes) -> bytes:
    buf = bytearray(good)
    fields = _fields(good)
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        off, code, _role = fields[int(rng.integers(len(fields)))]
        current = struct.unpack_from("<" + code, buf, off)[0]
        value = _value(rng, code, current, len(buf))
        struct.pack_into("<" + code, buf, off, value)
    if rng.random() < 0.05:  # a whole section appended or cut, the table left claiming the old layout
        buf = buf[:int(rng.integers(64, len(buf)))] if rng.random() < 0.5 else buf + bytes(64)
    if rng.random() < 0.95:
        fix_checksums(buf)
    return bytes(buf)


def brute_force_agrees(index, rng) -> None:
    """The loaded index's search equals a float64 brute force over its own reconstruct() (core level, so a
    pre-transform does not stand between them)."""
    core = index._core
    ids = np.asarray(core.ids(), np.int64)
    q = rng.standard_normal((2, core.dim)).astype(np.float32)
    k = 3
    exact = core.dtype == "float32" or core.keeps_originals
    # int8 with originals: rescoring every row makes the result exact whatever the codes say.
    params = {} if core.dtype == "float32" or not exact else {"rescore": max(1, len(ids))}
    if core.partitions:  # every partition probed: the exact result
        params["nprobe"] = core.partitions
    scores, got = core.search(q, k, **params)
    assert scores.shape == got.shape == (2, k)
    if len(ids) == 0:
        assert (got == -1).all()
        return
    rows = np.asarray(core.reconstruct(ids), np.float64)
    qq = q.astype(np.float64)
    if core.metric == "cosine":
        qq /= np.linalg.norm(qq, axis=1, keepdims=True)
    want = qq @ rows.T
    if core.metric == "l2":  # squared distances, nearest first: checked as negated scores, best first
        want, scores = -((qq[:, None, :] - rows[None]) ** 2).sum(-1), -scores
    for r in range(2):
        n = min(k, len(ids))
        assert set(got[r, :n]) <= set(ids) and (got[r, n:] == -1).all()
        if exact:
            best = np.sort(want[r])[::-1][:n]
            assert np.allclose(scores[r, :n], best, rtol=1e-4, atol=1e-4), (scores[r], best)
            column = {int(v): j for j, v in enumerate(ids)}
            own = want[r][[column[int(v)] for v in got[r, :n]]]  # each returned id's own score
            assert np.allclose(own, scores[r, :n], rtol=1e-4, atol=1e-4)
        else:
            assert np.isfinite(scores[r, :n]).all() and (np.diff(scores[r, :n]) <= 0).all()


def run(n: int, seed: int = 0, folder: str | None = None) -> dict:
    rng = np.random.default_rng(seed)
    folder = folder or tempfile.mkdtemp()
    seeds = seed_files()
    stats = dict(tried=0, refused=0, loaded=0, mapped_tried=0, mapped_saved=0, mapped_save_refused=0)
    for i in range(n):
        data = mutate(rng, seeds[i % len(seeds)])
        print(i, file=sys.stderr, flush=True)  # the last number printed names the input if this process dies
        stats["tried"] += 1
        try:
            with np.errstate(all="ignore"):  # hostile matrices overflow in NumPy casts; the loader must refuse them
                index = simdex.load_bytes(data)
        except simdex.FormatError:
            stats["refused"] += 1
        else:
            stats["loaded"] += 1
            brute_force_agrees(index, rng)
        if i % 10 == 0:
            path, copy = os.path.join(folder, "m.sdx"), os.path.join(folder, "copy.sdx")
            with open(path, "wb") as f:
                f.write(data)
            try:
                with np.errstate(all="ignore"):
                    mapped = simdex.load(path, mmap=True)
            except simdex.FormatError:
                continue
            stats["mapped_tried"] += 1
            try:
                mapped.save(copy)
            except simdex.FormatError:
                stats["mapped_save_refused"] += 1
                assert not os.path.exists(copy)
                continue
            stats["mapped_saved"] += 1
            again = simdex.load(copy)  # what a mapped index saves, a full load accepts: damage is never re-signed
            assert np.array_equal(np.sort(again.ids()), np.sort(mapped.ids()))
            brute_force_agrees(again, rng)
            del mapped, again
            os.unlink(copy)
    return stats


if __name__ == "__main__":
    counts = run(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(json.dumps(counts))
