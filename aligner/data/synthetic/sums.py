"""Sums as people write them (issue 26): two- and three-digit operands, words around the statement,
``plus``/``is``/``the sum of … is`` as well as ``+``/``=``, right sums that must be copied and wrong
ones whose result (only) is fixed.

Why: the stage-14 demo corrector saw ``a op b = c`` with operands up to 50 in seven sentence frames;
on hand-written sums it fixed 5 of 10 wrong ones and changed 3 of 5 right ones to wrong ones. Every
form here is one :func:`aligner.runtime.edit_checks.find_sums` reads, so the guard can check what the model
writes (a test holds the two together).
"""
from __future__ import annotations

import random

#: ``{a} {op} {b}`` ... ``{c}`` forms; ``{op}`` is a symbol (``+``) or a word (``plus``), by the form's kind
SUM_FORMS = (
    ("sym", "{a} {op} {b} = {c}"), ("sym", "{a}{op}{b}={c}"), ("sym", "{a} {op} {b} is {c}"),
    ("sym", "{a} {op} {b} makes {c}"), ("word", "{a} {op} {b} is {c}"), ("word", "{a} {op} {b} equals {c}"),
    ("word", "{a} {op} {b} makes {c}"), ("word", "{a} {op} {b} gives {c}"), ("sum", "the sum of {a} and {b} is {c}"),
    ("sum", "adding {a} and {b} gives {c}"), ("sum", "{a} and {b} add up to {c}"),
    ("diff", "the difference between {a} and {b} is {c}"), ("prod", "the product of {a} and {b} is {c}"),
)
#: frames around a statement (``{s}``; a capital letter is made where it starts a sentence)
SUM_FRAMES = (
    "{s}.", "So {s}.", "I think {s}, but check it.", "That means {s}.", "If I add it up, {s}.", "Quick check: {s}.",
    "In total, {s}, so we are fine.", "{s}, which is what the shop charged.", "Remember that {s}.",
    "My answer is that {s}.", "We had {a} apples and bought {b} more, so {s}.", "Okay, {s}, right?",
    "The bill: {s} euros.", "Yes, {s}.", "Careful here, {s}, not more.", "Easy, {s}!",
)
#: held-out frames and forms (evaluation only: written unlike any training row)
HELDOUT_SUM_FRAMES = ("By my count {s}, so that's settled.", "Let me see... {s}.", "Done: {s}; the rest is unchanged.",
                      "For the record, {s} (I double-checked).")
HELDOUT_SUM_FORMS = (("word", "{a} {op} {b} comes to {c}"), ("sym", "{a} {op} {b} gives {c}"),
                     ("sum", "the total of {a} and {b} is {c}"))

_WORDS = {"+": "plus", "-": "minus", "*": "times"}


def sum_operands(rng: random.Random, op: str) -> tuple[int, int, int]:
    """``(a, b, right result)`` over the ranges people write: one to three digits, sometimes four."""
    if op == "*":
        a, b = rng.randint(2, rng.choice((12, 20, 99))), rng.randint(2, 12)
    else:
        hi = rng.choice((50, 99, 999, 999, 2500))
        a, b = rng.randint(1, hi), rng.randint(1, rng.choice((hi, 99)))
        if op == "-" and b > a:
            a, b = b, a
    return a, b, a + b if op == "+" else a - b if op == "-" else a * b


def wrong_result(rng: random.Random, c: int) -> int:
    """A plausible wrong result: off by one or two, by ten or a hundred, or two digits swapped."""
    for _ in range(20):
        r = rng.random()
        if r < 0.45:
            w = c + rng.choice((-2, -1, 1, 1, 2, 3))
        elif r < 0.75:
            w = c + rng.choice((-10, 10, -100, 100))
        else:
            s = list(str(c))
            if len(s) < 2:
                continue
            i = rng.randrange(len(s) - 1)
            s[i], s[i + 1] = s[i + 1], s[i]
            w = int("".join(s))
        if w >= 0 and w != c:
            return w
    return c + 1


def sum_statement(rng: random.Random, *, heldout: bool = False) -> tuple[str, int, str, int, int]:
    """``(form, a, op, b, right c)``: a statement form (with ``{c}`` open) of one of the forms."""
    kind, form = rng.choice(HELDOUT_SUM_FORMS if heldout else SUM_FORMS)
    op = {"sum": "+", "diff": "-", "prod": "*"}.get(kind) or rng.choice(("+", "+", "+", "-", "*"))
    a, b, c = sum_operands(rng, op)
    if kind == "prod" and a * b > 10000:
        a, b, c = a % 20 + 2, b, (a % 20 + 2) * b
    word = _WORDS[op] if kind == "word" else op
    if kind == "sym" and op == "*" and rng.random() < 0.4:
        word = "x"
    return form.replace("{op}", word).replace("{a}", str(a)).replace("{b}", str(b)), a, op, b, c


def sum_sentence(rng: random.Random, *, right: bool, heldout: bool = False) -> tuple[str, str, dict]:
    """``(answer, correction, meta)``: a sentence stating a sum; a wrong one gets its result fixed."""
    form, a, op, b, c = sum_statement(rng, heldout=heldout)
    frame = rng.choice(HELDOUT_SUM_FRAMES if heldout else SUM_FRAMES)
    if "{a}" in frame and op != "+":
        frame = "So {s}."
    shown = c if right else wrong_result(rng, c)

    def text(result: int) -> str:
        s = form.replace("{c}", str(result))
        out = frame.replace("{a}", str(a)).replace("{b}", str(b)).replace("{s}", s)
        return out[:1].upper() + out[1:]
    return text(shown), text(c), {"expression": f"{a} {op} {b}", "shown": shown, "right": c}
