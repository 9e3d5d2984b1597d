"""simdex.ingest on hostile files: no single line (deep nesting, invalid UTF-8, NUL bytes, a line of 200 MB)
stops the run or its resume; each is skipped, counted and named in the report, and an over-long line is never
held whole in memory. The stand-in encoder: no model, no network."""

import gzip
import sys
import tracemalloc
from pathlib import Path

import pytest
import simdex
from simdex.text.texts import docstore

TESTS = Path(__file__).resolve().parent


def _standin():
    sys.path.insert(0, str(TESTS))
    from standin_encoder import TinyStandInEncoder

    return TinyStandInEncoder()


def _good(i):
    return b'{"id": "g%d", "text": "good text %d"}' % (i, i)


def _keys(path):
    index = simdex.load(path)
    return sorted(doc.id for _, doc in docstore(index).get(index.ids()).values())


# name: (line, counter it is skipped under, its key when the report can know it)
HOSTILE = {
    "deep_array": (b"[" * 100_000, "malformed", None),
    "deep_object": (b'{"a": ' * 100_000, "malformed", None),
    "deep_metadata": (b'{"id": "dm", "text": "t", "m": ' + b"[" * 900 + b"]" * 900 + b"}", "malformed", "dm"),
    "invalid_utf8": (b'{"id": "u", "text": "caf\xe9 \xff\xfe"}', "invalid_utf8", None),
    "nul_in_string": (b'{"id": "z", "text": "a\x00b"}', "malformed", None),
    "nul_only": (b"\x00" * 64, "malformed", None),
    "utf16_record": ('{"id": "w", "text": "wide"}'.encode("utf-16-le"), "malformed", None),
    "huge_int": (b'{"id": ' + b"9" * 5000 + b', "text": "x"}', "malformed", None),
    "text_not_str": (b'{"id": "k", "text": 5}', "malformed", "k"),
    "over_limit": (b'{"id": "big", "text": "' + b"x" * 2**20 + b'"}', "too_long", None),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_jsonl_line_is_skipped_counted_named_and_resumed_past(tmp_path, name):
    line, reason, key = HOSTILE[name]
    limit = {"max_line_bytes": 1024} if reason == "too_long" else {}
    corpus, path = tmp_path / "c.jsonl", tmp_path / "c.simdex"
    corpus.write_bytes(_good(0) + b"\n")
    first = simdex.ingest(corpus, path, encoder=_standin(), **limit)
    assert (first.documents, first.skipped) == (1, 0)

    with open(corpus, "ab") as f:  # the file grows: the resumed run reads the hostile line
        f.write(line + b"\n" + _good(1) + b"\n")
    report = simdex.ingest(corpus, path, encoder=_standin(), **limit)
    assert (report.resumed_after, report.items, report.documents) == (1, 3, 2)
    assert getattr(report, "skipped_" + reason) == 1 and report.skipped == 1

    with open(corpus, "ab") as f:
        f.write(_good(2) + b"\n")
    again = simdex.ingest(corpus, path, encoder=_standin(), **limit)  # past it for good, its record kept
    assert (again.resumed_after, again.items, again.documents, again.skipped) == (3, 4, 3, 1)
    assert [(s.item, s.key, s.reason) for s in report.skipped_items] == [(2, key, reason)]
    assert "#2" in str(report)
    assert _keys(path) == ["g0", "g1", "g2"]
    assert first.skipped_items == [] and again.skipped_items == report.skipped_items


def test_every_hostile_line_in_one_file_with_line_numbers_and_keys(tmp_path):
    lines = [_good(0)]
    for line, _, _ in HOSTILE.values():
        lines += [line, _good(len(lines))]
    lines += [_good(0), b"   ", b'{"id": "e", "text": " "}']  # a duplicate id, an empty line, an empty text
    corpus = tmp_path / "all.jsonl"
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    report = simdex.ingest(corpus, tmp_path / "all.simdex", encoder=_standin(), max_line_bytes=700_000)
    n = len(HOSTILE)
    assert (report.items, report.documents, report.skipped) == (2 * n + 4, n + 1, n + 3)
    assert (report.skipped_malformed, report.skipped_invalid_utf8, report.skipped_too_long,
            report.skipped_duplicate, report.skipped_empty) == (n - 2, 1, 1, 1, 2)
    want = [(2 + 2 * i, key, reason) for i, (_, reason, key) in enumerate(HOSTILE.values())]
    want += [(2 * n + 2, "g0", "duplicate"), (2 * n + 3, None, "empty"), (2 * n + 4, "e", "empty")]
    assert [(s.item, s.key, s.reason) for s in report.skipped_items] == want
    details = {s.item: s.detail for s in report.skipped_items}
    assert "nested" in details[2] and "NUL" in details[10] and "700000" in details[2 * n]


def test_hostile_lines_of_a_text_file(tmp_path):
    corpus = tmp_path / "lines.txt"
    corpus.write_bytes(b"first line\n" + b"[" * 100_000 + b"\nnul \x00 byte\r\nbad \xff utf8\n" + b"y" * 300_000
                       + b"\nlast line")
    report = simdex.ingest(corpus, tmp_path / "t.simdex", encoder=_standin(), max_line_bytes=200_000)
    assert (report.items, report.documents) == (6, 3)  # 100,000 '[' is a plain text here
    assert [(s.item, s.reason) for s in report.skipped_items] == [(3, "malformed"), (4, "invalid_utf8"),
                                                                   (5, "too_long")]


def test_hostile_files_of_a_folder_and_records_of_an_iterable(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"fine text")
    (folder / "big.md").write_bytes(b"z" * 5000)
    (folder / "nul.txt").write_bytes("utf-16 text".encode("utf-16"))
    (folder / "bad.txt").write_bytes(b"\xc3\x28")
    report = simdex.ingest(folder, tmp_path / "f.simdex", encoder=_standin(), max_line_bytes=4096)
    assert report.documents == 1 and [(s.item, s.key, s.reason) for s in report.skipped_items] == [
        (2, "bad.txt", "invalid_utf8"), (3, "big.md", "too_long"), (4, "nul.txt", "malformed")]

    deep: list = []
    for _ in range(900):
        deep = [deep]
    records = [{"id": "ok", "text": "t", "m": [[1]]}, {"id": "deep", "text": "t", "m": deep},
               {"id": "set", "text": "t", "m": {1, 2}}, {"id": 10**5000, "text": "t"}, ("p", 7)]
    report = simdex.ingest(records, tmp_path / "r.simdex", encoder=_standin())
    assert report.documents == 1 and [(s.item, s.key, s.reason) for s in report.skipped_items] == [
        (2, "deep", "malformed"), (3, "set", "malformed"), (4, None, "malformed"), (5, "p", "malformed")]
    assert _keys(tmp_path / "r.simdex") == ["ok"]


def test_an_escaped_nul_in_a_json_string_is_kept(tmp_path):
    corpus = tmp_path / "esc.jsonl"
    corpus.write_bytes(b'\xef\xbb\xbf{"id": "esc", "text": "a\\u0000b"}\n')  # a byte order mark, then \u0000
    report = simdex.ingest(corpus, tmp_path / "e.simdex", encoder=_standin())
    assert (report.documents, report.skipped) == (1, 0)
    index = simdex.load(tmp_path / "e.simdex")
    assert [doc.text for _, doc in docstore(index).get(index.ids()).values()] == ["a\x00b"]


def test_max_line_bytes_boundary_and_validation(tmp_path):
    corpus = tmp_path / "b.jsonl"
    exact = b'{"id": "e", "text": "' + b"x" * 77 + b'"}'
    assert len(exact) == 100
    corpus.write_bytes(exact + b"\r\n" + exact[:-2] + b'x"}\n' + exact)  # 101 bytes with its \r; 101; 100, no \n
    report = simdex.ingest(corpus, tmp_path / "b.simdex", encoder=_standin(), max_line_bytes=100)
    assert [(s.item, s.reason) for s in report.skipped_items] == [(1, "too_long"), (2, "too_long")]
    assert report.documents == 1 and report.items == 3
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), ("16M", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match="max_line_bytes"):
            simdex.ingest(corpus, tmp_path / "v.simdex", encoder=_standin(), max_line_bytes=bad)


