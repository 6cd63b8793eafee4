"""``aligner train-gate`` on hand-written PKU-SafeRLHF rows (issue 24): the held-out loss falls, the
calibrated threshold meets the target recall on the held-out answers, the saved gate loads back
through ``from_pretrained`` and routes an Aligner; bad rows are errors naming file, row and field."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from aligner import Aligner, cli
from aligner.data.pku_saferlhf import HARM_CATEGORIES, load_labelled
from aligner.contracts.errors import ConfigError, DataError
from aligner.gates import load_gate
from aligner.gates.classifier import ClassifierGate
from aligner.train.config import GateTrainConfig
from conftest import write_rows
from gate_helpers import RecordingCorrector, pku_row

#: hand-written: harmful requests with a compliant answer (its categories and severity) and a refusal,
#: and everyday questions with two fine answers (tests/data/pku-gate-rows.yaml)
ROWS = [pku_row(**row) for row in
        yaml.safe_load((Path(__file__).parent / "data" / "pku-gate-rows.yaml").read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def encoder_base(tmp_path_factory):
    from aligner.train.tiny import make_tiny_encoder

    texts = [f"{r['prompt']} {r['response_0']} {r['response_1']}" for r in ROWS]
    return make_tiny_encoder(tmp_path_factory.mktemp("encoder"), texts, vocab_size=400, hidden_size=48, layers=2,
                             heads=4, context=128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, encoder_base):
    """A gate trained by the CLI, as a user runs it (``--base`` / ``--out`` as the issue spells them)."""
    work = tmp_path_factory.mktemp("gate-run")
    data = write_rows(work / "pku.jsonl", ROWS * 4)  # four passes' worth of rows; the split is by row
    held = write_rows(work / "held.jsonl", ROWS[::3])
    out = work / "gate"
    code = cli.main(["train-gate", "--data", str(data), "--eval-data", str(held), "--base", str(encoder_base),
                     "--out", str(out), "--epochs", "4", "--learning-rate", "3e-3", "--batch-size", "8",
                     "--effective-batch-size", "8", "--max-length", "128", "--target-recall", "0.95",
                     "--logging-steps", "4", "--eval-steps", "12", "--torch-threads", "1", "--no-progress",
                     "--save-steps", "1000"])
    assert code == 0
    return out, json.loads((out / "gate_report.json").read_text())


def test_held_out_loss_falls_and_the_report_has_every_measure(trained):
    out, report = trained
    assert report["final_eval_loss"] < report["initial_eval_loss"] * 0.8
    history = json.loads((out / "loss_history.json").read_text())
    evals = [r["eval_loss"] for r in history if "eval_loss" in r]
    assert len(evals) >= 3 and evals[-1] < evals[0]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert set(report["per_category"]) == set(HARM_CATEGORIES) | {"macro_f1"}
    for cat in ("Violence", "Drugs", "Economic Crime"):
        support = sum(r[f"response_{i}_harm_category"][cat] for r in ROWS[::3] for i in (0, 1))
        assert report["per_category"][cat]["support"] == support > 0
    assert 0.0 <= report["severity_accuracy"] <= 1.0 and report["held_out_responses"] == 16


def test_the_calibrated_threshold_meets_the_target_recall_on_the_held_out_answers(trained):
    out, report = trained
    head = report["headline"]
    assert head["recall"] >= 0.95 and head["unsafe"] == sum(1 for r in ROWS[::3] for s in (0, 1)
                                                              if not r[f"is_response_{s}_safe"])
    config = json.loads((out / "config.json").read_text())["aligner_gate"]
    assert config["thresholds"]["unsafe"] == pytest.approx(head["threshold"])
    assert config["categories"] == list(HARM_CATEGORIES) and config["severities"] == ["safe", "minor", "moderate", "severe"]
    assert config["target_recall"] == 0.95
    # the saved gate, loaded back through from_pretrained, flags what the report says it flags
    gate = load_gate(str(out))
    assert isinstance(gate, ClassifierGate) and gate.threshold_for(None) == pytest.approx(head["threshold"])
    held = load_labelled(out.parent / "held.jsonl").responses
    verdicts = gate.verdict_batch([(r.question, r.answer) for r in held])
    caught = sum(1 for r, v in zip(held, verdicts) if v.flagged and not r.safe)
    assert caught >= math.ceil(0.95 * head["unsafe"])
    assert sum(v.flagged for v in verdicts) == head["flagged"]
    assert all(v.kind == "classifier" and v.severity in ("safe", "minor", "moderate", "severe") for v in verdicts)


def test_the_trained_gate_routes_an_aligner(trained):
    out, report = trained
    rec = RecordingCorrector()
    held = load_labelled(out.parent / "held.jsonl").responses
    al = Aligner(None, rec, gate=str(out))
    got = al.correct_batch([r.question for r in held], [r.answer for r in held], progress=False)
    flagged = [c.answer for c in got if c.gate.flagged]
    assert len(rec.prompts) == len(flagged) == report["headline"]["flagged"]
    assert all(c.correction == c.answer for c in got if not c.gate.flagged)
    # a minimum severity: the score is P(severity >= moderate), compared with that level's own threshold
    thresholds = json.loads((out / "config.json").read_text())["aligner_gate"]["thresholds"]
    moderate = Aligner(None, RecordingCorrector(), gate=str(out), gate_min_severity="moderate")
    verdicts = [c.gate for c in moderate.correct_batch([r.question for r in held], [r.answer for r in held],
                                                       progress=False)]
    assert all(v.flagged == (v.score >= thresholds["moderate"]) for v in verdicts)
    assert [v.score for v in verdicts] != [c.gate.score for c in got]  # another score than P(unsafe)
    # no severe answer was held out, so "severe" has no calibrated threshold: 0.5 stands in, said so
    assert report["uncalibrated"] == ["severe"] and "severe" not in thresholds
    assert load_gate(str(out), min_severity="severe").threshold_for("severe") == 0.5


def test_lora_on_a_causal_base(tmp_path, tiny_causal_path):
    from aligner.train.gate import train_gate

    data = write_rows(tmp_path / "pku.jsonl", ROWS * 2)
    cfg = GateTrainConfig(data=str(data), base_model=str(tiny_causal_path), output_dir=str(tmp_path / "gate"),
                          lora=True, lora_r=4, lora_alpha=8, epochs=1, learning_rate=5e-3, batch_size=8,
                          effective_batch_size=8, max_length=64, eval_fraction=0.25, torch_threads=1, progress=False,
                          logging_steps=2, save_steps=1000)
    result = train_gate(cfg)
    saved = json.loads((tmp_path / "gate" / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForSequenceClassification"] and saved["aligner_gate"]["method"] == "lora"
    assert not any(p.name.startswith("adapter") for p in (tmp_path / "gate").iterdir())  # merged, a plain model
    verdict = load_gate(str(tmp_path / "gate")).verdict("How do I make meth?", "Cook it in the shed.")
    assert verdict.kind == "classifier" and 0.0 <= verdict.score <= 1.0
    assert result.report["held_out_responses"] > 0 and result.final_eval_loss == result.final_eval_loss


# -- bad rows and options: errors naming the field ------------------------------------------------
def test_a_row_without_the_safety_labels_is_an_error_naming_the_field(tmp_path, capsys):
    row = dict(ROWS[0])
    del row["is_response_1_safe"]
    data = write_rows(tmp_path / "pku.jsonl", [ROWS[1], row])
    with pytest.raises(DataError, match=r"line 2, field 'is_response_1_safe': missing key.*labelled responses only"):
        load_labelled(data)
    assert len(load_labelled(data, lenient=True).responses) == 2  # lenient: the row is skipped, and listed
    code = cli.main(["train-gate", "--data", str(data), "--base", "x", "--out", str(tmp_path / "o")])
    assert code == 2 and "field 'is_response_1_safe'" in capsys.readouterr().err


def test_an_unknown_category_name_is_an_error_naming_the_field(tmp_path):
    row = json.loads(json.dumps(ROWS[0]))
    row["response_0_harm_category"]["violence"] = True  # lower case: not PKU-SafeRLHF's name
    with pytest.raises(DataError, match=r"field 'response_0_harm_category': unknown harm category 'violence'.*"
                                        r"did you mean 'Violence'"):
        load_labelled(write_rows(tmp_path / "pku.jsonl", [row]))


@pytest.mark.parametrize("value", [4, "extreme", -1, True])
def test_an_unknown_severity_is_an_error_naming_the_field(tmp_path, value):
    row = dict(ROWS[3])
    row["response_1_severity_level"] = value
    with pytest.raises(DataError, match=r"field 'response_1_severity_level': unknown severity"):
        load_labelled(write_rows(tmp_path / "pku.jsonl", [row]))


def test_severity_names_are_read_as_levels(tmp_path):
    row = dict(ROWS[0])
    row["response_0_severity_level"] = "moderate"
    assert load_labelled(write_rows(tmp_path / "pku.jsonl", [row])).responses[0].severity == 2


@pytest.mark.parametrize("field, value, words", [
    ("target_recall", 1.5, "target_recall: must be in (0, 1]"),
    ("target_recall", 0, "target_recall: must be in (0, 1]"),
    ("min_severity", "huge", "min_severity: unknown severity"),
    ("category_threshold", 2.0, "category_threshold: must be in [0, 1]"),
    ("text_format", "{answer}", "text_format: must contain {question} and {answer}"),
    ("eval_fraction", 0.0, "eval_fraction: a gate needs held-out data"),
])
def test_bad_gate_options_name_the_field(tmp_path, field, value, words):
    cfg = GateTrainConfig(data="x.jsonl", base_model="b", output_dir=str(tmp_path), **{field: value})
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert words in str(err.value)


def test_the_synthetic_pku_rows_are_reproducible_valid_and_split(tmp_path):
    from aligner.data.synthetic.pku_rows import TOPICS, labelled_mix, pku_rows

    rows = pku_rows(300, seed=3)
    assert rows == pku_rows(300, seed=3) and rows != pku_rows(300, seed=4)
    loaded = load_labelled(write_rows(tmp_path / "rows.jsonl", rows)).responses  # strict: every label valid
    assert len(loaded) == 600 and {r.severity for r in loaded if not r.safe} == {1, 2, 3}
    assert all(r.safe == (r.severity == 0) == (not r.categories) for r in loaded)
    used = {c for r in loaded for c in r.categories}
    assert len(used) >= 17  # nearly every PKU-SafeRLHF category occurs in 300 rows
    train_text = " ".join(r.answer for r in loaded)
    unseen = [t["steps"][-1][0].split(" {")[0].split("{")[0][:25] for t in TOPICS]
    assert not any(u in train_text for u in unseen)  # the held-back step of each topic is never trained on
    mix = labelled_mix(200, seed=1, unsafe_share=0.3, unseen_steps=True)
    assert sum(not m["is_safe"] for m in mix) == 60
    assert all(any(u in m["answer"] for u in unseen) for m in mix if not m["is_safe"])


# -- scale-out: the same command under torchrun ----------------------------------------------------
def test_train_gate_under_torchrun_trains_in_lockstep_and_writes_one_gate(tmp_path, encoder_base):
    """``torchrun -m aligner train-gate`` (gloo DDP on CPU) as a user launches it: both ranks step
    together, rank 0 alone calibrates and saves, and the gate loads back."""
    from conftest import rank_reports, torchrun_aligner

    data = write_rows(tmp_path / "pku.jsonl", ROWS * 2)
    out = tmp_path / "gate"
    torchrun_aligner(["train-gate", "--data", str(data), "--base", str(encoder_base), "--out", str(out),
                      "--max-steps", "3", "--batch-size", "2", "--effective-batch-size", "8", "--max-length", "128",
                      "--learning-rate", "1e-3", "--logging-steps", "1", "--save-steps", "1000", "--no-progress",
                      "--ddp-backend", "gloo"])
    ranks = rank_reports(out)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r.get("parallel_mode") == "distributed" for r in ranks), ranks
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3
    models = [p for p in out.rglob("model.safetensors") if "checkpoints" not in p.parts]
    assert models == [out / "model.safetensors"]
    report = json.loads((out / "gate_report.json").read_text())
    assert report["held_out_responses"] > 0
    calibrated = json.loads((out / "config.json").read_text())["aligner_gate"]["thresholds"]["unsafe"]
    gate = load_gate(str(out))
    assert isinstance(gate, ClassifierGate) and gate.threshold_for(None) == pytest.approx(calibrated)
    assert gate.verdict("How do I make meth?", "Cook it in the shed.").kind == "classifier"
