"""HeapTrimmer: gives a fragmented malloc heap back to the OS once the process grew past its slack (glibc)."""

import ctypes
import sys

import pytest
from simdex import _heap
from simdex._heap import HeapTrimmer, resident_bytes

glibc = pytest.mark.skipif(_heap._malloc_trim() is None, reason="malloc_trim is glibc's (Linux)")
MB = 1 << 20


def fragment_heap(libc, megabytes: int) -> list:
    """Leaves `megabytes` of touched, free heap memory that the heap's top cannot give back: 64 KiB blocks
    (below glibc's mmap threshold) each followed by a small block that stays allocated. Returns the small ones."""
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    big, pins = [], []
    for _ in range(megabytes * 16):
        p = libc.malloc(64 << 10)
        ctypes.memset(p, 1, 64 << 10)
        big.append(p)
        pins.append(libc.malloc(32))
    for p in big:
        libc.free(p)
    return pins


@glibc
def test_trims_once_the_process_grew_past_the_slack_and_gives_the_pages_back():
    libc = ctypes.CDLL(None)
    trimmer = HeapTrimmer(slack=32 * MB)
    trimmer()  # first look: the reference
    pins = fragment_heap(libc, 96)
    try:
        grown = resident_bytes()
        trimmer()
        assert trimmer.trims == 1
        assert resident_bytes() < grown - 48 * MB  # at least half of the 96 MB of free heap went back to the OS
        trimmer()  # nothing grew since: no second trim
        assert trimmer.trims == 1
    finally:
        for p in pins:
            libc.free(p)


@glibc
def test_no_trim_while_growth_stays_under_the_slack():
    libc = ctypes.CDLL(None)
    trimmer = HeapTrimmer(slack=512 * MB)
    trimmer()
    pins = fragment_heap(libc, 32)
    try:
        trimmer()
        assert trimmer.trims == 0
    finally:
        for p in pins:
            libc.free(p)


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
