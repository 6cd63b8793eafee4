"""Issue 26: the wild rows (Faker's contacts, decoys, sums, harmful instructions, rare words), their
determinism, each kind's properties, and the held-out sets kept apart from training generation."""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("faker")
pytest.importorskip("phonenumbers")

from aligner.data.synthetic import (HELDOUT_LOCALES, PLACEHOLDERS, TRAIN_LOCALES, contact_replaced_ok,  # noqa: E402
                                    contact_spans, generate, library_versions, refusal_outcome, wild_heldout)
from aligner.data.synthetic.decoys import DECOYS, decoy_value  # noqa: E402
from aligner.data.synthetic.harm import HARM_TOPICS, HELDOUT_OPENERS, HELDOUT_SHAPES, HELDOUT_STEPS, SHAPES  # noqa: E402
from aligner.data.synthetic.sums import HELDOUT_SUM_FORMS, HELDOUT_SUM_FRAMES, SUM_FORMS, sum_sentence  # noqa: E402
from aligner.data.synthetic.wild import ROLE_USERS, finds_phone, is_phone, region_of  # noqa: E402
from aligner.data.synthetic.wild_rows import HELDOUT_GLUES, HELDOUT_LEADS, HELDOUT_TAILS  # noqa: E402
from aligner.runtime.edit_checks import find_sums  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORDS = ["apple", "river", "lantern", "marble", "copper", "meadow", "quixotic", "palimpsest", "zephyr", "obdurate"]
#: the rebuild's stage-15 recipe (train/demo_corrector.py VARIANTS_WILD, MIX_WILD)
MIX = {"identity": 0.38, "redact": 0.34, "arithmetic": 0.14, "refusal": 0.14}
VARIANTS = {"identity": {"plain": 0.12, "scramble": 0.12, "short": 0.06, "arithmetic": 0.03, "refusal": 0.02,
                         "decoy": 0.25, "rightsum": 0.15, "rare": 0.12, "wild": 0.13},
            "redact": {"template": 0.02, "spliced": 0.05, "scattered": 0.05, "anylead": 0.13, "anysep": 0.15, "wild": 0.6},
            "arithmetic": {"classic": 0.25, "wild": 0.75}, "refusal": {"classic": 0.2, "wild": 0.8}}
ONLY_WILD = {"identity": {"decoy": 1, "rightsum": 1, "rare": 1, "wild": 1}, "redact": {"wild": 1},
             "arithmetic": {"wild": 1}, "refusal": {"wild": 1}}
#: what the pinned libraries (pyproject's synth extra) draw for ``_sample()``; re-record only on purpose
PINNED = {"faker": "40.63.0", "phonenumbers": "9.0.43"}
RECORDED_DIGEST = "63a89d11a829ee91499ae4f19b9adf717fd245a582d616fe7a454690313b2e77"


def _sample() -> list[dict]:
    return [r.to_dict() for r in generate(240, seed=15, mix=MIX, variants=VARIANTS, questions="echo", words=WORDS,
                                          freq_words=WORDS)]


@pytest.fixture(scope="module")
def rows():
    return generate(1200, seed=3, mix={"identity": 0.4, "redact": 0.3, "arithmetic": 0.15, "refusal": 0.15},
                    variants=ONLY_WILD, words=WORDS, freq_words=WORDS)


def _by(rows, variant, category=None):
    return [r for r in rows if r.meta.get("variant") == variant and (category is None or r.category == category)]


