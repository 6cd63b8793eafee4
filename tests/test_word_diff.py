"""``Correction.diff()``: a readable word diff (the demo's edit view and ``aligner correct --diff``).

A full rewrite must read as one removed span and one added span, as ``git diff --word-diff`` shows
it, not as a scatter of chips around the few words (``a``, ``to``, ``.``) the two texts happen to
share; a small local edit must stay exactly that small.
"""
from __future__ import annotations

import pytest

from aligner.contracts.correction import Correction
from aligner.data.synthetic import generate

REWRITE = ("Build a fertilizer bomb with a cheap detonator and hide it where nobody looks.",
           "I'm not able to help with that request. If you like big bangs, a professional fireworks show is "
           "a safe way to see them.")


def diff(answer: str, correction: str) -> list[tuple[str, str]]:
    return Correction(question="q", answer=answer, correction=correction).diff()


def chips(ops: list[tuple[str, str]]) -> int:
    return sum(op != " " for op, _ in ops)


def assert_rebuilds(answer: str, correction: str, ops: list[tuple[str, str]]) -> None:
    assert "".join(t for op, t in ops if op != "+") == answer
    assert "".join(t for op, t in ops if op != "-") == correction
    assert all(t for _, t in ops)  # no empty spans
    assert all(a != b for a, b in zip(ops, ops[1:]) if a[0] == b[0] == " ")


def test_full_rewrite_is_one_removed_and_one_added_span():
    """The demo corrector's refusal of a dangerous answer: before the fix, 18 chips around 'a', ' ', '.'."""
    ops = diff(*REWRITE)
    assert_rebuilds(*REWRITE, ops)
    assert chips(ops) == 2
    assert ops[0] == ("-", REWRITE[0][:-1]) and ops[1] == ("+", REWRITE[1][:-1]) and ops[2] == (" ", ".")


def test_small_edits_stay_small():
    ops = diff("So 2 + 2 = 5.", "So 2 + 2 = 4.")
    assert ops == [(" ", "So 2 + 2 = "), ("-", "5"), ("+", "4"), (" ", ".")]
    # two redactions with three words between them stay two edits (the words between are kept)
    a = "You can email Maria at maria.garcia@example.com. Call Maria on +1 555 010 2345 after six."
    c = "You can email Maria at [EMAIL]. Call Maria on [PHONE] after six."
    ops = diff(a, c)
    assert_rebuilds(a, c, ops)
    assert [op for op, _ in ops] == [" ", "-", "+", " ", "-", "+", " "]
    assert ("-", "maria.garcia@example.com") in ops and ("+", "[PHONE]") in ops
    assert (" ", ". Call Maria on ") in ops
    # a lone punctuation edit is exact on its own: the words before it are not pulled into a span
    c = "You can email Maria at [EMAIL]. Call Maria on [PHONE] after six"
    ops = diff(a, c)
    assert_rebuilds(a, c, ops)
    assert ops[-4:] == [("-", "+1 555 010 2345"), ("+", "[PHONE]"), (" ", " after six"), ("-", ".")]


@pytest.mark.parametrize("answer, correction, merged", [
    # only punctuation/space between two edits: one span
    ("alpha, beta", "gamma, delta", [("-", "alpha, beta"), ("+", "gamma, delta")]),
    # two words between edits: one span
    ("one red fish two", "six red fish ten", [("-", "one red fish two"), ("+", "six red fish ten")]),
    # three words between edits: kept as they are
    ("one red fish swims two", "six red fish swims ten",
     [("-", "one"), ("+", "six"), (" ", " red fish swims "), ("-", "two"), ("+", "ten")]),
])
def test_islands_between_edits(answer, correction, merged):
    ops = diff(answer, correction)
    assert ops == merged
    assert_rebuilds(answer, correction, ops)


def test_unchanged_and_pure_insert_or_delete():
    assert diff("Keep me.", "Keep me.") == [(" ", "Keep me.")]
    assert diff("Hello.", "Hello there.") == [(" ", "Hello"), ("+", " there"), (" ", ".")]
    assert diff("Hello there.", "Hello.") == [(" ", "Hello"), ("-", " there"), (" ", ".")]
    assert diff("", "New text.") == [("+", "New text.")]
    assert diff("Old text.", "") == [("-", "Old text.")]


def test_every_synthetic_pair_rebuilds_both_texts():
    """Merging never loses or duplicates text: kept+removed is the answer, kept+added the correction."""
    rows = generate(400, seed=11)
    pairs = [(r.answer, r.correction) for r in rows] + [(r.correction, r.answer) for r in rows]
    pairs += [(rows[i].answer, rows[i + 1].correction) for i in range(len(rows) - 1)]  # unrelated texts
    for a, c in pairs:
        assert_rebuilds(a, c, diff(a, c))
    # unrelated texts come out as few chips, not dozens
    worst = max(chips(diff(rows[i].answer, rows[i + 1].correction)) for i in range(len(rows) - 1))
    assert worst <= 6
