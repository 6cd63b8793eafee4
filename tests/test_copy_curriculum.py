"""Issue 14: the copy curriculum (unmemorisable identity rows, scattered redaction rows) and the
user-facing measures (exact copy, spliced contacts, no damage), scored on hand-worked examples."""
from __future__ import annotations

import random
import re

import pytest

from aligner.data.synthetic import (PLACEHOLDERS, SPLICE_CLAUSES, contact_spans, exact_copy, generate, has_danger,
                                    insert_contacts, is_refusal, kept_outside_edits, leftover_contacts, scramble_text,
                                    spliced_contact_ok, word_list)
from aligner.contracts.errors import ConfigError

WORDS = ["apple", "river", "Quentin", "lantern", "marble", "seven", "Oslo", "whisper", "copper", "meadow"]
POOL = None  # the generator's built-in sentence pool


@pytest.fixture(scope="module")
def rows():
    return generate(600, seed=11, words=WORDS, variants={"identity": {"scramble": 1}, "redact": {"scattered": 1}},
                    mix={"identity": 1, "redact": 1})


def test_copy_curriculum_rows_are_seeded():
    kw = dict(words=WORDS, variants={"identity": {"scramble": 1}, "redact": {"scattered": 1}})
    a = [r.to_dict() for r in generate(120, seed=3, **kw)]
    assert a == [r.to_dict() for r in generate(120, seed=3, **kw)]
    assert a != [r.to_dict() for r in generate(120, seed=4, **kw)]


def test_scrambled_identity_rows_are_unmemorisable_and_copied_exactly(rows):
    ident = [r for r in rows if r.category == "identity"]
    assert len(ident) == 300 and all(r.meta["variant"] == "scramble" for r in ident)
    assert all(r.correction == r.answer for r in ident)
    assert len({r.answer for r in ident}) == len(ident)  # no two alike
    text = " ".join(r.answer for r in ident)
    assert re.search(r"\b[A-Z]{3,}\b", text) and re.search(r"\b\w*[a-z]\w*[A-Z]\w*\b", text)  # UPPER and mIxEd case
    assert re.search(r"\b(?=\w*\d)(?=\w*[A-Za-z])\w+\b", text)  # letter/digit strings
    assert any(c in text for c in ",;:!?\"(")
    vocab = {w.lower() for w in WORDS}
    made_up = {w.strip(",;:!?.\"()").lower() for r in ident for w in r.answer.split()} - vocab
    assert len(made_up) > 200  # made-up words and names beyond the word list
    for r in ident:  # still "fine": nothing a corrector should edit
        assert not leftover_contacts(r.answer) and "=" not in r.answer and "@" not in r.answer
        assert not has_danger(r.answer) and not is_refusal(r.answer)


def test_scattered_redaction_replaces_every_contact_and_nothing_else(rows):
    red = [r for r in rows if r.category == "redact"]
    assert all(r.meta["variant"] == "scattered" for r in red)
    assert {r.meta["n_contacts"] for r in red} == {1, 2, 3}
    firsts, lasts = 0, 0
    held = [c.format(v=PLACEHOLDERS[k]) for k, cs in SPLICE_CLAUSES.items() for c in cs]
    for r in red:
        spans = contact_spans(r.answer, r.correction)
        assert len(spans) == r.meta["n_contacts"] == len(re.findall(r"\[(EMAIL|PHONE|CARD|ADDRESS)\]", r.correction))
        assert all(leftover_contacts(s) for s in spans)  # every replaced span is a contact
        assert not leftover_contacts(r.correction) and not re.search(r"\d|@", r.correction)
        # words outside the contacts are identical, in order
        outside_answer = r.answer
        for span in spans:
            outside_answer = outside_answer.replace(span, " ", 1)
        outside_correction = re.sub(r"\[(EMAIL|PHONE|CARD|ADDRESS)\]", " ", r.correction)
        assert outside_answer.split() == outside_correction.split()
        assert not any(h in r.correction for h in held)  # held-out splice shapes stay unseen
        firsts += r.correction.split()[0].strip("(\"<").startswith("[")
        lasts += r.correction.split()[-1].strip(")\">,;:.").endswith("]")
    assert firsts > 10 and lasts > 10  # contacts at the very start and end too


def test_insert_contacts_on_a_hand_made_sentence():
    answer, correction = insert_contacts(random.Random(5), "one two three four", ["email", "phone"])
    assert sorted(re.findall(r"\[\w+\]", correction)) == ["[EMAIL]", "[PHONE]"]
    assert [w for w in correction.split() if w in {"one", "two", "three", "four"}] == ["one", "two", "three", "four"]
    assert len(contact_spans(answer, correction)) == 2


