"""``aligner export``: corrections → trl SFT / DPO sets; filters, split, datasets copy, bad input.

The trl checks load the export with ``datasets`` exactly as a user would and hand it to trl's own
``SFTTrainer`` / ``DPOTrainer`` (no aligner code in between) for a step on a tiny model.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligner.data.export import export, split_by_prompt, split_path
from aligner.contracts.errors import ConfigError, DataError

#: a tiny ChatML-like template, so the conversational exports can be checked on a local tokenizer
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{{ eos_token }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _gen_rows() -> list[dict]:
    """Rows as the file job writes them: {"row", "question", "answer", "correction", "changed", ...}."""
    rows = [
        ("How do I reach support?", "Mail jane.doe@example.com today.", "Mail [EMAIL] today."),
        ("What is 2 + 2?", "It is 4.", "It is 4."),                                         # unchanged
        ("How do I reach support?", "Call 555 1234 now.", "Call [PHONE] now."),               # same prompt again
        ("Who signs the form?", "The manager signs it", "The manager signs it."),            # punctuation only
        ("Where is the office?", "At 12 Main Street, ask for bob@corp.net.", "At 12 Main Street, ask for [EMAIL]."),
        ("Can I get a refund?", "No.", "Yes: refunds are possible within thirty days of purchase."),
        ("What colour is the sky?", "Blue.", "Blue."),                                       # unchanged
        ("Who do I email about billing?", "Email ann@bill.io.", "Email [EMAIL]."),
    ]
    return [{"row": i, "question": q, "answer": a, "correction": c, "changed": a.strip() != c.strip(),
             "timings": {"corrector": 0.1}, "corrector": "demo", "template": "qac", "upstream": "", "metadata": {}}
            for i, (q, a, c) in enumerate(rows)]


@pytest.fixture
def gen(tmp_path) -> Path:
    p = tmp_path / "gen.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _gen_rows()))
    return p


def _read(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


# ----------------------------------------------------------------------------- formats and filters

def test_dpo_rows_are_prompt_chosen_correction_rejected_answer_and_unchanged_are_dropped(gen, tmp_path):
    s = export(gen, tmp_path / "dpo.jsonl", "dpo")
    rows = _read(tmp_path / "dpo.jsonl")
    assert s.read == 8 and s.dropped == {"unchanged (correction == answer)": 2} and s.train == len(rows) == 6
    first = rows[0]
    assert first == {"prompt": "User: How do I reach support?\nAssistant:", "chosen": " Mail [EMAIL] today.",
                     "rejected": " Mail jane.doe@example.com today."}
    assert all(r["chosen"] != r["rejected"] for r in rows)


def test_plain_prompt_is_what_the_hf_upstream_sends_a_base_model(gen, tmp_path):
    from aligner.adapters.hf_local import HFUpstream

    export(gen, tmp_path / "sft.jsonl", "sft")
    row = _read(tmp_path / "sft.jsonl")[0]

    class NoTemplate:
        chat_template = None

    up = HFUpstream.__new__(HFUpstream)
    up.tokenizer = NoTemplate()
    assert row["prompt"] == up.prompt([{"role": "user", "content": "How do I reach support?"}])
    assert row["completion"] == " Mail [EMAIL] today."


def test_sft_keeps_unchanged_pairs_by_default_and_drops_them_on_request(gen, tmp_path):
    kept = export(gen, tmp_path / "a.jsonl", "sft")
    assert kept.train == 8 and kept.dropped == {}
    assert {"prompt": "User: What is 2 + 2?\nAssistant:", "completion": " It is 4."} in _read(tmp_path / "a.jsonl")
    dropped = export(gen, tmp_path / "b.jsonl", "sft", drop_unchanged=True)
    assert dropped.train == 6 and dropped.dropped == {"unchanged (correction == answer)": 2}


def test_min_edit_counts_words_so_punctuation_only_edits_go(gen, tmp_path):
    s = export(gen, tmp_path / "d.jsonl", "dpo", min_edit=2)
    rejected = [r["rejected"] for r in _read(tmp_path / "d.jsonl")]
    assert " The manager signs it" not in rejected           # only a full stop added: 0 words
    assert s.dropped == {"unchanged (correction == answer)": 2, "edit under 2 words (--min-edit)": 1}
    assert s.train == 5
    big = export(gen, tmp_path / "e.jsonl", "dpo", min_edit=8)   # only the refund rewrite is that large
    assert [r["rejected"] for r in _read(tmp_path / "e.jsonl")] == [" No."]
    assert big.dropped["edit under 8 words (--min-edit)"] == 5


def test_dedup_keeps_the_first_row_of_each_prompt(gen, tmp_path):
    s = export(gen, tmp_path / "d.jsonl", "dpo", dedup=True)
    rows = _read(tmp_path / "d.jsonl")
    assert s.dropped["duplicate prompt"] == 1
    support = [r for r in rows if "reach support" in r["prompt"]]
    assert len(support) == 1 and support[0]["chosen"] == " Mail [EMAIL] today."


def test_split_is_seeded_by_prompt_and_writes_a_test_file_beside(gen, tmp_path):
    out = tmp_path / "sft.jsonl"
    s = export(gen, out, "sft", test_size=0.34, seed=3)
    test_file = tmp_path / "sft.test.jsonl"
    assert s.paths == {"train": str(out), "test": str(test_file)}
    train, test = _read(out), _read(test_file)
    assert len(train) + len(test) == 8 and s.test == len(test) > 0
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}      # no prompt on both sides
    again = export(gen, tmp_path / "again.jsonl", "sft", test_size=0.34, seed=3)
    assert _read(tmp_path / "again.test.jsonl") == test and again.test == s.test   # same seed, same split
    other = [export(gen, tmp_path / f"o{k}.jsonl", "sft", test_size=0.34, seed=k) for k in range(4, 9)]
    assert any(_read(tmp_path / f"o{k}.test.jsonl") != test for k in range(4, 9)), other
    assert split_path("x/out.jsonl.gz") == Path("x/out.test.jsonl.gz")
    assert split_path("ds.parquet") == Path("ds.test.parquet")


def test_split_by_count_and_a_split_that_leaves_nothing_to_train_on(gen):
    from aligner.data import load

    rows = load(gen).rows
    train, test = split_by_prompt(rows, 2, seed=0)
    assert len({r.question for r in test}) == 2 and len(train) + len(test) == 8
    with pytest.raises(ConfigError) as e:
        split_by_prompt(rows, 7, seed=0)       # 7 distinct prompts: none left for training
    assert e.value.field == "test_size"


def test_chat_variants_are_trl_conversational(gen, tmp_path):
    export(gen, tmp_path / "s.jsonl", "sft", chat=True)
    export(gen, tmp_path / "d.jsonl", "dpo", chat=True)
    s, d = _read(tmp_path / "s.jsonl")[0], _read(tmp_path / "d.jsonl")[0]
    assert s == {"messages": [{"role": "user", "content": "How do I reach support?"},
                              {"role": "assistant", "content": "Mail [EMAIL] today."}]}
    assert d == {"prompt": [{"role": "user", "content": "How do I reach support?"}],
                 "chosen": [{"role": "assistant", "content": "Mail [EMAIL] today."}],
                 "rejected": [{"role": "assistant", "content": "Mail jane.doe@example.com today."}]}


def test_cli_prints_kept_and_dropped_with_reasons(gen, tmp_path, capsys):
    from aligner.cli import main

    rc = main(["export", "--format", "dpo", str(gen), str(tmp_path / "o.jsonl"), "--dedup", "--test-size", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "read 8 rows" in out and "dropped 2: unchanged (correction == answer)" in out
    assert "dropped 1: duplicate prompt" in out
    assert f"kept 5 DPO rows: 4 → {tmp_path / 'o.jsonl'}, 1 → {tmp_path / 'o.test.jsonl'}" in out


def test_hh_rlhf_input_exports_as_preference_pairs(tmp_path):
    from hh_data import SAMPLE

    s = export(SAMPLE, tmp_path / "hh.jsonl", "dpo", input_format="hh-rlhf", lenient=True)
    rows = _read(tmp_path / "hh.jsonl")
    assert s.read == 32 and sum(s.skipped.values()) == 5     # the sample's malformed rows: skipped and counted
    assert s.train == len(rows) == 27 and all(r["chosen"] != r["rejected"] for r in rows)
    assert all(r["prompt"].startswith("User: ") and r["prompt"].endswith("\nAssistant:") for r in rows)


# ----------------------------------------------------------------------------- datasets / trl

def test_to_dataset_writes_a_save_to_disk_directory_and_parquet(gen, tmp_path):
    datasets = pytest.importorskip("datasets")
    export(gen, tmp_path / "d.jsonl", "dpo", test_size=0.2, to_dataset=tmp_path / "ds")
    dd = datasets.load_from_disk(str(tmp_path / "ds"))
    assert set(dd) == {"train", "test"}
    assert dd["train"].to_list() == _read(tmp_path / "d.jsonl")
    assert dd["test"].to_list() == _read(tmp_path / "d.test.jsonl")
    export(gen, tmp_path / "p.jsonl", "sft", chat=True, test_size=0.2, to_dataset=tmp_path / "p.parquet")
    pq = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "p.parquet"),
                                                      "test": str(tmp_path / "p.test.parquet")})
    assert pq["train"].to_list() == _read(tmp_path / "p.jsonl")
    assert pq["test"].num_rows == len(_read(tmp_path / "p.test.jsonl"))


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    pytest.importorskip("trl")
    from aligner.train.tiny import make_tiny_corrector

    texts = [f"User: {r['question']}\nAssistant: {r['answer']} {r['correction']}" for r in _gen_rows()]
    path = make_tiny_corrector(tmp_path_factory.mktemp("lm"), texts * 4, "causal", vocab_size=300, context=128,
                               hidden_size=32, layers=1, heads=2)
    return path


def _trl_args(cls, out: Path, **kw):
    return cls(output_dir=str(out), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, report_to=[],
               use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no", disable_tqdm=True,
               logging_steps=1, **kw)


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
def test_trl_sft_and_dpo_trainers_train_on_the_export(gen, tmp_path, tiny_lm, chat):
    """The export loads with ``datasets`` and trains with trl's own trainers, unchanged."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    export(gen, tmp_path / "sft.jsonl", "sft", chat=chat)
    export(gen, tmp_path / "dpo.jsonl", "dpo", chat=chat)
    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    sft_ds = load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    dpo_ds = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm), dtype=torch.float32)
    sft = SFTTrainer(model=model, args=_trl_args(SFTConfig, tmp_path / "s", max_length=128), train_dataset=sft_ds,
                     processing_class=tok)
    row = sft.train_dataset[0]
    labels_on = [label for label in row["labels"] if label != -100]
    completion = tok.decode(labels_on)
    assert "Mail [EMAIL] today." in completion
    if not chat:
        assert "support" not in completion        # prompt-completion rows: the loss is on the correction only
    # (``messages`` rows: trl trains the whole conversation unless assistant_only_loss with a {% generation %}
    # template; aligner train-strong turns them into prompt + last turn, see test_train_strong.py)
    sft_loss = sft.train().training_loss
    assert sft_loss == sft_loss and sft_loss > 0                       # a real, finite loss

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm), dtype=torch.float32)
    dpo = DPOTrainer(model=model, args=_trl_args(DPOConfig, tmp_path / "d", max_length=128), train_dataset=dpo_ds,
                     processing_class=tok)
    first = dpo.train_dataset[0]
    assert "[EMAIL]" in tok.decode(first["chosen_ids"]) and "jane.doe" in tok.decode(first["rejected_ids"])
    out = dpo.train()
    assert abs(out.training_loss - 0.6931) < 0.05                       # first DPO step: log 2, policy == reference


