"""aligner.data.synthetic: determinism, category mix, each edit is right, held-out splice set, score, CLI synth."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aligner.cli import main
from aligner.data import load
from aligner.data.synthetic import (CATEGORIES, DANGER_TERMS, FALLBACK_SENTENCES, PLACEHOLDERS, REFUSAL_TOPICS,
                                    category_counts, check_arithmetic, generate, has_danger, is_clean_sentence,
                                    is_refusal, leftover_contacts, score, sentences_from_hh_rlhf,
                                    SPLICE_CLAUSES, splice_contacts, split_into_sentences, split_sentences)
from aligner.contracts.errors import ConfigError

# real HH-RLHF data, when present ($ALIGNER_HH_RLHF or ../shared/data); tests/test_hh_rlhf_sample.py
# covers the same behaviours on the project's own rows
from hh_data import REAL_HH as HH, SAMPLE, needs_real_hh as needs_hh, skip_without_real_hh  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return generate(800, seed=7)


@pytest.fixture(scope="module")
def hh_sentences():
    return sentences_from_hh_rlhf(skip_without_real_hh())


def test_same_seed_same_rows_different_seed_different_rows():
    a = [r.to_dict() for r in generate(200, seed=3)]
    assert a == [r.to_dict() for r in generate(200, seed=3)]
    b = [r.to_dict() for r in generate(200, seed=4)]
    assert a != b
    assert len({(r["answer"]) for r in a} ^ {(r["answer"]) for r in b}) > 100


def test_pool_order_does_not_matter():
    pool = list(FALLBACK_SENTENCES)
    assert [r.to_dict() for r in generate(50, seed=1, sentences=pool)] == \
           [r.to_dict() for r in generate(50, seed=1, sentences=list(reversed(pool)))]


def test_category_mix_is_exact(rows):
    counts = {c: sum(r.category == c for r in rows) for c in CATEGORIES}
    assert counts == {c: 200 for c in CATEGORIES}
    custom = generate(10, seed=0, mix={"identity": 2, "redact": 1, "refusal": 0.5, "arithmetic": 0.5})
    assert {c: sum(r.category == c for r in custom) for c in CATEGORIES} == \
           {"identity": 5, "redact": 3, "arithmetic": 1, "refusal": 1}
    assert sum(category_counts(7, {"redact": 1, "refusal": 1}).values()) == 7
    assert [r.row for r in custom] == list(range(1, 11)) and all(r.source == "synthetic" for r in custom)


@pytest.mark.parametrize("mix, words", [({"jokes": 1}, "unknown categories"), ({"redact": -1}, "non-negative"),
                                        ({"redact": 0}, "all weights are zero")])
def test_bad_mix_is_a_config_error(mix, words):
    with pytest.raises(ConfigError, match=words) as info:
        generate(5, mix=mix)
    assert info.value.field == "mix"


def test_identity_copies_exactly(rows):
    ident = [r for r in rows if r.category == "identity"]
    assert all(r.correction == r.answer for r in ident)
    assert {r.meta["variant"] for r in ident} == {"plain", "scramble", "arithmetic", "refusal"}
    # identity rows with arithmetic are right, so the model must check rather than always edit
    for r in ident:
        assert all(ok for _, ok in check_arithmetic(r.answer))
        assert not leftover_contacts(r.answer)


def test_redact_rows_have_placeholders_and_no_leftover_contacts(rows):
    red = [r for r in rows if r.category == "redact"]
    kinds = set()
    for r in red:
        assert r.answer != r.correction
        assert leftover_contacts(r.answer), r.answer
        assert not leftover_contacts(r.correction), r.correction
        for kind in r.meta["kinds"]:
            assert PLACEHOLDERS[kind] in r.correction
            kinds.add(kind)
        # the rest is copied exactly: removing placeholders and contact spans leaves the same text
        pattern = re.escape(r.correction)
        for ph in PLACEHOLDERS.values():
            pattern = pattern.replace(re.escape(ph), r"(.+?)")
        assert re.fullmatch(pattern, r.answer), (r.answer, r.correction)
        assert "@" not in r.correction
    assert kinds == set(PLACEHOLDERS)


def test_redact_rows_splice_contacts_into_real_sentences_too(rows):
    """Half the redact rows put contacts at random word positions, so a model learns the pattern, not a template."""
    red = [r for r in rows if r.category == "redact"]
    spliced = [r for r in red if r.meta["variant"] == "spliced"]
    assert {r.meta["variant"] for r in red} == {"template", "spliced", "scattered"} and 0.2 < len(spliced) / len(red) < 0.5
    assert any(len(r.meta["kinds"]) == 2 for r in spliced)
    assert {k for r in spliced for k in r.meta["kinds"]} == set(PLACEHOLDERS)
    starts = set()
    for r in spliced:
        first = min(r.correction.index(PLACEHOLDERS[k]) for k in r.meta["kinds"])
        starts.add(r.correction[:first].count(" "))
        # the held-out splice set's shapes never occur in training rows: it still measures unseen phrasing
        for kind, clauses in SPLICE_CLAUSES.items():
            assert not any(c.format(v=PLACEHOLDERS[kind]) in r.correction for c in clauses), r.correction
    assert len(starts) > 8  # placeholders sit at many different word positions


def test_some_fine_answers_are_remixes_no_pool_sentence_equals(rows):
    """Remixed sentences (head of one, tail of another) cannot be memorised from the pool, only copied."""
    pool = set(FALLBACK_SENTENCES)
    plain = [r for r in rows if r.category == "identity" and r.meta["variant"] == "plain"]
    novel = [r for r in plain if any(s not in pool for s in split_into_sentences(r.answer))]
    assert 0.15 < len(novel) / len(plain) < 0.8
    assert all(is_clean_sentence(s, min_chars=5, max_chars=400) or s in pool
               for r in novel for s in split_into_sentences(r.answer) if len(s.split()) >= 5)


def test_arithmetic_rows_fix_the_result_and_copy_the_rest(rows):
    ar = [r for r in rows if r.category == "arithmetic"]
    ops = set()
    for r in ar:
        (wrong_stmt, ok_a), = check_arithmetic(r.answer)
        (right_stmt, ok_c), = check_arithmetic(r.correction)
        assert not ok_a and ok_c
        assert r.answer.replace(wrong_stmt, right_stmt, 1) == r.correction
        assert r.meta["right"] != r.meta["wrong"]
        ops.add(r.meta["expression"].split()[1])
    assert ops == {"+", "-", "*"}
    assert check_arithmetic("So 7 * 8 = 56 and 3 + 4 = 8.") == [("7 * 8 = 56", True), ("3 + 4 = 8", False)]


def test_refusal_rows_refuse_with_an_alternative_and_drop_the_danger(rows):
    ref = [r for r in rows if r.category == "refusal"]
    assert len({r.correction for r in ref}) > 20  # several phrasings
    for r in ref:
        assert has_danger(r.answer) and not is_refusal(r.answer)
        assert is_refusal(r.correction) and not has_danger(r.correction)
        assert len(r.correction.split(". ")) >= 2 or "?" in r.correction  # refusal + alternative
    for topic in REFUSAL_TOPICS:  # the scorer's markers cover every harmful answer, no alternative
        assert all(has_danger(a) for a in topic["answers"])
        assert not any(has_danger(a) for a in topic["alternatives"])


def test_items_stay_short(rows):
    assert max(len(r.question) for r in rows) < 100
    assert max(len(r.answer) for r in rows) < 400 and max(len(r.correction) for r in rows) < 400


def test_every_generated_correction_scores_true(rows):
    assert all(score(r.category, r.correction, r.correction, answer=r.answer) for r in rows)
    # copying the answer fails on every edited row
    for r in rows:
        assert score(r.category, r.correction, r.answer, answer=r.answer) == (r.category == "identity")


def test_score():
    assert score("identity", "Hello  there.\n", " Hello there.")
    assert not score("identity", "Hello there.", "Hello there!")
    assert score("redact", "Mail [EMAIL] now.", "Mail [EMAIL]  now.")
    assert not score("redact", "Mail [EMAIL] now.", "Mail a@b.com now.")
    assert score("arithmetic", "2 + 2 = 4.", "2 + 2 = 4.") and not score("arithmetic", "2 + 2 = 4.", "2 + 2 = 5.")
    assert score("refusal", "I can't help with that.", "Sorry, I can\u2019t assist with this request. Try a class.")
    assert not score("refusal", "I can't help with that.", "Sure, use a keylogger.")
    assert not score("refusal", "I can't help with that.", "I can't help with that, but a keylogger works.")
    assert not score("refusal", "x", "I won't provide that. Mix it into the soup slowly.",
                     answer="Mix it into the soup slowly.")
    assert score(None, "a", "a")
    with pytest.raises(ConfigError):
        score("poetry", "a", "a")


def test_generate_validates_n_and_pool():
    assert generate(0) == []
    with pytest.raises(ConfigError) as info:
        generate(-1)
    assert info.value.field == "n"
    with pytest.raises(ConfigError) as info:
        generate(5, sentences=["call 555-123-4567", "x@y.com"])
    assert info.value.field == "sentences"


@needs_hh
def test_sentences_from_hh_rlhf_are_clean_and_sorted(hh_sentences):
    assert len(hh_sentences) > 1000 and hh_sentences == sorted(set(hh_sentences))
    assert all(is_clean_sentence(s) for s in hh_sentences)
    assert not any(re.search(r"\d|@|Human:|Assistant:", s) for s in hh_sentences)
    assert not any(is_refusal(s) or has_danger(s) for s in hh_sentences)


@needs_hh
def test_generation_from_real_sentences(hh_sentences):
    train, held = split_sentences(hh_sentences)
    rows = generate(300, seed=1, sentences=train)
    used = {s for r in rows for s in split_into_sentences(r.answer)}
    assert len(used & set(train)) > 100  # really built from the real pool
    assert not used & set(held)


def test_split_sentences_is_deterministic_and_disjoint():
    pool = list(FALLBACK_SENTENCES)
    train, held = split_sentences(pool, 0.3)
    assert not set(train) & set(held) and set(train) | set(held) == set(pool)
    assert 5 < len(held) < 35
    assert split_sentences(reversed(pool), 0.3) == (train, held)
    # a sentence stays on its side when the pool grows
    train2, held2 = split_sentences(pool + ["An extra sentence that was not there before."], 0.3)
    assert set(held) <= set(held2) and set(train) <= set(train2)


def test_splice_contacts_held_out_set():
    train, held = split_sentences(FALLBACK_SENTENCES, 0.3)
    ev = splice_contacts(held, seed=0, n=40)
    assert [r.to_dict() for r in ev] == [r.to_dict() for r in splice_contacts(held, seed=0, n=40)]
    assert {r.category for r in ev} == {"redact", "identity"}
    for r in ev:
        assert r.meta["eval"] == "splice"
        assert not any(s in r.answer for s in train)  # only held-out sentences
        if r.category == "identity":
            assert r.answer == r.correction and not leftover_contacts(r.answer)
        else:
            assert leftover_contacts(r.answer) and not leftover_contacts(r.correction)
            assert PLACEHOLDERS[r.meta["kinds"][0]] in r.correction
        assert score(r.category, r.correction, r.correction)


def test_cli_synth_writes_rows_load_reads_back(tmp_path, capsys):
    out, ev = tmp_path / "synth.jsonl", tmp_path / "eval.jsonl"
    assert main(["data", "synth", str(out), "--n", "40", "--seed", "5", "--eval-out", str(ev), "--eval-n", "10"]) == 0
    printed = capsys.readouterr().out
    assert "40 synthetic rows" in printed and "10 held-out" in printed
    back = load(out).rows
    assert len(back) == 40 and {r.category for r in back} == set(CATEGORIES)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["category"] in CATEGORIES and set(first) >= {"question", "answer", "correction"}
    assert len(load(ev).rows) == 10
    again = tmp_path / "again.jsonl"
    assert main(["data", "synth", str(again), "--n", "40", "--seed", "5", "--eval-out", str(tmp_path / "e2.jsonl"),
                 "--eval-n", "10"]) == 0
    assert again.read_text() == out.read_text()
    assert main(["data", "synth", str(out), "--n", "8", "--mix", "redact=1"]) == 0
    assert {r.category for r in load(out).rows} == {"redact"}
    assert main(["data", "synth", str(out), "--n", "8", "--mix", "redact"]) == 2
    assert "mix" in capsys.readouterr().err


@needs_hh
def test_cli_synth_with_hh_rlhf(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["data", "synth", str(out), "--n", "20", "--seed", "0", "--hh-rlhf", str(HH)]) == 0
    assert "20 synthetic rows" in capsys.readouterr().out
    assert main(["data", "synth", str(out), "--n", "5", "--hh-rlhf", str(tmp_path / "missing.gz")]) == 2


def test_danger_terms_never_in_fallback_pool():
    assert not any(t in s.lower() for t in DANGER_TERMS for s in FALLBACK_SENTENCES)
    assert all(is_clean_sentence(s) for s in FALLBACK_SENTENCES)


def test_refusal_answers_are_varied_not_a_fixed_list(rows):
    """A tiny model must learn to spot dangerous content, not memorise a handful of answers."""
    ref = [r for r in rows if r.category == "refusal"]
    assert len({r.answer for r in ref}) > 80 and len({r.question for r in ref}) > 20
    assert {r.meta["topic"] for r in ref} == set(range(len(REFUSAL_TOPICS)))
    for topic in REFUSAL_TOPICS:
        assert len(topic["questions"]) >= 3 and len(topic["answers"]) >= 3 and len(topic["alternatives"]) >= 2
        assert not any(is_refusal(a) for a in topic["answers"])


def _pieces(text: str) -> int:
    """Words and punctuation marks: a lower bound-ish proxy for tokens of a small BPE vocabulary."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@needs_hh
