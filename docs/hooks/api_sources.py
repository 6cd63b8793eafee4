"""MkDocs hook: lay the package out as it is installed, so mkdocstrings can read it from source.

Why: ``pyproject.toml`` installs ``adapters/`` as ``aligner.adapters`` and ``train/`` as
``aligner.train`` (``[tool.setuptools] package-dir``). A static reader of the ``aligner/`` folder
cannot find those two, so ``aligner.adapters.Upstream`` would not resolve. Before any page is
rendered this hook builds ``build/api-src/`` — a copy of the Python sources laid out under their
installed names (a copy, not links: the reader resolves links back to the folders they point at) —
which ``mkdocs.yml`` gives the Python handler as its search path. It reads the
mapping from ``pyproject.toml`` itself, so a package moved there is followed here.
"""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "build" / "api-src"


def package_dirs() -> dict[str, Path]:
    """Installed package name → the folder it comes from, as pyproject.toml's package-dir says."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in setuptools.get("package-dir", {}).items()}


def _not_python(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not Path(folder, n).is_dir())]


def build_tree() -> Path:
    """``build/api-src/<package>/…``: each package-dir's ``.py`` files, sub-packages copied in place."""
    shutil.rmtree(TREE, ignore_errors=True)
    for name, source in sorted(package_dirs().items(), key=lambda kv: kv[0].count(".")):
        shutil.copytree(source, TREE.joinpath(*name.split(".")), ignore=_not_python, dirs_exist_ok=True)
    return TREE


@event_priority(100)  # before mkdocstrings' own on_config, which keeps only search paths that exist
def on_config(config: Any, **kwargs: Any) -> Any:
    build_tree()
    return config
