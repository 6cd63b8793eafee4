"""Run import-linter (``lint-imports``) on the ``aligner`` package as it is installed.

Why not plain ``lint-imports`` in the repository: ``pyproject.toml`` installs ``adapters/`` as
``aligner.adapters`` and ``train/`` as ``aligner.train`` (``[tool.setuptools] package-dir``), and
import-linter reads the package's folder, where those two are not. So this lays the package out
under its installed names in a temporary folder — symbolic links to the sources, nothing copied
(the docs hook ``docs/hooks/api_sources.py`` copies instead: griffe resolves links back) — and runs
``lint-imports`` there with the repository's ``pyproject.toml`` (``[tool.importlinter]``).

    python .ci/lint_imports.py [LINT-IMPORTS OPTIONS]     # exit status: lint-imports' own
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_view(repo: Path, dest: Path) -> Path:
    """``dest/<package>/…`` as installed: each package-dir's entries linked in, sub-packages inside
    their parents (``dest/aligner/adapters`` -> ``repo/adapters``). Returns ``dest``."""
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    for name, folder in sorted(package_dirs.items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*name.split("."))
        if target.is_symlink():  # a sub-package that is also an entry of its parent's folder
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted((repo / folder).iterdir()):
            link = target / entry.name
            if entry.name != "__pycache__" and not link.exists():
                link.symlink_to(entry)
    return dest


def lint(view: Path, config: Path, *options: str) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``view`` (so ``aligner`` is found there first), no cache written."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(view)}
    out = subprocess.run([exe, "--no-cache", "--config", str(config), *options], cwd=view, env=env,
                         capture_output=True, text=True, timeout=300)
    # import-linter colours its report even into a pipe: plain text for logs and for the tests
    out.stdout, out.stderr = (re.sub(r"\x1b\[[0-9;]*m", "", text) for text in (out.stdout, out.stderr))
    return out


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="aligner-lint-imports-") as tmp:
        out = lint(build_view(REPO, Path(tmp)), REPO / "pyproject.toml", *argv)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    return out.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