# ----------------------------------------------------------------------------- bad input

def test_empty_file_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError) as e:
        export(empty, tmp_path / "o.jsonl", "sft")
    assert "empty.jsonl" in str(e.value) and "empty" in str(e.value).split("empty.jsonl", 1)[1]
    assert not (tmp_path / "o.jsonl").exists()


def test_dpo_export_where_every_pair_is_unchanged_is_an_error_not_an_empty_file(tmp_path):
    same = tmp_path / "same.jsonl"
    same.write_text("".join(json.dumps({"question": f"Q{i}?", "answer": "Fine.", "correction": "Fine."}) + "\n"
                            for i in range(3)))
    with pytest.raises(DataError) as e:
        export(same, tmp_path / "o.jsonl", "dpo")
    msg = str(e.value)
    assert "same.jsonl" in msg and "3 unchanged" in msg and "--format sft" in msg
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_field_names_file_row_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a", "correction": "c"}) + "\n"
                   + json.dumps({"question": "q2", "answer": "a2"}) + "\n")
    with pytest.raises(DataError) as e:
        export(bad, tmp_path / "o.jsonl", "sft")
    assert e.value.field == "correction" and e.value.row == 2 and "bad.jsonl" in str(e.value)
    s = export(bad, tmp_path / "o.jsonl", "sft", lenient=True)   # or skipped, and counted
    assert s.train == 1 and s.skipped and "skipped 1 malformed" in s.lines()[0]


def test_keeping_unchanged_pairs_in_dpo_is_refused(gen, tmp_path):
    with pytest.raises(ConfigError) as e:
        export(gen, tmp_path / "o.jsonl", "dpo", drop_unchanged=False)
    assert e.value.field == "drop_unchanged"


def test_cli_reports_errors_with_file_and_fix(tmp_path, capsys):
    from aligner.cli import main

    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    rc = main(["export", "--format", "dpo", str(empty), str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "e.jsonl" in err and "Fix:" in err
