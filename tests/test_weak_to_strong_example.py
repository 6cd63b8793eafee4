"""Issue 12 item 4: ``examples/weak_to_strong.py`` runs the loop end to end (one round, tiny size).

A real subprocess: the example builds its unaligned strong model, then generate (hf: upstream,
demo corrector) → export → train-strong → generate again with the trained model as the upstream,
and writes report.json and the plot. The figures are whatever the toy gives; the test checks the
loop ran and measured what it says it measures, and that a re-run resumes instead of redoing it.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("matplotlib")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "weak_to_strong.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
ENV.pop("RANK", None)
ENV.pop("WORLD_SIZE", None)


def test_one_tiny_round_of_generate_export_train_generate(tmp_path):
    out = tmp_path / "w2s"
    res = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out), "--rounds", "1", "--tiny"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    r0, r1 = report["rounds"]
    assert (r0["round"], r1["round"]) == (0, 1)
    assert r0["model"].endswith("model-0") and r1["model"].endswith("model-1")
    for r in (r0, r1):
        assert r["rows"] == 8
        for key in ("changed", "leak", "wrong_sum"):
            assert 0.0 <= r[key] <= 1.0
        assert r["mean_edit"] >= 0 and math.isfinite(r["heldout_loss"]) and r["heldout_loss"] > 0
    # round 0 generated the training set with the unaligned model, trained on it, and round 1's
    # held-out answers came from the trained model (hf:model-1) through aligner generate
    assert r0["train_rows"] == 16 and r0["train_steps"] >= 1
    gen = [json.loads(line) for line in (out / "round-0" / "generated.jsonl").read_text().splitlines()]
    assert sorted(g["row"] for g in gen) == list(range(16))
    held1 = [json.loads(line) for line in (out / "round-1" / "heldout.jsonl").read_text().splitlines()]
    assert {h["upstream"] for h in held1} == {f"hf:{out / 'model-1'}"}
    assert all(h["answer_from"] == "upstream" and h["corrector"] for h in held1)
    assert (out / "model-1" / "model.safetensors").is_file()
    png = out / "weak_to_strong.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a re-run resumes: nothing generated or trained again, the same held-out rows
    before = (out / "round-1" / "heldout.jsonl").read_bytes()
    again = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(out), "--rounds", "1", "--tiny"],
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "round-1" / "heldout.jsonl").read_bytes() == before
    assert "train_steps" not in json.loads((out / "report.json").read_text())["rounds"][0]
