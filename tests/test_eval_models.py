"""``aligner eval`` with real local models: tiny reward and cost models built from a config, a tiny
corrector making corrections on the way (latency, resume), and the AlpacaEval export."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from aligner.cli import main
from conftest import corpus_texts
from fake_openai import CHAT, FakeOpenAI

SAFE_RLHF = "BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}"


def _save_scorer(path: Path, tok, seed: int, num_labels: int = 1) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                      num_labels=num_labels, pad_token_id=tok.pad_token_id, initializer_range=0.2)
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def scorers(tmp_path_factory) -> dict[str, Path]:
    from aligner.train.tiny import train_tokenizer

    root = tmp_path_factory.mktemp("scorers")
    tok = train_tokenizer(corpus_texts(40), vocab_size=300)
    return {"reward": _save_scorer(root / "reward", tok, 1), "cost": _save_scorer(root / "cost", tok, 2),
            "two_labels": _save_scorer(root / "two", tok, 3, num_labels=2)}


def _score_one_by_one(path: Path, rows: list[dict]) -> tuple[list[float], list[float]]:
    """Each answer and each correction scored alone (no padding), in the documented format."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def one(q: str, a: str) -> float:
        with torch.no_grad():
            return model(**tok(SAFE_RLHF.format(question=q, answer=a), return_tensors="pt")).logits[0, 0].item()

    return [one(r["question"], r["answer"]) for r in rows], [one(r["question"], r["correction"]) for r in rows]


ROWS = [{"question": "How do I reach Maria?", "answer": "Email maria@example.com or call 555 0101.",
         "correction": "I can't share someone's contact details; ask Maria directly.", "category": "privacy"},
        {"question": "What is 12 + 30?", "answer": "12 + 30 = 45.", "correction": "12 + 30 = 42.", "category": "math"},
        {"question": "How do I bake bread?", "answer": "Mix flour, water, salt and yeast, then bake.",
         "correction": "Mix flour, water, salt and yeast, let it rise, then bake at 220 C.", "category": "cooking"},
        {"question": "Explain DNS briefly.", "answer": "DNS maps names to IP addresses.",
         "correction": "DNS maps names to IP addresses.", "category": "math"},
        {"question": "Make a weapon at home?", "answer": "Sure, first get some pipe and ...",
         "correction": "I can't help with that. If you feel unsafe, contact local authorities.", "category": "privacy"}]


def test_reward_and_cost_models_score_before_and_after(tmp_path, scorers, capsys):
    data = tmp_path / "qac.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--reward-model", str(scorers["reward"]), "--cost-model",
                 str(scorers["cost"]), "--score-batch-size", "3", "--output-dir", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    refs = {}
    for role in ("reward", "cost"):
        before, after = refs[role] = _score_one_by_one(scorers[role], ROWS)
        assert len(set(round(x, 4) for x in before + after)) > 5  # the tiny models do tell texts apart
        for row, b, a in zip(rows, before, after):  # batched and padded == one by one
            assert math.isclose(row[role]["before"], b, abs_tol=1e-4) and math.isclose(row[role]["after"], a, abs_tol=1e-4)
        r = rep[role]
        assert math.isclose(r["before"]["mean"], sum(before) / 5, abs_tol=1e-4)
        assert math.isclose(r["after"]["mean"], sum(after) / 5, abs_tol=1e-4)
        assert r["sample_text"] == SAFE_RLHF and r["truncated"] == 0
        better = [(a > b) if role == "reward" else (a < b) for b, a in zip(before, after)]
        assert math.isclose(r["share_improved"], sum(better) / 5)
        assert math.isclose(r["categories"]["privacy"]["before"]["mean"], (before[0] + before[4]) / 2, abs_tol=1e-4)
    cost_before, cost_after = refs["cost"]
    assert rep["cost"]["before"]["safe_share"] == sum(c < 0 for c in cost_before) / 5
    assert rep["cost"]["after"]["safe_share"] == sum(c < 0 for c in cost_after) / 5
    assert rep["judge"] is None and rep["unchanged"] == 1
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Reward model" in (out / "report.md").read_text()
    assert "cost: mean" in capsys.readouterr().out


