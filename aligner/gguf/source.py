"""Where llama.cpp's own converter (``convert_hf_to_gguf.py``) is on this machine.

A GGUF file is only useful if the llama.cpp that loads it understands it, so the conversion runs
llama.cpp's own code of the same version as the installed runtime: llama-cpp-python's source
distribution ships it (``vendor/llama.cpp``: the script, its ``conversion`` package and the
``gguf-py`` it is written against). Nothing of it is copied into this project; it is found, in
this order:

1. ``--llama-cpp PATH`` (``to_gguf(llama_cpp=...)``),
2. the ``ALIGNER_LLAMA_CPP`` environment variable,
3. this user's cache, ``$XDG_CACHE_HOME/aligner/llama.cpp/<llama-cpp-python version>``,
4. else fetched into that cache: ``pip download`` of the installed llama-cpp-python version's
   source distribution (the same file ``pip install`` built the runtime from), of which only the
   converter's files are extracted.

PATH may be a llama.cpp checkout (the folder holding ``convert_hf_to_gguf.py``), an unpacked
llama-cpp-python source tree, or its ``.tar.gz``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..contracts.errors import ConfigError, hide_cause

ENV = "ALIGNER_LLAMA_CPP"
SCRIPT = "convert_hf_to_gguf.py"
#: what the converter needs of a llama.cpp tree (everything else is the C++ runtime).
NEEDED = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
_FIX = (f"pass --llama-cpp PATH (or set {ENV}) to a llama.cpp checkout or a llama-cpp-python source "
        "distribution (pip download --no-deps --no-binary :all: llama-cpp-python==VERSION).")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aligner" / "llama.cpp"


def runtime_version() -> str:
    """The installed llama-cpp-python's version (the converter is taken from the same release)."""
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception as exc:  # PackageNotFoundError
        raise hide_cause(ConfigError("llama-cpp-python is not installed.", field="gguf",
                                     fix="pip install 'aligner-kit[gguf]' (builds llama.cpp: needs a C/C++ "
                                         "compiler and cmake, about 10 minutes on 2 cores)."), exc)


def _tree(path: Path) -> Path | None:
    """The llama.cpp folder inside ``path`` (a checkout or a llama-cpp-python source tree), or None."""
    for cand in (path, path / "vendor" / "llama.cpp"):
        if (cand / SCRIPT).is_file() and (cand / "conversion").is_dir():
            return cand
    return None


def _extract(sdist: Path, dest: Path) -> Path:
    """Unpack the converter's files of a llama-cpp-python ``.tar.gz`` into ``dest`` (atomically)."""
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                parts = m.name.split("/", 1)
                rel = parts[1] if len(parts) == 2 else ""
                if not rel.startswith("vendor/llama.cpp/"):
                    continue
                inner = rel[len("vendor/llama.cpp/"):]
                if any(inner == n or (n.endswith("/") and inner.startswith(n)) for n in NEEDED):
                    m.name = inner
                    members.append(m)
            if not any(m.name == SCRIPT for m in members):
                raise ConfigError(f"{sdist} holds no vendor/llama.cpp/{SCRIPT}.", field="llama_cpp", fix=_FIX)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
            tar.extractall(tmp, members=members, **safe)
    except (OSError, tarfile.TarError) as exc:
        raise hide_cause(ConfigError(f"cannot read {sdist}: {exc}.", field="llama_cpp", fix=_FIX), exc)
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _fetch(version: str, dest: Path) -> Path:
    """``pip download`` llama-cpp-python's source distribution and unpack its converter."""
    print(f"fetching llama.cpp's converter: llama-cpp-python=={version} source distribution "
          f"(once; kept in {dest})", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
               "-d", tmp, f"llama-cpp-python=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not sdists:
            last = (done.stderr.strip().splitlines() or ["no file downloaded"])[-1]
            raise ConfigError(f"could not download llama-cpp-python=={version}'s source distribution ({last}).",
                              field="llama_cpp", fix=_FIX)
        return _extract(sdists[0], dest)


def find_converter(explicit: "str | os.PathLike[str] | None" = None, *, fetch: bool = True) -> Path:
    """The llama.cpp folder whose ``convert_hf_to_gguf.py`` converts correctors (see the module doc)."""
    given = explicit or os.environ.get(ENV)
    if given:
        path = Path(given).expanduser()
        origin = "--llama-cpp" if explicit else ENV
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            dest = cache_root() / ("sdist-" + path.name.rsplit(".tar.gz", 1)[0].rsplit(".tgz", 1)[0])
            return _tree(dest) or _extract(path, dest)
        tree = _tree(path) if path.is_dir() else None
        if tree is None:
            raise ConfigError(f"{origin} {given}: no {SCRIPT} with its conversion/ package there.",
                              field="llama_cpp", fix=_FIX)
        return tree
    version = runtime_version()
    dest = cache_root() / version
    tree = _tree(dest)
    if tree is not None:
        return tree
    if not fetch:
        raise ConfigError(f"llama.cpp's converter is not in {dest}.", field="llama_cpp", fix=_FIX)
    return _fetch(version, dest)
