"""Shared fixtures: tiny real models saved to disk, loaded back the way a hub id is."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest_plugins = ["fixtures_openai", "fixtures_postgres"]

REPO = Path(__file__).resolve().parents[1]
from hh_data import REAL_HH as HH_RLHF  # noqa: E402  ($ALIGNER_HH_RLHF, else ../shared/data/…, else None)


def corpus_texts(limit: int = 300) -> list[str]:
    """Real text to train tiny tokenizers on (HH-RLHF rows when present, else a fixed sample)."""
    texts = ["How do I bake bread? Mix flour, water, salt and yeast, then bake at 220 C.",
             "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it "
             "more helpful and harmless: | ASSISTANT: ##Question: ##Answer: ##Correction:"]
    if HH_RLHF is not None:
        with gzip.open(HH_RLHF, "rt") as fh:
            for i, line in enumerate(fh):
                if i >= limit:
                    break
                row = json.loads(line)
                texts += [row["chosen"], row["rejected"]]
    return texts


def write_rows(path: Path, rows: list[dict]) -> Path:
    """``rows`` as a JSONL file at ``path`` (a job's input, written as a user would)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file (a job's output), blank lines skipped."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released): a connection to it is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_aligner(args: list[str], timeout: float = 300) -> str:
    """Run ``torchrun --standalone --nproc_per_node 2 -m aligner ARGS`` as a user would (CPU, one
    thread a rank) in its own process group, so a hang cannot orphan workers; its stdout. A hang or
    a non-zero exit fails the test with the output's tail."""
    import signal
    import subprocess

    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "aligner", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout:g} s:\n" + stdout[-2000:] + stderr[-2000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def rank_reports(out: Path) -> list[dict]:
    """Each rank's report (``ranks/rank-N.json``) of a distributed run into ``out``, by rank."""
    return sorted((json.loads(p.read_text()) for p in (out / "ranks").glob("rank-*.json")), key=lambda r: r["rank"])


@pytest.fixture(scope="session")
def tiny_causal_path(tmp_path_factory) -> Path:
    from aligner.train.tiny import make_tiny_corrector

    return make_tiny_corrector(tmp_path_factory.mktemp("tiny-llama"), corpus_texts(), "causal",
                               context=512, template="aligner-v1.0", init_scale=10.0)


@pytest.fixture(scope="session")
def tiny_seq2seq_path(tmp_path_factory) -> Path:
    from aligner.train.tiny import make_tiny_corrector

    return make_tiny_corrector(tmp_path_factory.mktemp("tiny-t5"), corpus_texts(), "seq2seq", init_scale=10.0)