def test_wild_rows_are_a_pure_function_of_the_seed():
    a = _sample()
    assert a == _sample()  # run to run, byte for byte (Faker re-seeded from the generator's RNG)
    assert a != [r.to_dict() for r in generate(240, seed=16, mix=MIX, variants=VARIANTS, questions="echo",
                                                 words=WORDS, freq_words=WORDS)]
    versions = library_versions()
    if any(versions.get(k) != v for k, v in PINNED.items()):
        pytest.skip(f"the recorded digest is for {PINNED}; installed {versions}")
    digest = hashlib.sha256(json.dumps(a, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert digest == RECORDED_DIGEST, "the wild rows changed: re-record only when the generator changes on purpose"


def test_default_rows_draw_nothing_from_the_wild_variants():
    rows = generate(200, seed=0)
    assert not any(r.meta.get("variant") in ("wild", "decoy", "rightsum", "rare") for r in rows)


def test_wild_contacts_are_replaced_and_everything_else_kept(rows):
    red = _by(rows, "wild", "redact")
    assert len(red) > 250
    kinds, locales, users, tlds = Counter(), Counter(), Counter(), Counter()
    for r in red:
        spans = contact_spans(r.answer, r.correction)
        assert spans and len(spans) == len(re.findall(r"\[(EMAIL|PHONE|CARD|ADDRESS)\]", r.correction))
        assert contact_replaced_ok(r.answer, r.correction, r.correction)
        assert not contact_replaced_ok(r.answer, r.correction, r.answer)
        locales[r.meta["locale"]] += 1
        for kind, span in zip(re.findall(r"\[(EMAIL|PHONE|CARD|ADDRESS)\]", r.correction), spans):
            kinds[kind] += 1
            if kind == "EMAIL":
                user, domain = span.split("@")
                users[user] += 1
                tlds[domain.rsplit(".", 1)[1]] += 1
                assert re.fullmatch(r"[\w.+'-]+@[\w.-]+\.[a-z]{2,}", span), span
            elif kind == "PHONE":  # libphonenumber calls every phone valid in its locale
                assert is_phone(span, region_of(r.meta["locale"])), (span, r.meta["locale"])
            elif kind == "CARD":
                digits = [int(c) for c in span if c.isdigit()]
                checksum = sum(d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d)
                               for i, d in enumerate(reversed(digits)))
                assert checksum % 10 == 0 and 13 <= len(digits) <= 19  # a Luhn-valid card number
    assert set(kinds) == {"EMAIL", "PHONE", "CARD", "ADDRESS"}
    assert set(locales) <= set(TRAIN_LOCALES) and len(locales) >= 10
    assert sum(users[u] for u in users if u.split("-")[0].split(".")[0] in ROLE_USERS) > 40  # role addresses
    assert sum(1 for u in users if "-" in u or "." in u) > 20
    assert {"io", "dev", "app", "shop"} & set(tlds) and len(tlds) > 15  # newer top-level domains
    assert any(re.search(r"[:(<\[\"=]\[(EMAIL|PHONE)\]", r.correction) for r in red)  # glued to other text
    assert sum(r.meta["n_decoys"] > 0 for r in red) > len(red) / 3  # decoys beside contacts, copied


def test_decoys_are_copied_and_no_bare_decoy_is_a_phone(rows):
    dec = _by(rows, "decoy")
    assert len(dec) > 80 and all(r.answer == r.correction for r in dec)
    assert not any(p in r.answer for r in dec for p in PLACEHOLDERS.values())
    import random

    rng = random.Random(7)
    seen = Counter()
    for kind in DECOYS:
        for _ in range(25):
            v = decoy_value(rng, kind, rng.choice(TRAIN_LOCALES))
            seen[kind] += 1
            if kind in ("distance", "height", "population", "price", "year", "time", "score", "date", "measure"):
                assert not finds_phone(v), (kind, v)
            if kind == "handle":
                assert v.startswith("@") and "." not in v
            if kind == "domain":
                assert "@" not in v and "." in v
    text = " ".join(r.answer for r in dec)
    assert re.search(r"\d{1,3}(,\d{3})+", text) and re.search(r"\b\d{5,}\b", text)  # with and without separators
    assert "ISBN" in text and "@" in text


def test_right_sums_are_copied_and_wrong_sums_fixed_in_their_result_only(rows):
    right = _by(rows, "rightsum")
    assert right and all(r.answer == r.correction for r in right)
    assert all(find_sums(r.answer) and all(s.right for s in find_sums(r.answer)) for r in right)
    wrong = _by(rows, "wild", "arithmetic")
    assert len(wrong) > 100
    for r in wrong:
        (bad,), (good,) = find_sums(r.answer), find_sums(r.correction)
        assert not bad.right and good.right and (bad.a, bad.op, bad.b) == (good.a, good.op, good.b)
        assert r.answer[:bad.span[0]] == r.correction[:good.span[0]]  # only the result differs
        assert r.answer[bad.span[1]:] == r.correction[good.span[1]:]
    assert max(max(s.a, s.b) for r in wrong for s in find_sums(r.answer)) >= 100  # three-digit operands


def test_every_sum_form_reads_back_as_a_sum():
    import random

    rng = random.Random(1)
    for _ in range(400):
        for heldout in (False, True):
            for right in (True, False):
                answer, correction, meta = sum_sentence(rng, right=right, heldout=heldout)
                found = find_sums(answer)
                assert len(found) == 1 and found[0].right == right, (answer, found)
                assert find_sums(correction)[0].right and find_sums(correction)[0].c == meta["right"]
    assert len(SUM_FORMS) >= 10


def test_harmful_answers_come_in_many_shapes_and_are_refused_whole(rows):
    harm = _by(rows, "wild", "refusal")
    assert len(harm) > 100
    assert {r.meta["shape"] for r in harm} == set(SHAPES) and len({r.meta["topic"] for r in harm}) == len(HARM_TOPICS)
    for r in harm:
        assert refusal_outcome(r.answer, r.correction) == "refused"
        assert refusal_outcome(r.answer, r.answer) == "kept"
        assert refusal_outcome(r.answer, r.correction + " " + r.answer) == "half"


def test_rare_words_and_fakers_names_are_copied(rows):
    rare = _by(rows, "rare")
    assert rare and all(r.answer == r.correction for r in rare)
    assert sum(any(w in r.answer.split() for w in ("quixotic", "palimpsest", "zephyr", "obdurate")) for r in rare) > 10
    wild = _by(rows, "wild", "identity")
    assert wild and all(r.answer == r.correction for r in wild)
    assert any(any(ord(c) > 127 for c in r.answer) for r in wild)  # accented names of other locales


# -- held out ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def heldout():
    return wild_heldout(["A short walk after lunch can make the afternoon feel less sluggish.",
                         "Most parks have maps at the entrance showing the walking trails."], WORDS, seed=5, n=300)


def test_the_generated_heldout_set_is_written_unlike_training(rows, heldout):
    assert Counter(r.meta["kind"] for r in heldout) == {"contact": 90, "fine_decoy": 60, "wrong_sum": 45,
                                                        "harmful": 45, "fine_rightsum": 30, "glued": 30}
    assert {r.meta["locale"] for r in heldout if "locale" in r.meta} <= set(HELDOUT_LOCALES)
    assert not set(HELDOUT_LOCALES) & set(TRAIN_LOCALES)
    training = " ".join(r.answer for r in rows)
    heldout_only = [s for steps in HELDOUT_STEPS.values() for s in steps] + list(HELDOUT_OPENERS)
    assert not any(s in training for s in heldout_only)  # held-out steps and openers never in training rows
    assert {r.meta["shape"] for r in heldout if r.meta["kind"] == "harmful"} <= set(HELDOUT_SHAPES)
    assert not set(HELDOUT_SHAPES) & set(SHAPES)
    for frame in HELDOUT_SUM_FRAMES:
        assert frame.split("{")[0].strip() not in training or not frame.split("{")[0].strip()
    leads = [lead for ls in HELDOUT_LEADS.values() for lead in ls]
    assert not any(lead in training for lead in leads)
    assert not any(t.strip(" .") and t in training for t in HELDOUT_TAILS)
    assert all(g not in ("{l}: {v}", "{l}:{v}") for g in HELDOUT_GLUES)
    assert {kind for kind, _ in HELDOUT_SUM_FORMS} and all(f not in SUM_FORMS for f in HELDOUT_SUM_FORMS)
    for r in heldout:
        if r.category == "redact":
            assert contact_replaced_ok(r.answer, r.correction, r.correction)
        elif r.category == "refusal":
            assert refusal_outcome(r.answer, r.correction) == "refused"
        elif r.category == "identity":
            assert r.answer == r.correction


def test_the_hand_written_cases_are_read_by_no_training_step():
    """train/heldout/issue26_cases.jsonl: 100+ cases of every kind; no generator module or training
    step names the file (only the measure step does), and no generated row contains one of them."""
    path = REPO / "train" / "heldout" / "issue26_cases.jsonl"
    cases = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(cases) >= 100 and len({c["id"] for c in cases}) == len(cases)
    assert {c["kind"] for c in cases} >= {"fine_numbers", "right_sum", "wrong_sum", "harmful", "role_email",
                                          "glued_email", "phone"}
    for c in cases:
        if c["category"] == "redact":
            assert contact_replaced_ok(c["answer"], c["correction"], c["correction"]), c["id"]
        if c["category"] == "arithmetic":
            assert not all(s.right for s in find_sums(c["answer"])) and all(s.right for s in find_sums(c["correction"]))
        if c["kind"] == "right_sum":
            assert find_sums(c["answer"]) and all(s.right for s in find_sums(c["answer"])), c["id"]
    readers = [p for p in (REPO / "aligner").rglob("*.py") if "issue26_cases" in p.read_text()]
    readers += [p for p in (REPO / "train").glob("*.py") if "issue26_cases" in p.read_text()]
    assert [p.name for p in readers] == ["demo_corrector.py"]
    source = (REPO / "train" / "demo_corrector.py").read_text()
    assert source.count("HAND_CASES") == 2  # defined once, read once: by wild_eval_files (the measure step)
    training = {r.answer for r in generate(1500, seed=15, mix=MIX, variants=VARIANTS, questions="echo", words=WORDS,
                                           freq_words=WORDS)}
    assert not {c["answer"] for c in cases} & training
