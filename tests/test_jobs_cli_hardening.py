"""Issue 10, items 11-18: batch jobs (failed rows, resume identity, up-front checks) and CLI/library errors.

Everything talks to real components: the fake OpenAI server on 127.0.0.1 (as the upstream and,
over /v1/completions, as a remote corrector, so most runs need no torch model), the real
``aligner`` command in a subprocess where exit codes and stderr are the point, and real litellm.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fake_openai import CHAT, COMPLETIONS, FakeOpenAI, request_text

from aligner.cli import main
from aligner.errors import ConfigError, UpstreamError

ALIGNER = [sys.executable, "-m", "aligner.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _run(args: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(ALIGNER + args, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_answers(n: int, prefix: str = "Question") -> list[dict]:
    return [{"question": f"{prefix} {i}?", "answer": f"Answer {i}."} for i in range(n)]


# ----------------------------------------------------------------------------- item 11


# ----------------------------------------------------------------------------- item 12

def _file_run(src: Path, out: Path, corrector: str, *extra: str) -> int:
    return main(["correct", "--input", str(src), "--output", str(out), "--corrector", corrector, *extra])


# ----------------------------------------------------------------------------- item 13


# ----------------------------------------------------------------------------- item 14


# ----------------------------------------------------------------------------- item 15


# ----------------------------------------------------------------------------- item 16


# ----------------------------------------------------------------------------- item 17


# ----------------------------------------------------------------------------- item 18


def test_cli_errors_for_a_missing_corrector_and_an_unreachable_upstream_are_short(tiny_causal_path):
    res = _run(["correct", "Q", "--answer", "A", "--corrector", "/nonexistent"])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    assert "cannot load corrector '/nonexistent'" in res.stderr

    url = f"http://127.0.0.1:{_closed_port()}/v1"
    res = _run(["correct", "Q", "--upstream", url, "--upstream-model", "m", "--corrector", str(tiny_causal_path)])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "cannot reach the upstream" in res.stderr.strip().splitlines()[-1]
    assert len(res.stderr.strip().splitlines()) <= 8


_PY_MISSING_CORRECTOR = "from aligner import Aligner\nAligner(corrector='/nonexistent')\n"
_PY_UNREACHABLE = ("import sys\nfrom aligner import Aligner\nfrom aligner.adapters.base import RetryPolicy\n"
                   "Aligner(sys.argv[1], sys.argv[2], upstream_model='m', retry=RetryPolicy(max_retries=0)).correct('q')\n")


def test_python_api_errors_keep_the_message_without_the_library_chain(fake_openai):
    """An uncaught AlignerError in a user's script: the message, not 40 lines of transformers/httpx."""
    res = subprocess.run([sys.executable, "-c", _PY_MISSING_CORRECTOR], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1
    assert "ConfigError: corrector: cannot load corrector '/nonexistent'" in res.stderr
    assert "The above exception" not in res.stderr and "During handling" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 14, res.stderr  # 44 lines with the chain

    url = f"http://127.0.0.1:{_closed_port()}/v1"
    res = subprocess.run([sys.executable, "-c", _PY_UNREACHABLE, url, fake_openai.base_url], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "UpstreamError: upstream:" in res.stderr and "cannot reach the upstream" in res.stderr
    assert "The above exception" not in res.stderr and "During handling" not in res.stderr
    assert "httpcore" not in res.stderr and len(res.stderr.strip().splitlines()) <= 20, res.stderr


def test_the_library_exception_stays_on_the_error_for_debugging():
    from aligner import Aligner

    with pytest.raises(ConfigError) as e:
        Aligner(corrector="/nonexistent")
    assert isinstance(e.value.cause, OSError)