def test_prompts_fit_a_tiny_models_context(hh_sentences):
    from aligner.contracts.templates import get_template

    train, held = split_sentences(hh_sentences)
    template = get_template("aligner-v1.0")
    for rows_ in (generate(600, seed=2, sentences=train), splice_contacts(held, seed=2, n=100)):
        for r in rows_:
            assert _pieces(template.render(r.question, r.answer)) <= 120, r.answer
            assert 1 <= len(split_into_sentences(r.answer)) <= 4, r.answer


@needs_hh
def test_hh_pool_reads_chosen_turns_by_default_and_blocks_known_leaks(hh_sentences):
    both = sentences_from_hh_rlhf(HH, sides=("chosen", "rejected"))
    assert set(hh_sentences) < set(both)
    assert sentences_from_hh_rlhf(HH, limit=10) == hh_sentences[:10]
    # harmful sentences that an earlier, narrower blocklist let through as "already fine" text
    for leak in ("Chink", "poke their eyes out", "windpipe", "grab it", "acid on her skin", "brake line"):
        assert not any(leak in s for s in both), leak


def test_console_script_synth_matches_in_process(tmp_path):
    import shutil
    import subprocess
    import sys

    script = Path(sys.executable).with_name("aligner")
    if not script.exists():
        found = shutil.which("aligner")
        if not found:
            pytest.skip("the aligner console script is not installed")
        script = Path(found)
    via_script, in_process = tmp_path / "script.jsonl", tmp_path / "inproc.jsonl"
    done = subprocess.run([str(script), "data", "synth", str(via_script), "--n", "12", "--seed", "9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "12 synthetic rows" in done.stdout
    assert main(["data", "synth", str(in_process), "--n", "12", "--seed", "9"]) == 0
    assert via_script.read_text() == in_process.read_text()


def test_importing_the_data_package_stays_light():
    import subprocess
    import sys

    code = ("import sys, aligner, aligner.data, aligner.data.synthetic, aligner.data.commands; "
            "print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("source", ["sample", pytest.param("real", marks=needs_hh)])
def test_redacted_text_has_no_digits_or_at_signs_left(source, rows, request):
    """An independent check of redaction (not the generator's own regexes): every contact value
    carries digits or '@' and the sentence pools carry neither, so a correct redaction has none.
    On the project's HH-RLHF sample always, on real HH-RLHF data where present."""
    pool = sentences_from_hh_rlhf(SAMPLE) if source == "sample" else request.getfixturevalue("hh_sentences")
    train, held = split_sentences(pool)
    redacted = [r for r in (*rows, *generate(300, seed=5, sentences=train), *splice_contacts(held, seed=5, n=100))
                if r.category == "redact"]
    assert len(redacted) > 300
    for r in redacted:
        assert re.search(r"\d|@", r.answer), r.answer
        assert not re.search(r"\d|@", r.correction), r.correction
        assert any(ph in r.correction for ph in PLACEHOLDERS.values())
