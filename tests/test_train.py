"""Corrector training: label masking, identity warm-up order, LoRA merge round trip, resume, T5, bad inputs.

Real tiny models (hidden 64, 2 layers) trained for a handful of steps through the same
``train_corrector`` that ``aligner train`` runs; batches are read back from the Trainer's own
DataLoader (a callback), so the checks see exactly what the optimizer saw.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import corpus_texts

pytest.importorskip("trl")
pytest.importorskip("peft")

from aligner.data import QAC, write_jsonl  # noqa: E402
from aligner.contracts.errors import ConfigError, DataError  # noqa: E402
from aligner.train.config import CorrectorTrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _rows(n: int, seed: int = 0) -> list[QAC]:
    from aligner.data.synthetic import generate

    return generate(n, seed=seed)


def _write(path: Path, rows: list) -> str:
    write_jsonl([r.to_dict() if hasattr(r, "to_dict") else r for r in rows], path)
    return str(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama + BPE tokenizer (normal init scale: trainable)."""
    from aligner.data.synthetic import FALLBACK_SENTENCES
    from aligner.train.tiny import make_tiny_corrector

    texts = corpus_texts(100) + list(FALLBACK_SENTENCES) + [r.answer + " " + r.correction for r in _rows(200)]
    return make_tiny_corrector(tmp_path_factory.mktemp("base"), texts, "causal", vocab_size=512, context=512,
                               hidden_size=64, layers=2, heads=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("data")
    return {"train": _write(d / "train.jsonl", _rows(48, seed=0)), "eval": _write(d / "eval.jsonl", _rows(16, seed=1))}


def _cfg(base: Path, out: Path, data: dict[str, str], **kw) -> CorrectorTrainConfig:
    opts = dict(data=data["train"], base_model=str(base), output_dir=str(out), max_length=512,
                learning_rate=3e-3, batch_size=8, effective_batch_size=8, epochs=1, logging_steps=2,
                save_steps=1000, progress=False, bf16=False, seed=0)
    opts.update(kw)
    return CorrectorTrainConfig(**opts)


class Capture:
    """A Trainer callback keeping every batch of the train DataLoader and the model's logits at the end."""

    def __new__(cls, probe=None):
        from transformers import TrainerCallback

        class _C(TrainerCallback):
            batches: list = []
            final_logits = None

            def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
                self.batches = [{k: v.clone() for k, v in b.items()} for b in train_dataloader]

            def on_train_end(self, args, state, control, model=None, **kw):
                if probe is not None:
                    import torch

                    with torch.no_grad():
                        self.final_logits = model(input_ids=probe).logits.detach().clone()

        return _C()


def _train(cfg: CorrectorTrainConfig, **kw):
    from aligner.train.corrector import train_corrector

    return train_corrector(cfg, **kw)


# ----------------------------------------------------------------------------- one shared run

@pytest.fixture(scope="module")
def warm_run(base, data, tmp_path_factory):
    """One run with identity warm-up (25%) over 2 epochs, with held-out eval data."""
    cap = Capture()
    out = tmp_path_factory.mktemp("warm") / "out"
    result = _train(_cfg(base, out, data, identity_warmup=0.25, epochs=2, eval_data=data["eval"], eval_steps=4,
                         learning_rate=5e-3),
                    callbacks=[cap])
    return result, cap


def test_labels_cover_only_the_correction_and_eos(warm_run, base):
    from transformers import AutoTokenizer

    from aligner.contracts.templates import get_template

    tok = AutoTokenizer.from_pretrained(str(base))
    tpl = get_template("aligner-v1.0")
    rows = _rows(48, seed=0)
    prompts = {tpl.render(r.question, r.answer): r for r in rows}
    _, cap = warm_run
    checked = 0
    for batch in cap.batches:
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            ids, labels = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
            start = next(i for i, l in enumerate(labels) if l != -100)
            prompt = tok.decode(ids[:start], skip_special_tokens=True)
            assert prompt in prompts, prompt                           # everything before is the exact prompt
            assert all(l == -100 for l in labels[:start])
            assert labels[start:] == ids[start:]                       # the rest is trained on, unchanged
            assert ids[-1] == tok.eos_token_id                         # … and ends with EOS
            target = tok.decode(ids[start:-1])
            r = prompts[prompt]
            assert target in (" " + r.correction, " " + r.answer)
            checked += 1
        assert (batch["labels"][~batch["attention_mask"].bool()] == -100).all()   # padding never trained on
    assert checked >= 48


def test_identity_warmup_comes_first_then_qac(warm_run, base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    rows = {r.answer: r for r in _rows(48, seed=0)}
    _, cap = warm_run
    kinds = []
    for batch in cap.batches:
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            keep = labels != -100
            target = tok.decode(ids[keep][:-1]).strip()
            prompt_answer = next(a for a in rows if a in tok.decode(ids[~keep & (ids != tok.pad_token_id)]))
            r = rows[prompt_answer]
            if r.correction == r.answer:
                kinds.append("either")
            else:
                kinds.append("identity" if target == r.answer else "qac")
    n_warm = round(48 * 0.25)
    decided = [k for k in kinds if k != "either"]
    assert "identity" in decided and "qac" in decided
    assert max(i for i, k in enumerate(kinds) if k == "identity") < min(i for i, k in enumerate(kinds) if k == "qac")
    assert len(kinds) == n_warm + 2 * 48                     # warm-up share once, then 2 Q-A-C epochs
    result, _ = warm_run
    state = json.loads((result.output_dir / "train_state.json").read_text())
    phases = [p["phase"] for p in state["phases"]]
    assert phases == ["identity", "qac"]
    assert state["phases"][0]["last_step"] <= state["phases"][1]["first_step"]


def test_trained_corrector_is_complete_and_loads(warm_run):
    from aligner.correctors import load_corrector

    result, _ = warm_run
    out = result.output_dir
    assert json.loads((out / "aligner_config.json").read_text())["template"] == "aligner-v1.0"
    # single questions, not HH-RLHF transcripts: chats are corrected for their last user message
    assert json.loads((out / "aligner_config.json").read_text())["question_format"] == {"kind": "last_message"}
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("loss" in h for h in json.loads((out / "loss_history.json").read_text()))
    c = load_corrector(str(out), device="cpu", decoding={"max_new_tokens": 8})
    assert c.template.name == "aligner-v1.0"
    pairs = [("Q?", "A."), ("What is 3 + 4?", "That gives 3 + 4 = 8.")]
    assert [c.correct(q, a) for q, a in pairs] == c.correct_batch(pairs)  # one by one = batched (padded)


def test_short_training_lowers_held_out_loss(warm_run, base):
    """Held-out loss (unseen synthetic rows, another seed) of the trained corrector is well below the base's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aligner.contracts.templates import get_template
    from aligner.train.prepare import tokenize_example

    tok = AutoTokenizer.from_pretrained(str(base))
    tpl = get_template("aligner-v1.0")
    held = _rows(16, seed=1)

    def held_out_loss(path) -> float:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        losses = []
        with torch.no_grad():
            for r in held:
                ex = tokenize_example(tok, tpl, r.question, r.answer, r.correction, max_length=512)
                out = model(input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels]))
                losses.append(out.loss.item())
        return sum(losses) / len(losses)

    result, _ = warm_run
    before, after = held_out_loss(base), held_out_loss(result.output_dir)
    assert after < 0.9 * before, (before, after)
    assert result.final_eval_loss is not None and result.final_eval_loss < 0.9 * before


# ----------------------------------------------------------------------------- LoRA

def test_lora_merge_save_load_gives_identical_outputs(base, data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    probe = torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46]])
    cap = Capture(probe)
    result = _train(_cfg(base, tmp_path / "lora", data, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                         max_steps=3, learning_rate=1e-2), callbacks=[cap])
    out = result.output_dir
    assert not (out / "adapter_config.json").exists()          # a plain, merged model
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        merged_logits = merged(input_ids=probe).logits
        base_logits = AutoModelForCausalLM.from_pretrained(str(base)).eval()(input_ids=probe).logits
    assert not torch.allclose(base_logits, cap.final_logits, atol=1e-4)   # the adapters did learn something
    assert torch.allclose(merged_logits, cap.final_logits, atol=1e-4)     # merged+saved == adapter model
    assert json.loads((out / "aligner_config.json").read_text())["method"] == "lora"


def test_qlora_without_bitsandbytes_or_cuda_is_a_clear_error(base, data, tmp_path):
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("QLoRA can actually run here")
    with pytest.raises(ConfigError) as e:
        _train(_cfg(base, tmp_path / "q", data, qlora=True))
    assert e.value.field == "qlora" and "--lora" in str(e.value)


# ----------------------------------------------------------------------------- resume

def test_resume_after_interruption_matches_uninterrupted_run(base, data, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:      # as if killed right after the checkpoint at step 2
                control.should_save = True
                control.should_training_stop = True

    kw = dict(max_steps=4, save_steps=2, save_total_limit=3)
    full = _train(_cfg(base, tmp_path / "full", data, **kw))
    out = tmp_path / "cut"
    _train(_cfg(base, out, data, **kw), callbacks=[Interrupt()])
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    cut_history = json.loads((out / "loss_history.json").read_text())
    cut_steps = [r["step"] for r in cut_history if "loss" in r]
    assert cut_steps and max(cut_steps) == 2
    resumed = _train(_cfg(base, out, data, resume=True, **kw))
    assert resumed.global_step == 4
    # the loss history (and its curve) keeps the steps before the resume
    history = json.loads((out / "loss_history.json").read_text())
    assert [r["step"] for r in history if "loss" in r] == cut_steps + [4] and history[0] == cut_history[0]
    a = load_file(str(full.output_dir / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


# ----------------------------------------------------------------------------- encoder-decoder

def test_seq2seq_base_trains_and_loads(tmp_path, data):
    from aligner.correctors import load_corrector
    from aligner.train.tiny import make_tiny_corrector

    t5 = make_tiny_corrector(tmp_path / "t5", corpus_texts(60), "seq2seq", vocab_size=384, hidden_size=64, layers=2)
    result = _train(_cfg(t5, tmp_path / "out", data, max_steps=2, template="qac"))
    c = load_corrector(str(result.output_dir), device="cpu", decoding={"max_new_tokens": 4})
    assert c.template.name == "qac"
    pairs = [("Q?", "A."), ("What is 3 + 4?", "That gives 3 + 4 = 8.")]
    assert [c.correct(q, a) for q, a in pairs] == c.correct_batch(pairs)  # one by one = batched (padded)


# ----------------------------------------------------------------------------- bad inputs

def test_unknown_data_format_names_the_field(base, data, tmp_path):
    with pytest.raises(ConfigError) as e:
        _train(_cfg(base, tmp_path / "o", data, data_format="alpaca"))
    assert e.value.field == "data_format" and "qac" in str(e.value)


def test_empty_file_is_a_clear_error(base, data, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError) as e:
        _train(_cfg(base, tmp_path / "o", {"train": str(empty)}))
    assert "empty.jsonl" in str(e.value) and "empty" in str(e.value).split("empty.jsonl", 1)[1]


def test_row_without_correction_names_row_and_field(base, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a", "correction": "c"}) + "\n"
                   + json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataError) as e:
        _train(_cfg(base, tmp_path / "o", {"train": str(bad)}))
    assert e.value.field == "correction" and e.value.row == 2


def test_max_length_shorter_than_the_prompt_names_max_length(base, data, tmp_path):
    with pytest.raises(ConfigError) as e:
        _train(_cfg(base, tmp_path / "o", data, max_length=16))
    assert e.value.field == "max_length" and "--max-length" in str(e.value)


def test_missing_base_model_path_names_base_model(data, tmp_path):
    with pytest.raises(ConfigError) as e:
        _train(_cfg(tmp_path / "no-such-model", tmp_path / "o", data))
    assert e.value.field == "base_model"


def test_cli_reports_errors_with_field_and_fix(data, tmp_path, capsys):
    from aligner.cli import main

    rc = main(["train", "--data", data["train"], "--output-dir", str(tmp_path / "o"),
               "--base-model", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "base_model" in err and "Fix:" in err


# ----------------------------------------------------------------------------- shipped configs

def test_shipped_yaml_recipe_and_launcher_configs_are_valid():
    import yaml

    from aligner.contracts.config_parser import build_config

    configs = REPO / "train" / "configs"
    cfg = build_config(CorrectorTrainConfig, {}, configs / "aligner-7b.yaml")
    assert (cfg.epochs, cfg.max_length, cfg.learning_rate, cfg.warmup_ratio) == (3, 2048, 2e-5, 0.03)
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.effective_batch_size) == (0.9, 0.95, 32)
    for name in ("accelerate_ddp.yaml", "accelerate_fsdp.yaml", "accelerate_deepspeed_zero3.yaml"):
        assert isinstance(yaml.safe_load((configs / name).read_text()), dict), name
    ds = json.loads((configs / "deepspeed_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
