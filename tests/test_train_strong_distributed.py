"""``aligner train-strong`` under ``torchrun --nproc_per_node 2`` on CPU (gloo DDP), launched as a user would.

DPO, the method with a second (reference) model to place on each rank: both ranks must step in
lockstep as one DDP run, and rank 0 alone writes the final model.
"""
from __future__ import annotations

import json

import pytest

from conftest import rank_reports, torchrun_aligner

pytest.importorskip("trl")


def test_two_process_gloo_dpo_writes_one_model(tmp_path):
    from aligner.data import write_jsonl
    from aligner.data.export import export
    from aligner.train.tiny import make_tiny_corrector

    rows = [{"question": f"Who do I contact about case {i}?", "answer": f"Write to user{i}@example.com.",
             "correction": "Write to [EMAIL]."} for i in range(16)]
    write_jsonl(rows, tmp_path / "gen.jsonl")
    export(tmp_path / "gen.jsonl", tmp_path / "dpo.jsonl", "dpo")
    base = make_tiny_corrector(tmp_path / "base", [f"User: {r['question']}\nAssistant: {r['answer']} {r['correction']}"
                                                   for r in rows], "causal", vocab_size=300, context=128,
                               hidden_size=32, layers=1, heads=2)
    out = tmp_path / "out"
    stdout = torchrun_aligner(["train-strong",
           "--method", "dpo", "--data", str(tmp_path / "dpo.jsonl"), "--base-model", str(base),
           "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2", "--effective-batch-size", "8",
           "--max-length", "128", "--learning-rate", "1e-3", "--logging-steps", "1", "--save-steps", "1000",
           "--no-progress", "--no-bf16", "--ddp-backend", "gloo"])

    ranks = rank_reports(out)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["parallel_mode"] == "distributed" for r in ranks), ranks
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "done" and state["method"] == "dpo"
    assert state["world_size"] == 2 and state["gradient_accumulation"] == 2      # 2 × 2 procs × 2 = 8
    models = [p for p in out.rglob("model.safetensors") if "checkpoints" not in p.parts]
    assert models == [out / "model.safetensors"]
    assert "DPO model saved to" in stdout and stdout.count("DPO model saved to") == 1