def test_word_list_filters_and_falls_back_without_a_system_list():
    got = word_list(["The bomb went off near Oslo's river, said Ann.", "x1 y@z"], system=False)
    assert "Oslo's" in got and "river" in got and "The" in got
    assert "bomb" not in got and not any(re.search(r"\d|@", w) for w in got)
    assert word_list([], system=False) == []
    with pytest.raises(ConfigError) as info:
        generate(3, words=["123", "@@"])
    assert info.value.field == "words"
    with pytest.raises(ConfigError) as info:
        generate(3, variants={"identity": {"nonsense": 1}})
    assert info.value.field == "variants"


def test_scramble_without_digits_has_none():
    rng = random.Random(1)
    assert not any(re.search(r"\d", scramble_text(rng, WORDS, digits=False)) for _ in range(200))


def test_contact_spans_hand_worked():
    assert contact_spans("Call 555-123-4567 or mail a@b.io now.", "Call [PHONE] or mail [EMAIL] now.") == \
        ["555-123-4567", "a@b.io"]
    assert contact_spans("No contact here.", "No contact here.") == []
    assert contact_spans("Totally different.", "Call [PHONE].") == []


def test_kept_outside_edits_hand_worked():
    a = "Do you - phone (708) 109-0809 - have any data?"
    e = "Do you - phone [PHONE] - have any data?"
    # the two contact words are the edit; 8 words lie outside it
    assert kept_outside_edits(a, e, e) == (8, 8)
    # the garble: only "Do you - phone" survives
    assert kept_outside_edits(a, e, "Do you - phone (708ure 10otpl, [PHONE], their computer?") == (4, 8)
    fine = "A spider has eight legs."
    assert kept_outside_edits(fine, fine, fine) == (5, 5)
    assert kept_outside_edits(fine, fine, "A spod has eight legs.") == (4, 5)
    assert kept_outside_edits(fine, fine, "") == (0, 5)


def test_spliced_contact_ok_hand_worked():
    a = "Trees drop - phone (708) 109-0809 - their leaves."
    e = "Trees drop - phone [PHONE] - their leaves."
    assert spliced_contact_ok(a, e, e)
    assert spliced_contact_ok(a, e, "Trees  drop - phone [PHONE] - their leaves.")  # whitespace only
    assert not spliced_contact_ok(a, e, a)  # contact kept
    assert not spliced_contact_ok(a, e, "Trees drop - phone - their leaves.")  # removed, no placeholder
    assert not spliced_contact_ok(a, e, "Trees drop - phone [EMAIL] - their leaves.")  # wrong placeholder
    assert not spliced_contact_ok(a, e, "Trees drop - phone [[PHONE] - their leaves.")  # garbled placeholder
    assert not spliced_contact_ok(a, e, "Trees drop - phone [PHONE] - their leafs.")  # another word damaged
    assert not spliced_contact_ok(a, e, "Trees drop - phone 303.5555.229 [PHONE] - their leaves.")  # garbled number left


def test_exact_copy_hand_worked():
    assert exact_copy("A spider has eight legs.", "A spider has eight legs.")
    assert exact_copy("A spider has eight legs.", " A spider  has eight legs. ")
    assert not exact_copy("A spider has eight legs.", "A spod has eight legs.")
    assert not exact_copy("Oranges are rich in vitamin C.", "Oranges are rich in viti.")


def test_anylead_rows_copy_arbitrary_lead_ins_and_replace_only_the_contact():
    rows = generate(400, seed=5, words=WORDS, variants={"redact": {"anylead": 1}}, mix={"redact": 1})
    held = [c.format(v=PLACEHOLDERS[k]) for k, cs in SPLICE_CLAUSES.items() for c in cs]
    kinds: dict[str, int] = {}
    lead_from_words = 0
    for r in rows:
        assert r.meta["variant"] == "anylead"
        spans = contact_spans(r.answer, r.correction)
        assert len(spans) == r.meta["n_contacts"] and all(leftover_contacts(s) for s in spans)
        assert not leftover_contacts(r.correction) and not any(h in r.correction for h in held)
        for k in r.meta["kinds"]:
            kinds[k] = kinds.get(k, 0) + 1
        # a word-list word right before a placeholder: a lead-in the generator did not pick from a phrase list
        lead_from_words += bool(re.search(r"\b(%s)[:,]? [\[(\"'{<|*/-]*\[(EMAIL|PHONE|CARD|ADDRESS)\]"
                                          % "|".join(WORDS), r.correction))
        kept, total = kept_outside_edits(r.answer, r.correction, r.correction)
        assert kept == total  # the correction itself damages nothing outside the contacts
    assert lead_from_words > 60
    assert kinds["address"] > kinds["email"] and kinds["card"] > kinds["phone"]  # weighted toward the hard kinds