def test_the_skipped_list_is_bounded(tmp_path):
    corpus = tmp_path / "many.jsonl"
    corpus.write_bytes(b"{bad\n" * 1000 + _good(0) + b"\n")
    report = simdex.ingest(corpus, tmp_path / "m.simdex", encoder=_standin())
    assert report.skipped_malformed == 1000 and report.documents == 1
    from simdex.text.ingest import SKIPPED_KEPT

    assert len(report.skipped_items) == SKIPPED_KEPT == 100
    assert "#1 malformed (not JSON: " in str(report) and "and 997 more" in str(report)


def _write_huge(path, size):
    head, tail = _good(0) + b'\n{"id": "huge", "text": "', b'"}\n' + _good(1) + b"\n"
    block = b"x" * 2**20
    with (gzip.open(path, "wb", compresslevel=1) if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(head)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(tail)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".txt"])
def test_a_200_mb_line_is_skipped_without_being_read_whole(tmp_path, suffix):
    corpus = tmp_path / ("huge" + suffix)
    _write_huge(corpus, 200 * 2**20)
    tracemalloc.start()
    try:
        report = simdex.ingest(corpus, tmp_path / "h.simdex", encoder=_standin())  # the default 16 MB limit
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.items == 3 and report.documents == 2
    assert [(s.item, s.reason) for s in report.skipped_items] == [(2, "too_long")]
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB: the line was held whole"
    print(f"{suffix}: traced peak {peak / 2**20:.1f} MiB")
