"""CLI smoke tests: every subcommand through main(argv), as a user would type it."""

import json
import subprocess
import sys

import pytest

import simdex
from simdex.cli import main


def test_cost_reproduces_reference_figure(capsys):
    assert main(["cost", "--n", "50000000", "--dim", "384", "--dtype", "float32", "--replicas", "1",
                 "--price", "0.10:0.25"]) == 0
    out = capsys.readouterr().out
    assert "76.8 GB" in out and "per month" in out
    assert main(["cost", "--n", "1000", "--dim", "768", "--dtype", "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["raw_bytes"] == 768_000


def test_cost_bad_price_is_a_clear_error(capsys):
    assert main(["cost", "--n", "10", "--dim", "4", "--price", "cheap"]) == 2
    assert "LOW:HIGH" in capsys.readouterr().err


def test_info_describes_an_index_file(tmp_path, capsys, rng):
    index = simdex.Index(8)
    index.add(rng.standard_normal((5, 8)))
    index.metadata = {"fingerprint": {"model": "m", "dim": 8}}
    path = tmp_path / "x.simdex"
    index.save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "dim=8" in out and "model: m" in out


def test_info_on_a_foreign_file_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.simdex"
    bad.write_bytes(b"not an index at all" * 10)
    assert main(["info", str(bad)]) == 2
    assert "simdex info" in capsys.readouterr().err


@pytest.mark.encoder
def test_eval_ingest_search_and_demo(tmp_path, capsys, minilm):
    corpus = tmp_path / "c.jsonl"
    queries = tmp_path / "q.jsonl"
    docs = ["The cat sat on the warm mat.", "Python lists can be sorted with sorted().",
            "Use smtplib to send email from Python.", "Kernel modules are loaded with modprobe."]
    corpus.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(docs)))
    queries.write_text("\n".join(json.dumps(q) for q in [{"query": "how to send an email", "doc_id": "d2"},
                                                          {"query": "sort a list", "doc_id": "d1"}]))
    assert main(["eval", "--corpus", str(corpus), "--queries", str(queries), "--variants", "float32,float32+bm25",
                 "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["float32", "float32+bm25"] and rows[0]["recall@10"] == 1.0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    idx = tmp_path / "docs.simdex"
    assert main(["ingest", str(corpus), str(idx)]) == 0
    capsys.readouterr()
    assert main(["search", str(idx), "send email with python", "-k", "2"]) == 0
    assert "smtplib" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.encoder
def test_demo_runs_offline_and_writes_table_json_plot(tmp_path, capsys, minilm):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "embed" in err and "1989/1989" in err  # the real Encoder's progress bar while embedding the corpus
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["float32", "int8", "int8+rescore", "pca192", "pca192+int8", "float32+bm25"]
    by = {r["variant"]: r for r in rows}
    assert by["float32"]["recall@10"] > 0.8  # MiniLM on the Python docs set
    assert abs(by["int8"]["recall@10"] - by["float32"]["recall@10"]) <= 0.01
    assert by["int8+rescore"]["recall@10"] == pytest.approx(by["float32"]["recall@10"], abs=0.003)
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG" and "recall@10" in out


# -- bad arguments: one clear line on stderr and exit status 2, never a traceback --------------------------------
@pytest.mark.parametrize("price", ["inf", "-inf", "nan", "0.1:inf", "1e400", "-0.1", "0.1:-0.2", "0.3:0.1", "",
                                   "0.1:0.2:0.3"])
def test_cost_refuses_non_finite_and_negative_prices(capsys, price):
    assert main(["cost", "--n", "10", "--dim", "4", f"--price={price}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simdex cost: price") and err.count("\n") == 1, err


def test_cost_offers_no_float16(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["cost", "--n", "10", "--dim", "4", "--dtype", "float16"])
    assert exit_.value.code == 2 and "invalid choice: 'float16'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["cost", "--n", "0", "--dim", "4"], ["cost", "--n", "10", "--dim", "-3"], ["cost", "--n", "10", "--dim", "4",
                                                                               "--replicas", "0"],
    ["cost", "--n", "ten", "--dim", "4"], ["search", "x.simdex", "q", "-k", "0"], ["search", "x.simdex", "q",
                                                                                  "--width", "3"],
])
def test_bad_numbers_are_refused_before_any_work(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error: argument" in err, err


def test_search_an_index_without_a_fingerprint_is_one_clear_line(tmp_path, capsys, rng):
    index = simdex.Index(8)
    index.add(rng.standard_normal((5, 8)))  # vectors not added through an encoder: no model recorded
    path = tmp_path / "bare.simdex"
    index.save(path)
    assert main(["search", str(path), "some query"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simdex search: ") and "--model" in err and "fingerprint" in err


def test_search_cli_process_prints_no_traceback(tmp_path, rng):
    index = simdex.Index(8)
    index.add(rng.standard_normal((5, 8)))
    path = tmp_path / "bare.simdex"
    index.save(path)
    done = subprocess.run([sys.executable, "-m", "simdex", "search", str(path), "q"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("fingerprint", ["just a string", ["a", "list"], {"dim": 8}, {"model": 7}, {"model": ""}])
def test_search_and_info_survive_a_malformed_fingerprint(tmp_path, capsys, rng, fingerprint):
    index = simdex.Index(8)
    index.add(rng.standard_normal((5, 8)))
    index.metadata = {"fingerprint": fingerprint}
    path = tmp_path / "odd.simdex"
    index.save(path)
    assert main(["search", str(path), "q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err
    assert main(["info", str(path)]) == 0
    assert "fingerprint" in capsys.readouterr().out


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from simdex import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_info", interrupted)
    try:
        code = main(["info"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main() (a traceback for the user)")
    assert code == 130
    assert capsys.readouterr().err == "simdex info: interrupted\n"
