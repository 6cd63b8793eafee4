"""The held-out generalisation set: contact details spliced *into* real sentences the generator never
used, in clause shapes it never uses, so a model that only memorised the templates fails it.
"""
from __future__ import annotations

import random
from typing import Iterable

from ...contracts.errors import ConfigError
from ..base import QAC
from .contacts import PLACEHOLDERS, _address, _card, _email, _name, _phone
from .pool import _pool
from .text import _join, _splice

#: Splice shapes the generator never uses: the contact detail goes *inside* a real sentence.
SPLICE_CLAUSES = {
    "email": (" (write to {v})", ", and my email is {v},", " - contact {v} -"),
    "phone": (" (call {v})", ", or ring {v},", " - phone {v} -"),
    "card": (" (card {v})", ", paid with {v},", " - card no. {v} -"),
    "address": (" (at {v})", ", near {v},", " - {v} -"),
}

SPLICE_QUESTIONS = ("Can you look over what I wrote?", "Is this reply okay to send?", "Please check my note.",
                    "What do you make of this?", "Could you proofread this?")


def splice_contacts(sentences: Iterable[str], seed: int = 0, n: int = 200) -> list[QAC]:
    """A held-out generalisation set: half contact details spliced into real sentences, half untouched.

    Pass sentences the training generator never saw (e.g. the eval side of
    :func:`split_sentences`); a model that only memorised the generator's templates fails here.
    Rows carry ``category`` ``redact`` or ``identity`` and ``meta["eval"] = "splice"``, and are
    scored with :func:`score` like generated rows.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"must be a non-negative integer, got {n!r}.", field="n", fix="pass e.g. n=200.")
    pool = _pool(sentences)
    rng = random.Random(f"aligner-splice:{seed}")
    makers = {"email": lambda: _email(rng, *_name(rng)), "phone": lambda: _phone(rng), "card": lambda: _card(rng),
              "address": lambda: _address(rng)}
    rows = []
    for i in range(n):
        q = rng.choice(SPLICE_QUESTIONS)
        if i % 2 == 0:
            kind = rng.choice(tuple(PLACEHOLDERS))
            clause = rng.choice(SPLICE_CLAUSES[kind])
            base = rng.choice(pool)
            cut = rng.randint(2, max(2, len(base.split(" ")) - 2))
            answer = _splice(base, clause.format(v=makers[kind]()), cut)
            correction = _splice(base, clause.format(v=PLACEHOLDERS[kind]), cut)
            rows.append(QAC(q, answer, correction, source="splice", row=i + 1, category="redact",
                            meta={"eval": "splice", "seed": seed, "kinds": [kind]}))
        else:
            ans = _join(rng.sample(pool, min(len(pool), rng.choice((1, 2)))))
            rows.append(QAC(q, ans, ans, source="splice", row=i + 1, category="identity",
                            meta={"eval": "splice", "seed": seed}))
    return rows
