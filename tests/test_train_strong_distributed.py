"""``aligner train-strong`` under ``torchrun --nproc_per_node 2`` on CPU (gloo DDP), launched as a user would.

DPO, the method with a second (reference) model to place on each rank: both ranks must step in
lockstep as one DDP run, and rank 0 alone writes the final model.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")


def test_two_process_gloo_dpo_writes_one_model(tmp_path):
    from aligner.data import write_jsonl
    from aligner.data.export import export
    from aligner.tiny import make_tiny_corrector

    rows = [{"question": f"Who do I contact about case {i}?", "answer": f"Write to user{i}@example.com.",
             "correction": "Write to [EMAIL]."} for i in range(16)]
    write_jsonl(rows, tmp_path / "gen.jsonl")
    export(tmp_path / "gen.jsonl", tmp_path / "dpo.jsonl", "dpo")
    base = make_tiny_corrector(tmp_path / "base", [f"User: {r['question']}\nAssistant: {r['answer']} {r['correction']}"
                                                   for r in rows], "causal", vocab_size=300, context=128,
                               hidden_size=32, layers=1, heads=2)
    out = tmp_path / "out"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "aligner", "train-strong",
           "--method", "dpo", "--data", str(tmp_path / "dpo.jsonl"), "--base-model", str(base),
           "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--effective-batch-size", "8",
           "--max-length", "128", "--learning-rate", "1e-3", "--logging-steps", "1", "--save-steps", "1000",
           "--no-progress", "--no-bf16", "--ddp-backend", "gloo"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)     # its own process group: a hang cannot orphan workers
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun did not finish within 300 s:\n" + stdout[-2000:] + stderr[-2000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]

    ranks = sorted((json.loads(p.read_text()) for p in (out / "ranks").glob("rank-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["parallel_mode"] == "distributed" for r in ranks), ranks
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "done" and state["method"] == "dpo"
    assert state["world_size"] == 2 and state["gradient_accumulation"] == 2      # 2 × 2 procs × 2 = 8
    models = [p for p in out.rglob("model.safetensors") if "checkpoints" not in p.parts]
    assert models == [out / "model.safetensors"]
    assert "DPO model saved to" in stdout and stdout.count("DPO model saved to") == 1
