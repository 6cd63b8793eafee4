"""Scale-out: ``aligner train`` under ``torchrun --nproc_per_node 2`` on CPU (gloo DDP).

Launched exactly as a user would (``torchrun -m aligner train ...``), on a tiny model and tiny data.
Checks that both ranks trained, saw the same number of optimizer steps, and that exactly one final
model was written (rank 0 saves; the others must not race it).
"""
from __future__ import annotations

import json

import pytest

from conftest import corpus_texts, rank_reports, torchrun_aligner

pytest.importorskip("trl")


def test_two_process_gloo_training_writes_one_model(tmp_path):
    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate
    from aligner.train.tiny import make_tiny_corrector

    rows = generate(32, seed=0)
    data = tmp_path / "train.jsonl"
    write_jsonl([r.to_dict() for r in rows], data)
    base = make_tiny_corrector(tmp_path / "base", corpus_texts(60) + [r.correction for r in rows], "causal",
                               vocab_size=384, context=512, hidden_size=64, layers=2)
    out = tmp_path / "out"
    torchrun_aligner(["train",
           "--data", str(data), "--base-model", str(base), "--output-dir", str(out), "--max-steps", "3",
           "--batch-size", "2", "--effective-batch-size", "8", "--max-length", "512", "--learning-rate", "1e-3",
           "--logging-steps", "1", "--save-steps", "1000", "--no-progress", "--no-bf16", "--ddp-backend", "gloo"])

    ranks = rank_reports(out)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 for r in ranks)
    assert all(r.get("parallel_mode") == "distributed" for r in ranks), ranks   # real DDP, not 2 lone runs
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3      # both stepped in lockstep
    state = json.loads((out / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["gradient_accumulation"] == 2   # 2 × 2 procs × 2 = 8
    models = [p for p in out.rglob("model.safetensors") if "checkpoints" not in p.parts]
    assert models == [out / "model.safetensors"]
    assert json.loads((out / "aligner_config.json").read_text())["template"] == "aligner-v1.0"
