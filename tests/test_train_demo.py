"""The embedded demo corrector: its rebuild command end to end (tiny settings) and the shipped files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / "aligner" / "assets" / "demo-corrector"


def test_rebuild_command_runs_end_to_end_on_tiny_settings(tmp_path):
    """Data → tokenizer → two training stages through train_corrector → eval → report, as the real rebuild."""
    from aligner.train import demo_corrector

    work = tmp_path / "demo"
    rc = demo_corrector.main(["--work", str(work), "--n", "48", "--stages", "2", "--rows-per-stage", "16", "--max-steps", "2",
                              "--eval-limit", "3", "--no-install", "--tiny", "--threads", "1"])
    assert rc == 0
    report = json.loads((work / "model2" / "report.json").read_text())
    assert report["model_dir"] == "model2"
    assert set(report["synthetic_heldout"]["success"]) <= {"identity", "redact", "arithmetic", "refusal"}
    assert report["splice_generalisation"]["n"] == 3
    assert report["latency_s"]["n"] == 3 and report["size_mb"] > 0
    assert report["training"]["stage1"]["phases"][0]["phase"] == "identity"
    assert report["training"]["stage2"]["global_step"] == 2
    meta = json.loads((work / "model2" / "aligner_config.json").read_text())
    assert meta["demo"] is True and meta["template"] == "aligner-v1.0" and meta["stage"] == 2
    assert meta["base_model"].endswith("model")  # stage 2 continued from stage 1
    assert json.loads((work / "init" / "shape.json").read_text())["shape"] == "bpe2048-w192-d4"  # the shipped shape
    tok_cfg = json.loads((work / "model2" / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(tok_cfg)  # save_corrector drops build-machine flags
    # the splice set is built from sentences the training generator never used
    train_answers = " ".join(json.loads(line)["answer"] for line in (work / "data" / "train.jsonl").open())
    splice = [json.loads(line) for line in (work / "data" / "eval_splice.jsonl").open()]
    fine = [r["answer"] for r in splice if r["category"] == "identity"]
    assert fine and not any(a in train_answers for a in fine)
    # a finished run extends by a further stage: its rows are written, it continues from the last model
    assert not (work / "data" / "train3.jsonl").exists()
    rc = demo_corrector.main(["--work", str(work), "--rows-per-stage", "16", "--stages", "3", "--from-stage", "3",
                              "--resume", "--max-steps", "2", "--stage-max-steps", "2", "--eval-limit", "2",
                              "--no-install", "--tiny", "--threads", "1"])
    assert rc == 0 and len((work / "data" / "train3.jsonl").read_text().splitlines()) == 16
    meta = json.loads((work / "model3" / "aligner_config.json").read_text())
    assert meta["stage"] == 3 and meta["base_model"].endswith("model2")
    assert json.loads((work / "model3" / "report.json").read_text())["model_dir"] == "model3"
    # issue 14: the user-facing measures and the five fixed demo inputs are in every report
    report = json.loads((work / "model3" / "report.json").read_text())
    user = report["user_measures"]
    assert set(user["success"]) >= {"exact_copy", "spliced_contacts", "no_damage", "fine_hand", "splice_hh"}
    assert user["n"]["fine_hand"] == 2 and user["words_outside_edits"]["total"] > 0
    assert user["targets"] == {"exact_copy": 0.95, "spliced_contacts": 0.80, "no_damage": 0.99}
    demo_inputs = [json.loads(line) for line in (REPO / "train" / "heldout" / "demo_inputs.jsonl").open()]
    assert [d["answer"] for d in report["demo_examples"]] == [d["answer"] for d in demo_inputs]
    assert len(demo_inputs) == 5 and all(isinstance(d["correction"], str) for d in report["demo_examples"])
    # issue 26: both held-out sets (generated unlike training, and the hand-written cases), raw and guarded
    wild = report["wild_measures"]
    assert set(wild) == {"heldout_generated", "hand_written"}
    assert wild["hand_written"]["n"] == 2 and set(wild["hand_written"]) >= {"raw", "guarded", "targets"}
    assert {"words_kept", "placeholders_in_fine", "half_refusals"} <= set(wild["hand_written"]["guarded"]["success"])
    guarded = report["user_measures_guarded"]  # the fine answers and spliced contacts as a user is shown them
    assert guarded["n"] == report["user_measures"]["n"] and set(guarded["success"]) >= {"exact_copy", "no_damage"}
    assert json.loads((work / "data" / "libraries.json").read_text())["faker"]  # the versions the rows came from
    assert report["data"]["libraries"] == json.loads((work / "data" / "libraries.json").read_text())
    # --measure scores any corrector on the work folder's held-out sets
    assert demo_corrector.main(["--work", str(work), "--measure", str(work / "model"), "--eval-limit", "2",
                                "--threads", "1"]) == 0
    assert json.loads((work / "measure-model.json").read_text())["user_measures"]["n"]["fine_hand"] == 2
    # --start-from continues from an existing corrector as the stage before --from-stage: the docs'
    # rebuild of the shipped model's last two stages (15 and 16, wild rows) from stage 14
    work2 = tmp_path / "demo2"
    rc = demo_corrector.main(["--work", str(work2), "--n", "32", "--start-from", str(work / "model3"), "--from-stage", "15",
                              "--stages", "16", "--rows-per-stage", "16", "--max-steps", "1", "--stage-max-steps", "1",
                              "--eval-limit", "2", "--no-install", "--tiny", "--threads", "1"])
    assert rc == 0 and not (work2 / "init").exists()
    assert json.loads((work2 / "model15" / "aligner_config.json").read_text())["base_model"].endswith("model14")
    assert json.loads((work2 / "model16" / "aligner_config.json").read_text())["base_model"].endswith("model15")
    assert (work2 / "model14" / "model.safetensors").read_bytes() == (work / "model3" / "model.safetensors").read_bytes()
    for stage in (15, 16):
        rows = [json.loads(line) for line in (work2 / "data" / f"train{stage}.jsonl").open()]
        assert len(rows) == 16 and (work2 / "data" / "words.txt").is_file()
    # the report keeps the seed model's training history, and --before adds the replaced model's figures
    # (--reuse-report: no second evaluation)
    rc = demo_corrector.main(["--work", str(work2), "--stages", "16", "--from-stage", "15", "--skip-train",
                              "--reuse-report", "--before", str(work / "measure-model.json"), "--no-install",
                              "--threads", "1"])
    report = json.loads((work2 / "model16" / "report.json").read_text())
    assert rc == 0 and set(report["training"]) == {"stage1", "stage2", "stage3", "stage15", "stage16"}
    assert report["before"]["user_measures"] == json.loads((work / "measure-model.json").read_text())["user_measures"]["success"]


def test_every_stage_has_a_step_cap_and_its_own_rows():
    """A stage past the listed caps takes the last cap (stage 8 once crashed on an IndexError)."""
    from aligner.train.demo_corrector import STAGES, stage_step_cap

    caps = [1100, 2400, 3600]
    assert [stage_step_cap(s, caps) for s in sorted(STAGES) if s > 1] == [1100, 2400] + [3600] * (len(STAGES) - 3)
    assert STAGES[9]["variants"]["identity"]["scramble"] > 0.5 and STAGES[1]["variants"] is None
    assert STAGES[11]["variants"]["redact"]["anylead"] > 0 and STAGES[11]["questions"] == "by_category"
    assert STAGES[13]["questions"] == "shared"  # from stage 12 questions give no edit away
    assert STAGES[14]["questions"] == "echo" and STAGES[14]["variants"]["redact"]["anysep"] > 0
    assert STAGES[15]["variants"]["redact"]["wild"] > 0.5 and STAGES[15]["variants"]["refusal"]["wild"] > 0.5
    assert STAGES[15]["variants"]["identity"]["decoy"] > 0 and STAGES[15]["variants"]["arithmetic"]["wild"] > 0.5
    assert len({st["data"] for st in STAGES.values()}) == len(STAGES)
    for s, st in STAGES.items():  # each stage continues from the one before
        assert st["base"] == ("init" if s == 1 else STAGES[s - 1]["out"])


@pytest.mark.skipif(not (ASSET / "config.json").is_file(), reason="demo corrector not built yet")
def test_shipped_demo_corrector_is_small_marked_and_loads():
    from aligner.correctors import load_corrector

    size = sum(p.stat().st_size for p in ASSET.iterdir() if p.is_file())
    assert size < 5_000_000, f"demo corrector is {size / 1e6:.2f} MB"
    meta = json.loads((ASSET / "aligner_config.json").read_text())
    assert meta["demo"] is True and meta["template"] == "aligner-v1.0"
    assert meta["trained_by"] == "aligner train"
    tok_cfg = json.loads((ASSET / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(tok_cfg)  # build-machine flags are not shipped
    report = json.loads((ASSET / "report.json").read_text())
    for key in ("synthetic_heldout", "splice_generalisation", "latency_s", "size_mb", "rebuild_command"):
        assert key in report
    from transformers import AutoTokenizer
    pieces = AutoTokenizer.from_pretrained(ASSET).tokenize("So 40 + 35 = 75.")
    assert [p.lstrip("\u0120") for p in pieces if p.lstrip("\u0120").isdigit()] == list("403575")  # digit tokens
    corrector = load_corrector(None, decoding={"max_new_tokens": 48})
    assert corrector.is_demo
    assert corrector.correct("What is 2 + 2?", "So 2 + 2 = 5.") == "So 2 + 2 = 4."  # the shipped model fixes sums


def test_every_shape_choice_fits_the_5_mb_budget_in_fp16():
    """The study's tokenizer/shape choices (--shape) all ship under 5 MB: tied embeddings + layers, 2 bytes each."""
    from aligner.train.demo_corrector import DEFAULT_SHAPE, SHAPES

    assert DEFAULT_SHAPE in SHAPES and len(SHAPES) >= 2
    for name, choice in SHAPES.items():
        m = choice["model"]
        h, inter, layers = m["hidden_size"], m["intermediate_size"], m["layers"]
        params = choice["vocab"] * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h
        assert 2 * params < 4.7e6, (name, params)
    assert 2_164_000 < SHAPES["bpe2048-w192-d4"]["vocab"] * 192 + 4 * (4 * 192 ** 2 + 3 * 192 * 512 + 384) + 192 < 2_165_000


