"""The package's layering contracts (issue 22 item 2): import-linter, run as ``.ci/run`` runs it.

``[tool.importlinter]`` in ``pyproject.toml`` says applications > jobs > core > providers > runtime >
contracts and no
import cycles between sibling modules; ``.ci/lint_imports.py`` runs ``lint-imports`` on the package
laid out as installed. The suite runs the real tool on the real sources, and on a copy of the
layout with one import added against the layers, which it must catch.
"""
from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def runner():
    spec = importlib.util.spec_from_file_location("lint_imports", REPO / ".ci" / "lint_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_layering_contracts_hold(tmp_path):
    run = runner()
    view = run.build_view(REPO, tmp_path)
    # the installed names: the sub-packages pyproject.toml maps from other folders are inside aligner/
    assert (view / "aligner" / "adapters" / "base.py").resolve() == REPO / "adapters" / "base.py"
    assert (view / "aligner" / "train" / "commands.py").resolve() == REPO / "train" / "commands.py"
    out = run.lint(view, REPO / "pyproject.toml")
    assert out.returncode == 0, out.stdout + out.stderr
    kept = re.findall(r"^(.*) KEPT", out.stdout, re.M)
    assert kept == ["Layers: applications > jobs > core > providers > runtime > contracts",
                    "No import cycles between sibling modules"]
    assert "Contracts: 2 kept, 0 broken." in out.stdout
    # every module is counted, aligner.adapters and aligner.train included (117 files on 7 Dec 2026)
    assert int(re.search(r"Analyzed (\d+) files", out.stdout).group(1)) > 100


def test_an_import_against_the_layers_is_caught(tmp_path):
    """The guard (runtime) importing the wrapped client (an application) breaks both contracts: a
    layer importing one above it, and a cycle (the wrapped client reaches the guard through the
    core and the correctors)."""
    run = runner()
    view = run.build_view(REPO, tmp_path)
    folder = view / "aligner" / "runtime"
    if folder.is_symlink():  # a folder of links in place of the folder's link, so the sources stay untouched
        real = folder.resolve()
        folder.unlink()
        folder.mkdir()
        for entry in real.iterdir():
            (folder / entry.name).symlink_to(entry)
    guard = folder / "guard.py"
    text = guard.read_text()
    guard.unlink()  # a real file in place of the link
    guard.write_text(text + "\n\ndef _late():\n    from ..integrations.wrapped_client import wrap\n    return wrap\n")
    out = run.lint(view, REPO / "pyproject.toml")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Contracts: 0 kept, 2 broken." in out.stdout
    assert "aligner.runtime is not allowed to import aligner.integrations:" in out.stdout
    assert "- aligner.runtime.guard -> aligner.integrations.wrapped_client (l." in out.stdout
    assert "No cycles are allowed in aligner." in out.stdout


def test_no_import_is_excused():
    """The folders follow the layers, so no contract needs an exception: an ``ignore_imports`` entry
    would be a debt to name, and there is none."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert [c["id"] for c in contracts] == ["layers", "acyclic"]
    assert [entry for c in contracts for entry in c.get("ignore_imports", [])] == []
