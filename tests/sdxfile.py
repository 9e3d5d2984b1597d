"""An independent Python reading of docs/format.md, for tests: parses index files and builds them, including
hostile ones whose checksums are right but whose contents are not."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from simdex import _core

MAGIC = b"\x89SDX\r\n\x1a\n"
HEADER = struct.Struct("<8sIIQQIIII12sI")  # 64 bytes; the last field is the CRC32C of the first 60
ENTRY = struct.Struct("<16sIIQQQQII")  # 64 bytes
INDEX_HEADER = struct.Struct("<QQqII32s")  # the "index" section
REQUIRED = 1
DTYPE_SIZE = {0: 1, 1: 4, 2: 8, 3: 1, 4: 1, 5: 4, 6: 4, 7: 8}
BYTES, F32, F64, I8, U8, I32, U32, I64 = range(8)
assert HEADER.size == ENTRY.size == INDEX_HEADER.size == 64


def crc(data: bytes) -> int:
    return _core.crc32c(data)


@dataclass
class Section:
    name: str
    dtype: int
    rows: int
    cols: int
    data: bytes
    flags: int = 0
    offset: int = 0  # filled by parse; build computes its own unless told otherwise
    crc: int = 0


@dataclass
class File:
    version: int
    file_size: int
    sections: list[Section] = field(default_factory=list)

    def get(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)


def parse(buf: bytes) -> File:
    (magic, version, header_size, file_size, table_offset, count, entry_size, table_crc, flags, reserved,
     header_crc) = HEADER.unpack_from(buf, 0)
    assert magic == MAGIC and header_size == 64 and entry_size == 64 and table_offset == 64
    assert flags == 0 and reserved == bytes(12)
    assert header_crc == crc(buf[:60]) and file_size == len(buf)
    assert table_crc == crc(buf[64:64 + 64 * count])
    f = File(version, file_size)
    for i in range(count):
        raw_name, dtype, sflags, offset, length, rows, cols, scrc, _ = ENTRY.unpack_from(buf, 64 + 64 * i)
        data = buf[offset:offset + length]
        assert len(data) == length == rows * cols * DTYPE_SIZE[dtype]
        assert scrc == crc(data)
        f.sections.append(Section(raw_name.rstrip(b"\0").decode(), dtype, rows, cols, data, sflags, offset, scrc))
    return f


def build(sections: list[Section], *, version: int = 1, pad: int = 64, fix_crc: bool = True,
          keep_offsets: bool = False, header_flags: int = 0, file_size: int | None = None) -> bytes:
    """Lays sections out as format version 1 does (or with the given oddities) and returns the file bytes."""
    table_end = 64 + 64 * len(sections)
    pos = table_end
    body = bytearray()
    entries = []
    for s in sections:
        offset = s.offset if keep_offsets else (pos + pad - 1) // pad * pad
        if offset > table_end + len(body):
            body += bytes(offset - table_end - len(body))
        elif offset < table_end + len(body) and not keep_offsets:
            raise AssertionError("overlap")
        end = offset + len(s.data)
        if end > table_end + len(body):
            body += bytes(end - table_end - len(body))
        body[offset - table_end:end - table_end] = s.data
        entries.append(ENTRY.pack(s.name.encode().ljust(16, b"\0"), s.dtype, s.flags, offset, len(s.data), s.rows,
                                  s.cols, crc(s.data) if fix_crc else s.crc, 0))
        pos = end
    table = b"".join(entries)
    size = table_end + len(body) if file_size is None else file_size
    head = HEADER.pack(MAGIC, version, 64, size, 64, len(sections), 64, crc(table), header_flags, bytes(12), 0)
    head = head[:60] + struct.pack("<I", crc(head[:60]))
    return bytes(head + table + body)


def index_sections(dim: int, ids: list[int], vectors: bytes, *, metric: int = 0, next_id: int | None = None,
                   metadata: bytes = b"", count: int | None = None, normalize: bool = True) -> list[Section]:
    """The four sections of an index file, from raw parts. Under cosine (metric 0) the rows are stored unit-norm,
    as the format says, unless normalize is False."""
    if metric == 0 and normalize and dim and vectors:
        import numpy as np

        rows = np.frombuffer(vectors, "<f4").reshape(-1, dim).astype(np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            vectors = (rows / np.where(norms > 0, norms, 1)).astype("<f4").tobytes()
    n = len(ids) if count is None else count
    nid = (max(ids) + 1 if ids else 0) if next_id is None else next_id
    head = INDEX_HEADER.pack(dim, n, nid, metric, 0, bytes(32))
    return [
        Section("index", BYTES, 64, 1, head, REQUIRED),
        Section("ids", I64, len(ids), 1, struct.pack(f"<{len(ids)}q", *ids), REQUIRED),
        Section("vectors.f32", F32, len(vectors) // 4 // dim if dim else 0, dim, vectors, REQUIRED),
        Section("metadata", BYTES, len(metadata), 1, metadata, 0),
    ]
