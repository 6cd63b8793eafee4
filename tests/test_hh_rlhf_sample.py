"""Everything that reads HH-RLHF files, tested on rows the project writes itself (tests/data/).

Each test here covers the behaviour of a real-data test in test_data.py / test_synthetic.py (named
in its docstring), so a plain clone without ``../shared/data`` still tests it. Expected values were
worked out by reading ``tests/data/make_hh_rlhf_sample.py``, where every row is written out.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aligner.cli import main
from aligner.data import load
from aligner.data.synthetic import (generate, has_danger, is_clean_sentence, is_refusal, sentences_from_hh_rlhf,
                                    splice_contacts, split_into_sentences, split_sentences)
from aligner.contracts.errors import DataError
from hh_data import ENV, SAMPLE

sys.path.insert(0, str(SAMPLE.parent))
import make_hh_rlhf_sample  # noqa: E402  (tests/data, the script that writes SAMPLE)


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return sentences_from_hh_rlhf(SAMPLE)


def test_committed_sample_is_what_the_script_writes():
    assert SAMPLE.read_bytes() == make_hh_rlhf_sample.render()
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == 32 and all(set(r) == {"chosen", "rejected"} for r in rows)
    assert all(r["chosen"].startswith("\n\nHuman: ") and "\n\nAssistant:" in r["rejected"] for r in rows)


# ----------------------------------------------------------------------------- aligner.data (test_data.py)

def test_sample_counts_skips_and_strict_stop():
    """Covers test_hh_rlhf_real_sample_counts: lenient counts, skipped rows by field, strict stops at the first."""
    res = load(SAMPLE, "hh-rlhf", lenient=True)
    assert len(res.rows) == 27 and len(res.skipped) == 5
    assert [s.row for s in res.skipped if s.field == "chosen"] == [7, 27]
    assert [s.row for s in res.skipped if s.field == "rejected"] == [15, 22, 30]
    assert "differs" in {s.row: s.reason for s in res.skipped}[22]
    assert all(r.question.strip() and r.answer.strip() and r.correction.strip() for r in res.rows)
    with pytest.raises(DataError) as info:
        load(SAMPLE, "hh-rlhf")
    assert info.value.row == 7 and info.value.field == "chosen"


def test_sample_rows_by_hand():
    """Covers test_hh_rlhf_rows_by_hand: single-turn question, quotes kept verbatim, multi-turn context."""
    rows = {r.row: r for r in load(SAMPLE, "hh-rlhf", lenient=True, limit=10).rows}
    single = rows[2]
    assert single.question == "Is it possible to learn the piano as an adult?"
    assert single.answer == "I\u2019m not sure, maybe it\u2019s too late for you."
    assert single.correction == ("Yes, adults learn the piano all the time. It\u2019s easier if you practise a "
                                 "little every day. A patient teacher can help you build good habits early.")
    assert single.meta == {"turns": 1}

    multi = rows[4]  # three human turns: the earlier turns are kept as context
    assert multi.meta == {"turns": 3}
    assert multi.question == ("Human: I want to start running.\n\nAssistant: That is a great goal. Start with "
                              "short, easy runs a few times a week.\n\nHuman: How do I stay motivated?\n\n"
                              "Assistant: Running with a friend makes it easier to keep going. Keep a simple "
                              "log of every run.\n\nHuman: What if I miss a week?")
    assert multi.answer == "Then you should give up, you clearly do not have the discipline."
    assert multi.correction.startswith("Missing a week is normal and nothing to worry about.")
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11]  # limit counts rows loaded; row 7 is skipped


def test_cli_convert_sample(tmp_path, capsys):
    """Covers test_cli_convert_hh_rlhf: counts and reasons printed, strict exit 2 naming the row."""
    out = tmp_path / "hh.jsonl"
    assert main(["data", "convert", "--format", "hh-rlhf", str(SAMPLE), str(out), "--lenient"]) == 0
    printed = capsys.readouterr().out
    assert "27 rows written" in printed and "5 skipped" in printed and "last assistant turn is empty" in printed
    assert "line 22 (rejected)" in printed
    lines = out.read_text().splitlines()
    assert len(lines) == 27 and json.loads(lines[1])["question"] == "Is it possible to learn the piano as an adult?"
    assert main(["data", "convert", "--format", "hh-rlhf", str(SAMPLE), str(tmp_path / "x.jsonl")]) == 2
    assert "line 7" in capsys.readouterr().err


# ----------------------------------------------------------------------------- synthetic pool (test_synthetic.py)

def test_sample_sentences_are_clean_sorted_and_filtered(pool):
    """Covers test_sentences_from_hh_rlhf_are_clean_and_sorted, with the drops checked one by one."""
    assert len(pool) > 60 and pool == sorted(set(pool))
    assert all(is_clean_sentence(s) for s in pool)
    assert not any(re.search(r"\d|@|Human:|Assistant:", s) for s in pool)
    assert not any(is_refusal(s) or has_danger(s) for s in pool)
    kept = ("Pack more socks than you think you need.",          # row 3, chosen
            "It's easier if you practise a little every day.",  # row 2: curly quote made ASCII
            "Start with short, easy runs a few times a week.",  # row 4: an earlier assistant turn
            "You could ask your neighbour politely if they would share it.")  # row 5, after a refusal
    dropped = ("I can't help with that.",                          # refusal (row 5)
               "Most shops answer within 14 days.",                # digits (row 6)
               "Write to support@kettle-shop.example and mention your order number.",  # e-mail (row 6)
               "No, a candle left burning can start a fire.",     # blocklisted word (row 12)
               "Good question!", "Congratulations!",              # too short (rows 17, 13)
               "Just water them every day and hope for the best.")  # only in a rejected turn (row 1)
    assert all(s in pool for s in kept), [s for s in kept if s not in pool]
    assert not any(s in pool for s in dropped)
    assert not any(s.startswith("Copying the drawings") for s in pool)  # over 110 characters (row 17)


def test_generation_from_sample_sentences(pool):
    """Covers test_generation_from_real_sentences: rows built from the train side only."""
    train, held = split_sentences(pool)
    assert held and len(train) > 40
    rows = generate(300, seed=1, sentences=train)
    used = {s for r in rows for s in split_into_sentences(r.answer)}
    assert len(used & set(train)) > len(train) * 0.7  # really built from this pool
    assert not used & set(held)


def test_cli_synth_with_sample(tmp_path, capsys):
    """Covers test_cli_synth_with_hh_rlhf."""
    out = tmp_path / "s.jsonl"
    assert main(["data", "synth", str(out), "--n", "20", "--seed", "0", "--hh-rlhf", str(SAMPLE)]) == 0
    assert "20 synthetic rows" in capsys.readouterr().out
    rows = load(out).rows
    pool = set(sentences_from_hh_rlhf(SAMPLE))
    assert len(rows) == 20 and any(s in pool for r in rows for s in split_into_sentences(r.answer))
    assert main(["data", "synth", str(out), "--n", "5", "--hh-rlhf", str(tmp_path / "missing.gz")]) == 2
    assert "missing.gz" in capsys.readouterr().err


def test_prompts_from_sample_fit_a_tiny_models_context(pool):
    """Covers test_prompts_fit_a_tiny_models_context."""
    from aligner.contracts.templates import get_template

    train, held = split_sentences(pool)
    template = get_template("aligner-v1.0")
    for rows in (generate(600, seed=2, sentences=train), splice_contacts(held, seed=2, n=100)):
        for r in rows:
            assert len(re.findall(r"\w+|[^\w\s]", template.render(r.question, r.answer))) <= 120, r.answer
            assert 1 <= len(split_into_sentences(r.answer)) <= 4, r.answer


def test_sample_pool_reads_chosen_by_default_and_blocks_leaks(pool):
    """Covers test_hh_pool_reads_chosen_turns_by_default_and_blocks_known_leaks."""
    both = sentences_from_hh_rlhf(SAMPLE, sides=("chosen", "rejected"))
    assert set(pool) < set(both)
    assert "Cars make all kinds of noises." in set(both) - set(pool)  # clean, but only in a rejected turn
    assert sentences_from_hh_rlhf(SAMPLE, limit=10) == pool[:10]
    rejected = gzip.open(SAMPLE, "rt").read()
    for leak in ("poke their eyes out", "windpipe", "grab it", "acid on her skin", "brake line"):
        assert leak in rejected  # the harmful text is in the file …
        assert not any(leak in s.lower() for s in both), leak  # … and never reaches the pool


# test_synthetic.py::test_redacted_text_has_no_digits_or_at_signs_left runs on this sample as well
# (its "sample" case), so it is not repeated here.


# ----------------------------------------------------------------------------- the real-data layer

def test_real_data_tests_say_where_to_get_the_data(tmp_path):
    """In a plain clone the real-data tests skip with a reason naming the hub dataset and the variable;
    pointed at another HH-RLHF file, the general ones run and the exact-count ones say why they skip."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", ENV: str(tmp_path / "absent.jsonl.gz")}
    tests = Path(__file__).resolve().parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           str(tests / "test_data.py"), "-k", "hh_rlhf_real or hh_rlhf_rows_by_hand or cli_convert_hh_rlhf"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tests.parent)
    assert "3 skipped" in done.stdout, done.stdout
    assert done.stdout.count("Anthropic/hh-rlhf") >= 1 and f"{ENV}=" in done.stdout

    other = tmp_path / "other.jsonl.gz"
    other.write_bytes(SAMPLE.read_bytes())
    env[ENV] = str(other)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tests.parent)
    assert "3 skipped" in done.stdout and "is another file" in done.stdout, done.stdout
