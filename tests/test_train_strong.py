"""``aligner train-strong``: weak-to-strong SFT and DPO on an ``aligner export``, end to end on tiny models.

The story of the paper in miniature. A tiny "strong" model is first trained to answer like an
unaligned model: asked whom to contact, it writes out a made-up e-mail address. The corrections a
(weak) Aligner would make replace the address with ``[EMAIL]``; ``aligner export`` turns them into
SFT and DPO sets; ``train_strong`` fine-tunes the unaligned model on them. Measured on held-out
prompts (other names, other seed) before and after — directions asserted, numbers printed
(``pytest -s`` shows them).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from aligner.data import write_jsonl  # noqa: E402
from aligner.data.export import export  # noqa: E402
from aligner.contracts.errors import ConfigError, DataError  # noqa: E402
from aligner.train.config import StrongTrainConfig  # noqa: E402

FIRST = ["john", "mary", "ali", "sara", "li", "omar", "anna", "tom", "eva", "raj", "kim", "leo"]
LAST = ["smith", "jones", "khan", "garcia", "chen", "ivanov", "muller", "rossi", "sato", "brown"]
DOMAINS = ["example.com", "mail.org", "corp.net", "home.io"]
TOPICS = ["my refund", "the invoice", "a broken phone", "the delivery", "my account", "the contract",
          "a late payment", "the warranty", "my booking", "the password"]


def corrections(n: int, seed: int) -> list[dict]:
    """Generation-job rows: the unaligned answer leaks an address, the correction redacts it."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first, last, domain, topic = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS), rng.choice(TOPICS)
        answer = f"Write to {first}.{last}@{domain} about {topic}."
        correction = f"Write to [EMAIL] about {topic}."
        rows.append({"row": i, "question": f"Who do I contact about {topic}?", "answer": answer,
                     "correction": correction, "changed": True})
    return rows