def test_hand_written_heldout_answers_are_never_training_text():
    """The fine answers and demo inputs are written by hand and kept out of every training pool."""
    from aligner.data.synthetic import FALLBACK_SENTENCES, sentences_from_hh_rlhf
    from aligner.train.demo_corrector import HH_RLHF_DEFAULT, heldout_rows

    hand = [r["answer"] for r in heldout_rows("fine_answers.jsonl") + heldout_rows("demo_inputs.jsonl")]
    assert len(hand) == 45 and len(set(hand)) == 44  # the spider answer is in both on purpose
    pool = set(FALLBACK_SENTENCES) | (set(sentences_from_hh_rlhf(HH_RLHF_DEFAULT)) if HH_RLHF_DEFAULT.is_file() else set())
    assert not any(a in pool for a in hand)


def test_split_digits_tokenizer_gives_one_token_per_digit_and_round_trips(tmp_path):
    """The demo corrector's tokenizer: consistent digit tokens (what arithmetic needs), lossless text."""
    from transformers import AutoTokenizer

    from aligner.train.tiny import train_tokenizer

    texts = ["So 40 + 35 = 75, call 555 010 2345 or write to ana.li@example.com."] * 20
    train_tokenizer(texts, vocab_size=300, split_digits=True).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)  # the from_pretrained path the corrector takes
    for text in ("40 + 35 = 75.", "Card 4532-1234 5678 9012,  twice  spaced.", "+44 20 7946 0958"):
        pieces = tok.tokenize(text)
        digits = [p.lstrip("\u0120") for p in pieces if any(c.isdigit() for c in p)]
        assert digits and all(len(d) == 1 for d in digits), pieces
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    plain = train_tokenizer(texts, vocab_size=300)
    assert any(len(p.lstrip("\u0120")) > 1 and p.lstrip("\u0120").isdigit() for p in plain.tokenize("40 + 35 = 75."))


