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
from pathlib import Path

import pytest
from processes import stop, wait_for_page

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
        wait_for_page(proc, f"http://127.0.0.1:{port}/", log, 240,
                      ready=lambda status, body: status == 200 and "aligner demo:" in log.read_text())
        time.sleep(1)  # anything printed right after start-up
    finally:
        stop(proc)
    return log.read_text()


FAKE_FRPC = """#!/bin/sh
# Stands in for Gradio's tunnel client (frpc) at the network edge: answers as frpc does, then
# lives as long as the demo that started it.
echo "{line}"
while kill -0 $PPID 2>/dev/null; do sleep 0.5; done
"""


def _fake_tunnel_client(hf_home: Path, line: str) -> dict[str, str]:
    """Environment for a demo whose ``--share`` runs a fake frpc (no network, no download)."""
    import platform

    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()).lower()
    folder = hf_home / "gradio" / "frpc"  # gradio.tunneling.BINARY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / f"frpc_{platform.system().lower()}_{machine}_v0.3"
    binary.write_text(FAKE_FRPC.format(line=line))
    binary.chmod(0o755)
    # a share server address skips Gradio's call to its API server for one
    return {"HF_HOME": str(hf_home), "GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9"}


@pytest.mark.skipif(shutil.which("sh") is None or os.name == "nt", reason="the fake tunnel client is a sh script")
def test_demo_offers_share_flag_instead_of_gradios_hint(tiny_causal_path, tmp_path):
    out = _demo_output(["--corrector", str(tiny_causal_path)], _free_port(), tmp_path)
    assert "share=True" not in out, out  # a hint the CLI user could not act on
    assert "--share" in out

    # --share reaches Gradio's launch: the tunnel comes up and the public link is printed
    args = ["--corrector", str(tiny_causal_path), "--share"]
    env = _fake_tunnel_client(tmp_path / "hf-ok", "start proxy success: https://0123abcd.gradio.live")
    shared = _demo_output(args, _free_port(), tmp_path, env)
    assert "share=True" not in shared
    assert "public link: https://0123abcd.gradio.live" in shared, shared

    # the tunnel fails (no network): said once, and the page is still served locally
    env = _fake_tunnel_client(tmp_path / "hf-fail", "login to server failed: dial tcp 127.0.0.1:9: connection refused")
    failed = _demo_output(args, _free_port(), tmp_path, env)
    assert "Could not create share link" in failed, failed
    assert "no public link could be made" in failed and "public link: https" not in failed


def test_every_model_loader_follows_the_switch(tiny_causal_path, capfd):
    """The corrector and the hf: upstream load through aligner.runtime.progress, which shows the bar only when asked."""
    from aligner.adapters.hf_local import load_causal_lm
    from aligner.correctors.local import LocalCorrector
    from aligner.runtime.progress import quiet_model_loading

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
        quiet_model_loading(True)  # the default


_BUILD = "import sys\nfrom aligner import Aligner\n{before}Aligner(corrector=sys.argv[1]).correct('q?', 'a.')\n"


def test_building_an_aligner_in_python_shows_no_loading_bar_unless_asked(tiny_causal_path):
    """Issue 21 item 10: each ``Aligner(...)`` in a script or notebook drew transformers' "Loading
    weights" bar; the library now hides it by default, as the CLI does, and shows it on request."""
    def stderr(before: str) -> str:
        done = subprocess.run([sys.executable, "-c", _BUILD.format(before=before), str(tiny_causal_path)],
                              capture_output=True, text=True, env=env(), timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "Loading weights" not in stderr("")
    assert "Loading weights" in stderr("from aligner.runtime.progress import quiet_model_loading\nquiet_model_loading(False)\n")


def test_train_prints_training_progress_without_library_noise(tmp_path):
    """Issue 21 item 10: every ``aligner train`` printed transformers' ``gradient_checkpointing``
    FutureWarning and trl's datasets bars over the already tokenised rows; the training bar stays."""
    from conftest import corpus_texts

    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate
    from aligner.train.tiny import make_tiny_corrector

    base = make_tiny_corrector(tmp_path / "base", corpus_texts(50), "causal", vocab_size=512, context=256,
                               hidden_size=32, layers=1, heads=2)
    data = tmp_path / "train.jsonl"
    write_jsonl([r.to_dict() for r in generate(8, seed=0)], data)
    args = ["train", "--data", str(data), "--base-model", str(base), "--output-dir", str(tmp_path / "out"),
            "--max-steps", "2", "--batch-size", "4", "--effective-batch-size", "4", "--max-length", "256",
            "--no-bf16", "--logging-steps", "1", "--save-steps", "1000", "--gradient-checkpointing", "--lora"]
    done = run(args, timeout=600)
    assert "Warning" not in done.stderr, done.stderr  # FutureWarning (gradient_checkpointing), UserWarning, ...
    assert "Truncating train dataset" not in done.stderr and "Dropping fully masked" not in done.stderr
    assert "2/2" in done.stderr  # the training bar
    assert (tmp_path / "out" / "config.json").is_file()