def test_default_redaction_rows_never_draw_anylead():
    assert all(r.meta.get("variant") != "anylead" for r in generate(300, seed=2, words=WORDS) if r.category == "redact")


def test_shared_questions_carry_no_hint_of_the_edit_and_leave_answers_alone():
    from aligner.data.synthetic.generation import SHARED_QUESTIONS

    kw = dict(words=WORDS, mix={"identity": 1, "redact": 1}, variants={"identity": {"plain": 1, "scramble": 1}})
    by_cat, shared = generate(400, seed=9, **kw), generate(400, seed=9, questions="shared", **kw)
    assert [(r.answer, r.correction, r.category) for r in by_cat] == [(r.answer, r.correction, r.category)
                                                                       for r in shared]
    asked = {c: {r.question for r in by_cat if r.category == c} for c in ("identity", "redact")}
    assert not asked["identity"] & asked["redact"]  # the default: the question gives the category away
    asked = {c: {r.question for r in shared if r.category == c} for c in ("identity", "redact")}
    assert len(asked["identity"] & asked["redact"]) > 15  # shared: the same questions ask for both
    templates = {q.split("{")[0] for q in SHARED_QUESTIONS}
    assert all(any(r.question.startswith(t) for t in templates) for r in shared)
    with pytest.raises(ConfigError) as info:
        generate(3, questions="mixed")
    assert info.value.field == "questions"


def test_anysep_rows_wrap_contacts_and_decoys_in_symbols_but_never_a_single_dash():
    from aligner.data.synthetic.contacts import SEPARATORS

    rows = generate(400, seed=6, words=WORDS, variants={"redact": {"anysep": 1}}, mix={"redact": 1})
    held = [c.format(v=PLACEHOLDERS[k]) for k, cs in SPLICE_CLAUSES.items() for c in cs]
    seps = "|".join(re.escape(s) for s in sorted(SEPARATORS, key=len, reverse=True))
    between_symbols = decoys = 0
    for r in rows:
        assert r.meta["variant"] == "anysep"
        spans = contact_spans(r.answer, r.correction)
        assert len(spans) == r.meta["n_contacts"] and all(leftover_contacts(s) for s in spans)
        assert not leftover_contacts(r.correction) and not any(h in r.correction for h in held)
        assert " - [" not in r.correction  # the held-out single-dash wrapper stays unseen
        kept, total = kept_outside_edits(r.answer, r.correction, r.correction)
        assert kept == total
        between_symbols += len(re.findall(r"(?:^| )(?:%s) [^\[]*\[(?:EMAIL|PHONE|CARD|ADDRESS)\]" % seps, r.correction))
        # a symbol-wrapped span with no placeholder in it: a decoy, copied as it is
        decoys += len(re.findall(r"(?:^| )(%s) (?:\d+ )?(?:%s)(?: (?:%s))* \1(?: |$)" % (seps, "|".join(WORDS),
                                                                                          "|".join(WORDS)), r.answer))
    assert between_symbols > 100 and decoys > 40


def test_short_identity_rows_are_two_to_eight_words_copied():
    rows = generate(200, seed=4, words=WORDS, variants={"identity": {"short": 1}}, mix={"identity": 1})
    assert all(r.meta["variant"] == "short" and r.correction == r.answer for r in rows)
    assert all(2 <= len(r.answer.split(" ")) <= 8 and r.answer[-1] in ".!?" for r in rows)
    assert any(w in r.answer for r in rows for w in WORDS) and len({r.answer for r in rows}) > 100


def test_echo_questions_share_words_with_the_answer_and_leave_answers_alone():
    kw = dict(words=WORDS, mix={"identity": 1, "redact": 1},
              variants={"identity": {"plain": 1, "scramble": 1, "short": 1}, "redact": {"anysep": 1, "template": 1}})
    shared, echo = generate(400, seed=8, questions="shared", **kw), generate(400, seed=8, questions="echo", **kw)
    assert [(r.answer, r.correction) for r in shared] == [(r.answer, r.correction) for r in echo]

    def overlap(r) -> bool:
        ask = {w.strip("?.,").lower() for w in r.question.split()} - {"is", "it", "the", "a", "what", "how", "can"}
        return bool(ask & {w.strip(".,;:!?\"'()[]").lower() for w in r.correction.split()})

    assert sum(map(overlap, echo)) > 1.5 * sum(map(overlap, shared)) and sum(map(overlap, echo)) > 150
    assert not any(p in r.question for r in echo for p in PLACEHOLDERS.values())  # never a placeholder asked about
    assert all(r.question.rstrip()[-1] in "?." for r in echo)
