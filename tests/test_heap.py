"""HeapTrimmer: gives a fragmented malloc heap back to the OS once the process grew past its slack (glibc)."""

import ctypes
import sys

import pytest
from simdex.text import _heap
from simdex.text._heap import HeapTrimmer, resident_bytes

glibc = pytest.mark.skipif(_heap._malloc_trim() is None, reason="malloc_trim is glibc's (Linux)")
MB = 1 << 20


def fragment_heap(libc, megabytes: int) -> list:
    """Leaves `megabytes` of touched, free heap memory that the heap's top cannot give back: 64 KiB blocks
    (below glibc's mmap threshold), each followed by a pin that stays allocated. A pin is itself a 64 KiB block
    shrunk in place to 32 bytes: a plain small malloc could be served from free small chunks elsewhere in the heap,
    leaving the big blocks side by side, to merge and be trimmed at free (the test then depended on what the
    interpreter had freed before). Returns the pins."""
    libc.malloc.restype = libc.realloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    big, pins = [], []
    for _ in range(megabytes * 16):
        p = libc.malloc(64 << 10)
        ctypes.memset(p, 1, 64 << 10)
        big.append(p)
        pin = libc.malloc(64 << 10)
        pins.append(libc.realloc(pin, 32))  # in place: its tail goes back to the top, the pin stays after p
    for p in big:
        libc.free(p)
    return pins


def scripted(monkeypatch, rss_mb: list) -> list:
    """Feeds HeapTrimmer these resident sizes (MB), one per read, and records the trims it asks for."""
    reads = iter(rss_mb)
    trims = []
    monkeypatch.setattr(_heap, "resident_bytes", lambda: next(reads) * MB)
    monkeypatch.setattr(_heap, "_malloc_trim", lambda: trims.append)
    return trims


def test_trims_past_the_slack_over_the_lowest_size_since_the_last_trim(monkeypatch):
    # reads: 100 (reference), 90 (new low), 99, 106 (= low + slack: not past it), 107 (trim; then reads 95),
    # 110, 111 (= 95 + 16: no), 112 (trim; then reads 80), 70 (new low), 87 (trim; then reads 60)
    trims = scripted(monkeypatch, [100, 90, 99, 106, 107, 95, 110, 111, 112, 80, 70, 87, 60])
    trimmer = HeapTrimmer(slack=16 * MB)
    done = []
    for _ in range(10):
        trimmer()
        done.append(trimmer.trims)
    assert done == [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert trims == [0, 0, 0]  # malloc_trim(0): every free page, not only the top of the heap


_FRAGMENT = """
import ctypes, json, sys
sys.path.insert(0, {tests!r})
from test_heap import fragment_heap, MB
from simdex.text._heap import HeapTrimmer, resident_bytes
libc = ctypes.CDLL(None)
trimmer = HeapTrimmer(slack=32 * MB)
trimmer()
before = resident_bytes()
pins = fragment_heap(libc, 96)
grown = resident_bytes()
trimmer()
print(json.dumps({{"before": before, "grown": grown, "after": resident_bytes(), "trims": trimmer.trims}}))
"""


@glibc
def test_a_fragmented_heap_goes_back_to_the_os():
    # In a fresh interpreter: a test process's earlier allocations change where malloc puts the blocks.
    import json
    import subprocess
    from pathlib import Path

    code = _FRAGMENT.format(tests=str(Path(__file__).parent))
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                    text=True).stdout)
    assert out["grown"] - out["before"] > 64 * MB  # the 96 MB of blocks, touched
    assert out["trims"] == 1
    assert out["after"] < out["before"] + 16 * MB  # and given back once freed, despite the pins


def test_does_nothing_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(_heap, "_malloc_trim", lambda: None)  # as on macOS or musl
    trimmer = HeapTrimmer(slack=0)
    for _ in range(3):
        trimmer()
    assert trimmer.trims == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
def test_resident_bytes_sees_memory_being_touched():
    before = resident_bytes()
    block = bytearray(64 * MB)  # zero-filled by calloc: untouched pages
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert resident_bytes() - before > 48 * MB
    del block


def test_the_cpu_encoder_checks_the_heap_after_every_batch(minilm, monkeypatch):
    calls = []
    monkeypatch.setattr(minilm, "_heap", lambda: calls.append(1))
    minilm.embed_batch([f"text number {i}" for i in range(70)], batch_size=32)
    assert len(calls) == 3  # batches of 32, 32 and 6


def test_pickles_with_its_state():
    import pickle

    trimmer = HeapTrimmer(slack=7 * MB)
    trimmer.trims = 2
    copy = pickle.loads(pickle.dumps(trimmer))
    assert (copy.slack, copy.trims) == (7 * MB, 2)
