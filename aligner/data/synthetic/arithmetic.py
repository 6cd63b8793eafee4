"""Arithmetic statements: the category's tables, drawing operands and a wrong result, and checking
every ``a op b = c`` in a text.
"""
from __future__ import annotations

import random
import re

_OPS = {"+": ("plus", lambda a, b: a + b), "-": ("minus", lambda a, b: a - b), "*": ("times", lambda a, b: a * b)}

ARITH_STATEMENTS = ("{a} {op} {b} = {c}.", "So {a} {op} {b} = {c}.", "The result is {a} {op} {b} = {c}.",
                    "That gives {a} {op} {b} = {c}.", "Easy: {a} {op} {b} = {c}.", "We get {a} {op} {b} = {c}.",
                    "Here you go, {a} {op} {b} = {c}.")

ARITH_QUESTIONS = ("What is {a} {word} {b}?", "Can you work out {a} {op} {b}?", "How much is {a} {word} {b}?",
                   "Quick question: {a} {op} {b}?", "What do I get for {a} {word} {b}?",
                   "Please compute {a} {op} {b}.", "I need {a} {word} {b} for my homework.")

_ARITH_RE = re.compile(r"(-?\d+)\s*([+\-*x\u00d7])\s*(-?\d+)\s*=\s*(-?\d+)")


def _operands(rng: random.Random) -> tuple[int, str, int, int]:
    op = rng.choice(tuple(_OPS))
    if op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    else:
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        if op == "-" and b > a:
            a, b = b, a
    return a, op, b, _OPS[op][1](a, b)


def _wrong(rng: random.Random, c: int) -> int:
    while True:
        w = c + rng.choice((-10, -2, -1, 1, 1, 2, 3, 10))
        if w >= 0 and w != c:
            return w


def check_arithmetic(text: str) -> list[tuple[str, bool]]:
    """Every ``a op b = c`` statement in ``text`` and whether it is right (for tests and eval)."""
    out = []
    for m in _ARITH_RE.finditer(text):
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        op = "*" if op in ("x", "\u00d7") else op
        out.append((m.group(0), _OPS[op][1](a, b) == c))
    return out