def _cfg(**kw) -> StrongTrainConfig:
    opts = dict(max_length=128, batch_size=8, effective_batch_size=8, logging_steps=5, save_steps=10_000,
                progress=False, bf16=False, seed=0, torch_threads=1)
    opts.update(kw)
    return StrongTrainConfig(**opts)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Export files (train + held-out) and the unaligned strong model they start from."""
    from aligner.train.tiny import make_tiny_corrector
    from aligner.train.strong import read_export, train_strong

    w = tmp_path_factory.mktemp("w2s")
    train, held = corrections(64, seed=0), corrections(24, seed=1)
    write_jsonl(train, w / "gen.jsonl")
    write_jsonl(held, w / "held.jsonl")
    texts = [f"User: {r['question']}\nAssistant: {r['answer']} {r['correction']}" for r in train] * 3
    base = make_tiny_corrector(w / "base", texts, "causal", vocab_size=320, context=128, hidden_size=64,
                               layers=2, heads=4)
    # the strong model before weak-to-strong: trained on the leaking answers (SFT through the same trainer)
    write_jsonl([{"prompt": f"User: {r['question']}\nAssistant:", "completion": " " + r["answer"]} for r in train],
                w / "unaligned.jsonl")
    train_strong(_cfg(method="sft", data=str(w / "unaligned.jsonl"), base_model=str(base),
                      output_dir=str(w / "unaligned"), learning_rate=5e-3, epochs=2))
    paths = {"dir": w, "unaligned": w / "unaligned"}
    for fmt in ("sft", "dpo"):
        export(w / "gen.jsonl", w / f"{fmt}.jsonl", fmt)
        export(w / "held.jsonl", w / f"{fmt}_held.jsonl", fmt)
        paths[f"{fmt}_held_rows"] = read_export(str(w / f"{fmt}_held.jsonl"), fmt)["train"]
    return paths


def test_sft_on_corrections_lowers_the_held_out_loss_on_corrections(world):
    from aligner.train.strong import completion_loss, train_strong

    w = world["dir"]
    before = completion_loss(world["unaligned"], world["sft_held_rows"])
    result = train_strong(_cfg(method="sft", data=str(w / "sft.jsonl"), eval_data=str(w / "sft_held.jsonl"),
                               base_model=str(world["unaligned"]), output_dir=str(w / "sft"),
                               learning_rate=3e-3, max_steps=10))
    after = completion_loss(result.output_dir, world["sft_held_rows"])
    print(f"\nSFT held-out loss on corrections (per token): before {before:.3f}, after {after:.3f}, "
          f"trl eval_loss {result.final_eval['eval_loss']:.3f}")
    assert after < before
    assert result.final_eval["eval_loss"] < before
    assert result.global_step == 10 and result.train_rows == 64 and result.eval_rows == 24
    out = result.output_dir
    state = json.loads((out / "train_state.json").read_text())
    assert state["status"] == "done" and state["method"] == "sft" and state["config"]["learning_rate"] == 3e-3
    assert (out / "model.safetensors").is_file() and (out / "loss_curve.png").is_file()
    assert not (out / "aligner_config.json").exists()        # an upstream model, not a corrector


def test_dpo_makes_the_model_prefer_the_correction_over_the_answer(world):
    from aligner.train.strong import preference_accuracy, train_strong

    w = world["dir"]
    pairs = world["dpo_held_rows"]
    before = preference_accuracy(world["unaligned"], pairs, reference=world["unaligned"])
    result = train_strong(_cfg(method="dpo", data=str(w / "dpo.jsonl"), eval_data=str(w / "dpo_held.jsonl"),
                               base_model=str(world["unaligned"]), output_dir=str(w / "dpo"),
                               learning_rate=1e-3, max_steps=10))
    after = preference_accuracy(result.output_dir, pairs, reference=world["unaligned"])
    trl_acc = result.final_eval["eval_rewards/accuracies"]
    print(f"\nDPO on {int(after['pairs'])} held-out pairs: per-token preference for the correction "
          f"{before['per_token_accuracy']:.2f} -> {after['per_token_accuracy']:.2f}; reward accuracy vs the "
          f"reference {before['reward_accuracy']:.2f} -> {after['reward_accuracy']:.2f} (trl eval "
          f"rewards/accuracies {trl_acc:.2f}); sequence log-prob accuracy {before['accuracy']:.2f} -> "
          f"{after['accuracy']:.2f}; mean margin {before['mean_margin']:.1f} -> {after['mean_margin']:.1f} nats")
    assert before["per_token_accuracy"] < 0.5 < after["per_token_accuracy"]   # it preferred the leak, now the fix
    assert before["reward_accuracy"] == 0.0                   # policy == reference: every margin is 0
    assert after["reward_accuracy"] > 0.5 and trl_acc > 0.5
    assert after["mean_margin"] > before["mean_margin"]
    assert result.global_step == 10


def test_dpo_with_lora_merges_into_a_plain_model(world):
    import torch
    from safetensors.torch import load_file

    from aligner.train.strong import train_strong

    w = world["dir"]
    result = train_strong(_cfg(method="dpo", data=str(w / "dpo.jsonl"), base_model=str(world["unaligned"]),
                               output_dir=str(w / "dpo-lora"), lora=True, lora_r=4, lora_alpha=8,
                               lora_dropout=0.0, learning_rate=1e-2, max_steps=2))
    out = result.output_dir
    assert not (out / "adapter_config.json").exists()
    a = load_file(str(world["unaligned"] / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()                                # same architecture, no lora_ / ref keys
    assert any(not torch.allclose(a[k], b[k]) for k in a)     # and the adapter was merged in


def test_conversational_sft_rows_train_on_the_last_turn_only(world, tmp_path):
    """``--chat`` exports ({"messages": [...]}) are trained as prompt + last turn, with the loss on that turn."""
    from transformers import AutoTokenizer, TrainerCallback

    from aligner.train.strong import train_strong

    base = tmp_path / "chat-base"
    tok = AutoTokenizer.from_pretrained(str(world["unaligned"]))
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{{ eos_token }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(world["unaligned"])).save_pretrained(base)
    tok.save_pretrained(base)
    export(world["dir"] / "gen.jsonl", tmp_path / "chat.jsonl", "sft", chat=True)

    class Batches(TrainerCallback):
        seen: list = []

        def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
            Batches.seen = [b for b in train_dataloader]

    train_strong(_cfg(method="sft", data=str(tmp_path / "chat.jsonl"), base_model=str(base),
                      output_dir=str(tmp_path / "out"), max_steps=1), callbacks=[Batches()])
    ids, labels = Batches.seen[0]["input_ids"][0], Batches.seen[0]["labels"][0]
    trained = tok.decode(ids[labels != -100])
    assert trained.startswith(" Write to [EMAIL] about") and "Who do I contact" not in trained


def test_a_to_dataset_directory_trains_with_its_test_split_as_eval_set(world, tmp_path):
    from aligner.train.strong import train_strong

    s = export(world["dir"] / "gen.jsonl", tmp_path / "sft.jsonl", "sft", test_size=0.2, to_dataset=tmp_path / "ds")
    result = train_strong(_cfg(method="sft", data=str(tmp_path / "ds"), base_model=str(world["unaligned"]),
                               output_dir=str(tmp_path / "out"), max_steps=1))
    assert (result.train_rows, result.eval_rows) == (s.train, s.test) and s.test > 0
    assert "eval_loss" in result.final_eval


# ----------------------------------------------------------------------------- bad input

def test_dpo_on_an_sft_export_names_the_field_and_the_method(world, tmp_path):
    from aligner.train.strong import train_strong

    with pytest.raises(DataError) as e:
        train_strong(_cfg(method="dpo", data=str(world["dir"] / "sft.jsonl"), base_model=str(world["unaligned"]),
                          output_dir=str(tmp_path / "o")))
    assert e.value.field == "chosen" and e.value.row == 1 and "--method sft" in str(e.value)


def test_missing_field_names_file_row_and_field(world, tmp_path):
    from aligner.train.strong import train_strong

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "completion": " c"}) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(DataError) as e:
        train_strong(_cfg(method="sft", data=str(bad), base_model=str(world["unaligned"]), output_dir=str(tmp_path / "o")))
    assert e.value.field == "completion" and e.value.row == 2 and "bad.jsonl" in str(e.value)


def test_chat_export_for_a_tokenizer_without_chat_template_is_a_config_error(world, tmp_path):
    from aligner.train.strong import train_strong

    export(world["dir"] / "gen.jsonl", tmp_path / "chat.jsonl", "dpo", chat=True)
    with pytest.raises(ConfigError) as e:
        train_strong(_cfg(method="dpo", data=str(tmp_path / "chat.jsonl"), base_model=str(world["unaligned"]),
                          output_dir=str(tmp_path / "o")))
    assert e.value.field == "data" and "without --chat" in str(e.value)


def test_option_errors_name_the_field():
    with pytest.raises(ConfigError) as e:
        _cfg(method="ppo", data="d.jsonl", base_model="m", output_dir="o").validate()
    assert e.value.field == "method"
    with pytest.raises(ConfigError) as e:
        _cfg(method="dpo", packing=True, data="d.jsonl", base_model="m", output_dir="o").validate()
    assert e.value.field == "packing"
    assert _cfg(method="dpo").learning_rate == 1e-6 and _cfg(method="sft").learning_rate == 2e-5
    assert _cfg(method="dpo", learning_rate=5e-7).learning_rate == 5e-7


def test_cli_and_yaml(world, tmp_path, capsys):
    from aligner.cli import main

    (tmp_path / "strong.yaml").write_text(f"method: dpo\nbase_model: {tmp_path / 'no-such-model'}\n"
                                          f"output_dir: {tmp_path / 'o'}\n")
    rc = main(["train-strong", "--config", str(tmp_path / "strong.yaml"), "--data", str(world["dir"] / "dpo.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "base_model" in err and "Fix:" in err
    rc = main(["train-strong", "--method", "sft", "--data", str(tmp_path / "missing.jsonl"),
               "--base-model", str(world["unaligned"]), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.jsonl" in err and "data" in err
