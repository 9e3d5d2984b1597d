"""The house: imports go one way (core <- text <- shard; quality above core and text), `import simdex` loads the
core only, and the text wing reaches `Index` through its companion hook (save carries texts, load finds them)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simdex
import simdex.text
from simdex._index import COMPANION_FILES
from simdex._load import load_vectors
from simdex.text.persist import docs_path
from simdex.text.texts import docstore, texts_of
from standin_encoder import HashEncoder

PACKAGE = Path(simdex.__file__).parent
# Modules that sit above every wing: the package facade, the CLI and the FAISS names (read_index is simdex.load).
FACADE = {"__init__", "__main__", "cli", "faiss_compat"}
# What each wing may import at module level (the core is the package's top-level modules outside FACADE).
ALLOWED = {"core": {"core"}, "text": {"core", "text"}, "shard": {"core", "text", "shard"},
           "quality": {"core", "text", "quality"}, "integrations": {"core", "text", "integrations"}}


def _wing(module: str) -> str:
    """"core", "text", "shard", "quality" or "integrations" for a module path relative to the package
    ("text.ingest")."""
    head = module.split(".")[0]
    return head if head in ("text", "shard", "quality", "integrations") else "core"


def _module_level_imports(path: Path, module: str) -> list:
    """(imported simdex module relative to the package, line) for the imports run when the module is imported."""
    tree = ast.parse(path.read_text())
    package = module.split(".")[:-1] if path.name != "__init__.py" or module == "__init__" else module.split(".")
    found = []

    def visit(nodes: list) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # annotations only
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # imported when called, not when the module is
            if isinstance(node, ast.ClassDef):
                visit(node.body)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [h for t in getattr(node, "handlers", []) for h in t.body])
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import transaction` names a module
                    found.append((f"{target}.{alias.name}" if node.module is None else target, node.lineno))
            elif isinstance(node, ast.Import):
                found.extend((a.name[len("simdex."):], node.lineno) for a in node.names if a.name.startswith("simdex."))

    visit(tree.body)
    return [(t.lstrip("."), line) for t, line in found]


def _modules() -> list:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_module_level_imports_only_go_down_the_house():
    wrong = []
    for module, path in _modules():
        if module in FACADE:
            continue
        for target, line in _module_level_imports(path, module):
            if _wing(target) not in ALLOWED[_wing(module)] and target not in ("_core",):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({_wing(module)}) imports {target} "
                             f"({_wing(target)})")
    assert not wrong, "\n".join(wrong)


def test_index_reaches_the_text_wing_only_from_its_forwarding_methods():
    tree = ast.parse((PACKAGE / "_index.py").read_text())
    uses = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("text", "shard",
                                                                                            "quality"):
                    uses.append(func.name)
    assert sorted(uses) == ["add_texts", "monitor", "search_text"]  # forwarding methods only


def test_no_python_file_is_over_about_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 520}
    assert not long, long


def _in_a_fresh_interpreter(code: str) -> dict:
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


_LOADED = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in " \
          "('simdex', 'sqlite3', 'tqdm', 'ray', 'torch', 'matplotlib'))))"


def test_import_simdex_loads_the_core_only(tmp_path):
    index = simdex.Index(4)
    index.add(np.eye(4, dtype=np.float32))
    index.save(tmp_path / "v.simdex")
    loaded = _in_a_fresh_interpreter(f"import simdex; simdex.load({str(tmp_path / 'v.simdex')!r}); " + _LOADED)
    assert not [m for m in loaded if m.split(".")[0] in ("sqlite3", "tqdm", "ray", "torch", "matplotlib")], loaded
    above = [m for m in loaded if m.startswith(("simdex.shard", "simdex.quality"))
             or (m.startswith("simdex.text.") and m != "simdex.text.persist")]
    assert not above, above


def test_lazy_names_resolve_and_every_public_name_works():
    for name in simdex.__all__:
        assert getattr(simdex, name) is not None, name
    assert callable(simdex.ingest) and callable(simdex.evaluate)  # functions, not the modules of the same name
    assert simdex.TextSearchResult is simdex.text.TextSearchResult
    assert issubclass(simdex.FingerprintMismatch, ValueError)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        simdex.nothing_here  # noqa: B018




TEXTS = ["send mail", "sort a list", "fork a process", "read a file"]


def test_the_text_functions_and_the_index_methods_are_one(tmp_path):
    a, b = simdex.Index(8), simdex.Index(8)
    assert simdex.text.add_texts(a, TEXTS, encoder=HashEncoder()).tolist() == [0, 1, 2, 3]
    b.add_texts(TEXTS, encoder=HashEncoder())
    got = simdex.text.search_text(a, "fork a process", 2)
    same = b.search_text("fork a process", 2, keywords="process")
    assert got.ids[0] == same.ids[0] == 2 and got[0].text == same[0].text == "fork a process"
    assert "docs" in a._companions and set(a._companions) <= set(COMPANION_FILES)


def test_texts_travel_with_save_even_when_no_text_method_was_called(tmp_path):
    index = simdex.Index(8)
    index.add_texts(TEXTS, encoder=HashEncoder())
    index.save(tmp_path / "a.simdex")
    simdex.load(tmp_path / "a.simdex").save(tmp_path / "b.simdex")  # loaded and saved elsewhere, texts untouched
    os.remove(tmp_path / "a.simdex")
    os.remove(docs_path(tmp_path / "a.simdex"))
    again = simdex.load(tmp_path / "b.simdex")
    assert again._path == str(tmp_path / "b.simdex")
    assert again.search_text("sort a list", 1, encoder=HashEncoder())[0].text == "sort a list"


def test_an_index_read_without_its_companions_keeps_and_finds_its_texts(tmp_path):
    path = tmp_path / "a.simdex"
    index = simdex.Index(8)
    index.add_texts(TEXTS, encoder=HashEncoder())
    index.save(path)
    bare = load_vectors(path)
    assert bare._companions == {}
    bare.save(path)  # over its own file: the store beside it is still its own
    assert os.path.exists(docs_path(path))
    assert texts_of(bare).store is not None and docstore(bare).count() == (4, 4)  # attached on first use
    simdex.Index(8).save(path)  # another index over it: that store is stale now
    assert not os.path.exists(docs_path(path))