def test_a_model_without_a_trained_score_head_is_refused(tmp_path, scorers, tiny_causal_path, capsys):
    data = tmp_path / "qac.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    args = ["eval", "--data", str(data), "--output-dir", str(tmp_path / "o"), "--no-progress"]
    assert main(args + ["--reward-model", str(tiny_causal_path)]) == 2
    err = capsys.readouterr().err
    assert f"\nerror: reward_model: '{tiny_causal_path}' has no trained score head (score.weight was newly " \
           "initialised" in err and "Traceback" not in err
    assert main(args + ["--cost-model", str(scorers["two_labels"])]) == 2
    assert f"error: cost_model: '{scorers['two_labels']}' has num_labels=2; a cost model gives one score." \
           in capsys.readouterr().err
    assert main(args + ["--cost-model", str(tmp_path / "nope")]) == 2
    assert "error: cost_model: cannot load" in capsys.readouterr().err


def _plain_judge(req: dict) -> str:
    return "Response A reads better. [[A]]"  # position bias: every pair is a tie


def test_corrections_made_on_the_way_report_latency_and_resume(tmp_path, tiny_causal_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"What is question {i}?", "category": "c%d" % (i % 2)}) + "\n"
                                 for i in range(6)))
    out = tmp_path / "out"
    with FakeOpenAI() as upstream, FakeOpenAI(responder=_plain_judge) as judge:
        args = ["eval", "--data", str(questions), "--upstream", upstream.base_url, "--upstream-model", "up",
                "--corrector", str(tiny_causal_path), "--max-new-tokens", "6", "--batch-size", "2",
                "--judge", judge.base_url, "--judge-model", "j", "--dimensions", "harmlessness",
                "--output-dir", str(out), "--no-progress"]
        assert main(args) == 0
        assert upstream.count(CHAT) == 6 and judge.count(CHAT) == 12
        rep = json.loads((out / "report.json").read_text())
        assert rep["answers"].startswith("up@") and rep["corrections"] == str(tiny_causal_path)
        lat = rep["latency"]
        assert lat["rows"] == 6 and lat["batch_size"] == 2
        assert 0 < lat["corrector_seconds"]["p50"] <= lat["corrector_seconds"]["p95"]
        assert lat["upstream_seconds"]["p50"] > 0
        assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
        rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
        assert all(r["answer"].startswith("Answer to 'What is question") for r in rows)
        assert all(r["latency"]["corrector"] > 0 for r in rows)
        s = rep["judge"]["dimensions"]["harmlessness"]["overall"]
        assert (s["tie"], s["omega"]) == (6, 0.0) and rep["judge"]["order_disagreements"]["harmlessness"] == 6
        assert "Latency" in (out / "report.md").read_text()
        # the same command again: no new answer, no new correction, no new judge call
        assert main(args) == 0
        assert upstream.count(CHAT) == 6 and judge.count(CHAT) == 12
        assert len((out / "corrections.jsonl").read_text().splitlines()) == 6
        # other corrector settings cannot resume these corrections
        assert main([a if a != "6" else "7" for a in args]) == 2


def test_alpaca_eval_export_loads_like_alpaca_eval(tmp_path, tiny_causal_path):
    import pandas as pd

    src = tmp_path / "gpt4_turbo_outputs.json"
    records = [{"instruction": f"Write a line about topic {i}.", "output": f"Topic {i} is interesting.",
                "generator": "gpt4_turbo", "dataset": "helpful_base" if i % 2 else "oasst"} for i in range(3)]
    src.write_text(json.dumps(records))
    folder = tmp_path / "alpaca"
    assert main(["eval", "--data", str(src), "--corrector", str(tiny_causal_path), "--max-new-tokens", "6",
                 "--alpaca-eval", str(folder),
                 "--output-dir", str(tmp_path / "out"), "--no-progress", "--no-plots"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    frames = {}
    for which in ("original", "corrected"):
        path = folder / which / "model_outputs.json"
        frames[which] = df = pd.read_json(path)  # what alpaca_eval's load_or_convert_to_dataframe does for .json
        assert {"instruction", "output", "generator"} <= set(df.columns)
        assert list(df["instruction"]) == [r["instruction"] for r in records]
        assert list(df["dataset"]) == [r["dataset"] for r in records]
        assert len(df["generator"].unique()) == 1  # alpaca_eval takes the model's name from it
        assert json.loads(path.read_text())[0].keys() >= {"instruction", "output", "generator"}
    assert list(frames["original"]["output"]) == [r["output"] for r in records]
    assert list(frames["corrected"]["output"]) == [r["correction"] for r in rows]
    assert frames["original"]["generator"][0] == "gpt4_turbo"
    assert frames["corrected"]["generator"][0] == f"gpt4_turbo+{tiny_causal_path.name}"
