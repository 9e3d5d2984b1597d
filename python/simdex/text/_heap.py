"""Keeps a long CPU encoding run from growing the process through malloc heap fragmentation (glibc only).

On CPU, torch takes a model's activation buffers from malloc. For MiniLM at batch 32 they are 1-16 MiB, with a new
size for every padded batch length, and after the first frees glibc serves such sizes from its heap (its mmap
threshold rises to 32 MiB). Over a long run the heap fragments: the bytes in use stay flat while the free part
of the heap keeps growing, and it stays resident. `SentenceTransformer.encode` alone, over 512-text windows of
short sentences, grew RSS by 516 MB in 40,000 texts with 165 MB in use (`bench/README_ingest.md`, section 2).

`HeapTrimmer` reads the resident size after each batch (a few microseconds) and, once it has grown `slack` bytes
above the lowest value seen since the last trim, calls ``malloc_trim(0)``: glibc hands the free pages of its
heaps back to the OS, and they are faulted in again only if reused. Growth that is real (an index being filled)
is absorbed as the new reference after each trim, so it costs one trim per `slack` bytes, no more.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

#: Growth of the resident size, over its lowest value since the last trim, that triggers a trim.
SLACK = 128 << 20


@functools.cache
def _malloc_trim():  # glibc's malloc_trim, or None (other platforms and C libraries)
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def resident_bytes() -> int:
    """The process's resident set size, from /proc/self/statm (Linux)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class HeapTrimmer:
    """Call after each unit of work; trims the malloc heap when the process grew `slack` bytes (see module doc).

    Does nothing where malloc_trim is not available. ``trims`` counts the trims made. Holds plain numbers only, so
    an encoder that owns one can be pickled.
    """

    def __init__(self, slack: int = SLACK) -> None:
        self.slack = slack
        self.trims = 0
        self._low: int | None = None

    def __call__(self) -> None:
        trim = _malloc_trim()
        if trim is None:
            return
        rss = resident_bytes()
        if self._low is None or rss < self._low:
            self._low = rss
        elif rss > self._low + self.slack:
            trim(0)
            self.trims += 1
            self._low = resident_bytes()