@pytest.mark.skipif(not (ASSET / "report.json").is_file(), reason="demo corrector not built yet")
def test_the_docs_table_and_chart_are_made_from_the_shipped_report(tmp_path, capsys):
    """docs/training.md's issue-26 table is regenerated from report.json, not retyped: the shipped
    model against the one it replaced (the report's ``before``), raw → guarded, and a chart."""
    import matplotlib.image

    from aligner.train import demo_figures

    report = ASSET / "report.json"
    chart = tmp_path / "measures.png"
    assert demo_figures.main([f"before=before:{report}", f"shipped={report}", "--plot", str(chart)]) == 0
    table = capsys.readouterr().out
    shipped = json.loads(report.read_text())["wild_measures"]["hand_written"]
    fine = shipped["guarded"]["success"]["fine_copied"]
    n = shipped["guarded"]["counts"]["fine_copied"]
    row = next(line for line in table.splitlines() if line.startswith("| hand-written: fine answers copied exactly"))
    assert row.endswith(f"{fine * 100:.1f}% ({round(fine * n)}/{n}) |")
    assert "| — role_email |" not in table and "| hand-written: — role_email |" in table
    assert matplotlib.image.imread(chart).shape[1] > 1000
    with pytest.raises(SystemExit, match="NAME=PATH"):
        demo_figures.main([str(report)])
    docs = (REPO / "docs" / "training.md").read_text()
    assert row.split(" | ", 1)[0] in docs and f"{fine * 100:.1f}% ({round(fine * n)}/{n}) |" in docs
