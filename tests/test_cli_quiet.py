"""What a user sees on stderr from the real ``aligner`` command: no library noise by default.

Each test runs the console script in a subprocess (the output a user reads is exactly what is
checked): transformers' "Loading weights" bar only with ``--verbose``, the truncation warning
once, and ``aligner demo`` offering ``--share`` instead of Gradio's "set share=True" hint.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

EXE = Path(sys.executable).with_name("aligner")
ALIGNER = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "aligner.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(ALIGNER + args, capture_output=True, text=True, env=env(), timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def test_loading_weights_bar_only_with_verbose(tiny_causal_path):
    args = ["correct", "How do I bake bread?", "--answer", "Mix flour and water.", "--corrector",
            str(tiny_causal_path), "--max-new-tokens", "4"]
    quiet = run(args)
    assert "Loading weights" not in quiet.stderr and "it/s]" not in quiet.stderr, quiet.stderr
    assert quiet.stdout.strip()  # the correction is still printed
    loud = run(["--verbose"] + args)
    assert "Loading weights" in loud.stderr


def test_truncation_warning_prints_once(tiny_causal_path):
    done = run(["correct", "q?", "--answer", "word " * 2000, "--corrector", str(tiny_causal_path),
                "--max-new-tokens", "4"])
    assert done.stderr.count("answer truncated from") == 1, done.stderr
    # transformers' own "indexing errors" alarm about the untruncated count is noise: the answer is cut
    assert "indexing errors" not in done.stderr and "UserWarning" not in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_output(args: list[str], port: int, tmp_path: Path, extra_env: dict[str, str] | None = None) -> str:
    """Start ``aligner demo``, wait until its page answers, stop it; everything it printed."""
    log = tmp_path / f"demo-{port}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(ALIGNER + ["demo", "--port", str(port)] + args, stdout=fh, stderr=subprocess.STDOUT,
                                env={**env(), **(extra_env or {})}, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200
                if "aligner demo:" in log.read_text():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        time.sleep(1)  # anything printed right after start-up
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return log.read_text()


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_demo_offers_share_flag_instead_of_gradios_hint(tiny_causal_path, tmp_path):
    out = _demo_output(["--corrector", str(tiny_causal_path)], _free_port(), tmp_path)
    assert "share=True" not in out, out  # a hint the CLI user could not act on
    assert "--share" in out

    # --share reaches Gradio's launch: it asks for a tunnel. No network here, so it fails, says so,
    # and the page is still served locally.
    shared = _demo_output(["--corrector", str(tiny_causal_path), "--share"], _free_port(), tmp_path,
                          {"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9"})
    assert "share=True" not in shared
    assert "Could not create share link" in shared, shared
    assert "no public link" in shared


def test_every_model_loader_follows_the_switch(tiny_causal_path, capfd):
    """The corrector and the hf: upstream load through aligner.progress; the library default shows the bar."""
    from aligner.adapters.hf_local import load_causal_lm
    from aligner.correctors.local import LocalCorrector
    from aligner.progress import quiet_model_loading

    loaders = (lambda: LocalCorrector.from_pretrained(str(tiny_causal_path)),
               lambda: load_causal_lm(str(tiny_causal_path)))
    try:
        for quiet in (True, False):
            quiet_model_loading(quiet)
            for load in loaders:
                capfd.readouterr()
                load()
                assert ("Loading weights" in capfd.readouterr().err) is not quiet
    finally:
        quiet_model_loading(False)
