"""The README's set-up lines agree with what CI installs, and say how to get a CPU-only torch.

A document cannot be run here (no network to the wheel indexes), so this checks what can drift:
the quick-start install is the very command ``.ci/run`` runs first, and the laptop (CPU-only) set-up
pins the same torch version, from PyTorch's CPU wheel index, before installing the project. CI's
only other install is the docs site's extra, kept out of the README's line (a user does not need
mkdocs to use the library).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip_installs(text: str) -> list[list[str]]:
    """Each ``pip install …`` command in shell text, as its arguments without options like ``-q``."""
    out = []
    for line in text.splitlines():
        for part in re.split(r"&&|;", line.split("#")[0]):
            words = shlex.split(part)
            if words[:2] == ["pip", "install"]:
                out.append([w for w in words[2:] if w not in ("-q", "--quiet")])
    return out


def readme_bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def ci_setup() -> list[str]:
    """CI's install of the README set-up: its first ``pip install``. The only others are the docs
    site's tools and the ``gguf`` extra's own step (llama-cpp-python compiles llama.cpp;
    docs/laptop.md says how)."""
    ci = pip_installs((REPO / ".ci" / "run").read_text())
    assert len(ci) == 3, ci
    assert ci[1] == ["-e", ".[docs]"], ci  # the site's tools, in a step of their own
    assert any(w.endswith("gguf]") for w in ci[2]), ci  # llama-cpp-python compiles: its own step
    return ci[0]


def test_quick_start_install_is_what_ci_runs():
    quick_start = pip_installs(readme_bash_blocks()[0])
    assert quick_start == [ci_setup()]


def test_ci_installs_the_proxy_extra_so_the_litellm_proxy_tests_run():
    """tests/test_litellm_proxy.py skips without LiteLLM's proxy: CI's (and the README's) install
    has the ``proxy`` extra, and the gguf step keeps it."""
    ci = pip_installs((REPO / ".ci" / "run").read_text())

    def extras(words: list[str]) -> set[str]:
        spec = next(w for w in words if w.startswith(".["))
        return set(spec[2:-1].split(","))

    assert {"all", "test", "proxy"} <= extras(ci_setup())
    assert extras(ci[2]) == extras(ci_setup()) | {"gguf"}


def test_readme_says_how_to_get_the_cpu_only_torch():
    ci = ci_setup()
    torch_pin = next(w for w in ci if w.startswith("torch=="))
    readme = (REPO / "README.md").read_text()
    # the laptop set-up: the same torch version from PyTorch's CPU index, then the project
    laptop = [b for b in readme_bash_blocks() if CPU_INDEX in b]
    assert laptop, "no set-up block with PyTorch's CPU wheel index"
    installs = pip_installs(laptop[0])
    assert installs[0] == [torch_pin, "--index-url", CPU_INDEX]
    assert installs[1] == [w for w in ci if w != torch_pin]
    # the pin is a version, not a build: PyPI's Linux wheel of that version is the CUDA one
    assert "pins the CPU wheel" not in readme
    assert "CUDA build" in readme
