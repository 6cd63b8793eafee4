"""One row of each category: ``(question, answer, correction, meta)`` drawn from a seeded RNG, and the
variants (with default weights) an identity or redaction row comes in.
"""
from __future__ import annotations

import random
from typing import Sequence

from .arithmetic import ARITH_QUESTIONS, ARITH_STATEMENTS, _OPS, _operands, _wrong
from .contacts import (PLACEHOLDERS, REDACT_QUESTIONS, REDACT_TEMPLATES, SPLICE_LEADS, SPLICE_TRAIN_QUESTIONS,
                       SPLICE_WRAPPERS, _contact_values, _name, _sep_shape, contact_spans, insert_contacts,
                       leftover_contacts)
from .heldout import SPLICE_CLAUSES
from .pool import _BLOCKLIST, _sentence
from .refusal import COMPLY_OPENERS, REFUSAL_OPENERS, REFUSAL_TOPICS, has_danger
from .scramble import _pool_words, scramble_text
from .text import _join, _splice
from .wild_rows import wild_arithmetic, wild_identity, wild_redact, wild_refusal

IDENTITY_QUESTIONS = ("Can you give me some advice?", "Any tips for me?", "What do you think?",
                      "Can you help me with something?", "What would you suggest?", "I could use some help.",
                      "Do you have any ideas?", "What should I keep in mind?", "Can you tell me more?",
                      "How should I go about this?", "What is your advice for a beginner?",
                      "I'm not sure what to do, any thoughts?")

SCRAMBLE_QUESTIONS = ("Can you check this list?", "Is this okay?", "What do you make of these notes?",
                      "Please look over my draft.", "Does this need fixing?", "Any changes needed here?")

#: Variants of an identity row and their default weights. ``scramble`` answers are random sequences of
#: words, names, made-up words and letter/digit strings with mixed case and punctuation: text no model
#: can have memorised, so the only way to reproduce it is to copy it from the prompt (an induction
#: mechanism) — the skill every edit is built on (the Aligner paper's identity warm-up).
IDENTITY_VARIANTS = {"plain": 0.45, "scramble": 0.3, "arithmetic": 0.15, "refusal": 0.1, "short": 0.0,
                     "decoy": 0.0, "rightsum": 0.0, "rare": 0.0, "wild": 0.0, "assign": 0.0, "howto": 0.0}
#: ``short`` (off by default) is one sentence of two to eight words: a small model that has mostly seen
#: longer answers runs on past the end of "A spider has eight legs." instead of stopping.
#: ``decoy``, ``rightsum``, ``rare`` and ``wild`` (issue 26, off by default; :mod:`.wild_rows`): numbers,
#: handles and domains that are no contact, right sums, rare words of a frequency list, Faker's names.
#: ``assign``: assignments and formulas that are no sum (``x=5``, ``--threads=4``), copied as they are.
#: ``howto``: benign step-by-step help in the harmful answers' list shapes and openers, copied as it is.
WILD_IDENTITY = ("decoy", "rightsum", "rare", "wild", "assign", "howto")

#: Variants of a redaction row: ``scattered`` puts one to three contacts at any word position (first,
#: last, mid-sentence) of real or scrambled text, bare or wrapped, so the edit is learnt as "replace
#: exactly the contact span, copy every other piece", not as a template.
#: ``anylead`` is ``scattered`` with arbitrary words as lead-ins, more wrappers, and more of the
#: kinds a small model finds hardest to tell apart (addresses, card numbers); off by default.
#: ``anysep`` is ``anylead`` where half the contacts sit between stand-alone symbols (``~ x ~``,
#: ``:: x ,``) and the text also carries symbol-wrapped spans that are *not* contacts (``| 56 green
#: apples |``), copied as they are: the decision "redact or copy" must come from the span itself.
REDACT_VARIANTS = {"template": 0.35, "spliced": 0.35, "scattered": 0.3, "anylead": 0.0, "anysep": 0.0, "wild": 0.0}
#: ``wild`` (issue 26): Faker's contacts of many locales (role and organisation addresses, each
#: locale's phone formats) glued on in many ways, beside decoys that must be copied.
#: Arithmetic and refusal rows have variants only when a caller asks for them (default rows draw as
#: before): ``wild`` sums as people write them (:mod:`.sums`), harmful instructions in many list
#: shapes (:mod:`.harm`).
ARITHMETIC_VARIANTS = {"classic": 1.0, "wild": 0.0}
REFUSAL_VARIANTS = {"classic": 1.0, "wild": 0.0}
#: kinds of an ``anylead`` contact and their weights
ANYLEAD_KINDS = {"email": 0.2, "phone": 0.2, "card": 0.3, "address": 0.3}
#: the held-out splice shapes with their placeholders in: no training correction may contain one
_HELD_OUT_SHAPES = tuple(c.format(v=PLACEHOLDERS[k]) for k, cs in SPLICE_CLAUSES.items() for c in cs)


def _with_context(rng: random.Random, pool: list[str], core: str, *, max_context: int = 2,
                  max_chars: int = 300) -> tuple[list[str], int]:
    """Real sentences around ``core`` (0..max_context of them); returns parts and the core's index."""
    k = rng.choice((0, 1, 1, 2)) if max_context >= 2 else rng.randint(0, max_context)
    context = rng.sample(pool, k) if k else []
    while context and len(core) + sum(len(s) + 1 for s in context) > max_chars:
        context.pop()
    pos = rng.randint(0, len(context))
    parts = context[:pos] + [core] + context[pos:]
    return parts, pos


def _short_sentence(rng: random.Random, pool: Sequence[str], words: Sequence[str]) -> str:
    """Two to eight words ending in a full stop (or ``!``/``?``): a short real sentence when one of a
    few drawn is short enough, else words from the word list."""
    for s in rng.sample(pool, min(len(pool), 12)):
        if 2 <= len(s.split(" ")) <= 8 and s[-1] in ".!?":
            return s
    text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 7)))
    return text[:1].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?"))


def _identity(rng: random.Random, pool: Sequence[str], words: Sequence[str] = (),
              weights: dict[str, float] | None = None, freq_words: Sequence[str] = ()) -> tuple[str, str, str, dict]:
    w = weights or IDENTITY_VARIANTS
    variant = rng.choices(tuple(w), weights=tuple(w.values()))[0]
    if variant in WILD_IDENTITY:
        return wild_identity(rng, pool, freq_words or words or _pool_words(pool), variant)
    if variant == "scramble":
        q = rng.choice(IDENTITY_QUESTIONS + SCRAMBLE_QUESTIONS)
        ans = scramble_text(rng, words or _pool_words(pool), pool=pool)
    elif variant == "arithmetic":
        a, op, b, c = _operands(rng)
        q = rng.choice(ARITH_QUESTIONS).format(a=a, b=b, op=op, word=_OPS[op][0])
        parts, _ = _with_context(rng, pool, rng.choice(ARITH_STATEMENTS).format(a=a, b=b, op=op, c=c), max_context=1)
        ans = _join(parts)
    elif variant == "short":
        q = rng.choice(IDENTITY_QUESTIONS)
        ans = _short_sentence(rng, pool, words or _pool_words(pool))
    elif variant == "refusal":
        topic = rng.choice(REFUSAL_TOPICS)
        q = rng.choice(topic["questions"])
        ans = f"{rng.choice(REFUSAL_OPENERS)} {rng.choice(topic['alternatives'])}"
    else:
        q = rng.choice(IDENTITY_QUESTIONS)
        picked = [_sentence(rng, pool) for _ in range(rng.choice((1, 1, 2, 2, 3)))]
        while len(picked) > 1 and sum(len(p) + 1 for p in picked) > 330:
            picked.pop()
        ans = _join(picked)
    return q, ans, ans, {"variant": variant}


def _redact_spliced(rng: random.Random, pool: Sequence[str]) -> tuple[str, str, str, dict]:
    """One or two contact details inside real (or remixed) sentences, at random word positions."""
    kinds = rng.sample(tuple(PLACEHOLDERS), rng.choice((1, 1, 1, 2)))
    sentences = [_sentence(rng, pool) for _ in range(max(len(kinds), rng.choice((1, 1, 2))))]
    answer, correction = list(sentences), list(sentences)
    for slot, kind in zip(rng.sample(range(len(sentences)), len(kinds)), kinds):
        words = sentences[slot].split(" ")
        cut = rng.randint(1, max(1, len(words) - 1))
        wrapper, lead = rng.choice(SPLICE_WRAPPERS), rng.choice(SPLICE_LEADS[kind])
        value = _contact_values(rng, *_name(rng))[kind]
        answer[slot] = _splice(sentences[slot], wrapper.format(x=f"{lead} {value}".strip()), cut)
        correction[slot] = _splice(sentences[slot], wrapper.format(x=f"{lead} {PLACEHOLDERS[kind]}".strip()), cut)
    q = rng.choice(REDACT_QUESTIONS + SPLICE_TRAIN_QUESTIONS).format(name=_name(rng)[0])
    return q, _join(answer), _join(correction), {"kinds": kinds, "variant": "spliced"}


def _redact(rng: random.Random, pool: Sequence[str], words: Sequence[str] = (),
            weights: dict[str, float] | None = None, freq_words: Sequence[str] = ()) -> tuple[str, str, str, dict]:
    """A contact sentence among real ones (template), contacts spliced into real sentences (spliced),
    several contacts scattered anywhere in real or unmemorisable text (scattered), or Faker's
    contacts beside decoys (wild)."""
    w = weights or REDACT_VARIANTS
    variant = rng.choices(tuple(w), weights=tuple(w.values()))[0]
    if variant == "wild":
        return wild_redact(rng, pool, freq_words or words or _pool_words(pool))
    if variant == "spliced":
        return _redact_spliced(rng, pool)
    if variant in ("scattered", "anylead", "anysep"):
        return _redact_scattered(rng, pool, words or _pool_words(pool), free_leads=variant != "scattered",
                                 separators=variant == "anysep")
    first, last = _name(rng)
    template = rng.choice(REDACT_TEMPLATES)
    values = _contact_values(rng, first, last)
    kinds = [k for k in PLACEHOLDERS if "{" + k + "}" in template]
    name = rng.choice((first, f"{first} {last}"))
    answer_core = template.format(name=name, **values)
    corr_core = template.format(name=name, **PLACEHOLDERS)
    parts, pos = _with_context(rng, pool, answer_core)
    answer = _join(parts)
    parts[pos] = corr_core
    correction = _join(parts)
    q = rng.choice(REDACT_QUESTIONS).format(name=first)
    return q, answer, correction, {"kinds": kinds, "variant": "template"}


def _decoy(rng: random.Random, words: Sequence[str]) -> str:
    """A symbol-wrapped span that is no contact: a number before words, a word or two, a short code."""
    r = rng.random()
    if r < 0.5:
        inner = f"{rng.randint(1, 999)} " + " ".join(rng.choice(words) for _ in range(rng.choice((1, 2, 2, 3))))
    elif r < 0.8:
        inner = " ".join(rng.choice(words) for _ in range(rng.choice((1, 2))))
    else:
        inner = str(rng.randint(1, 9999))
    return _sep_shape(rng).format(x=inner)


def _with_decoys(rng: random.Random, text: str, words: Sequence[str]) -> str:
    out = text.split(" ")
    for _ in range(rng.choice((0, 1, 1, 2))):
        out.insert(rng.randint(0, len(out)), _decoy(rng, words))
    return " ".join(out)


def _redact_scattered(rng: random.Random, pool: Sequence[str], words: Sequence[str], *,
                      free_leads: bool = False, separators: bool = False) -> tuple[str, str, str, dict]:
    """One to three contacts (kinds may repeat) anywhere in real or scrambled text; all else copied.
    ``free_leads``: the ``anylead`` variant (arbitrary lead-in words, see :func:`insert_contacts`);
    ``separators``: the ``anysep`` variant (symbol wrappers and decoy spans)."""
    while True:
        if free_leads:
            kinds = rng.choices(tuple(ANYLEAD_KINDS), weights=tuple(ANYLEAD_KINDS.values()),
                                k=rng.choice((1, 1, 2, 3)))
        else:
            kinds = [rng.choice(tuple(PLACEHOLDERS)) for _ in range(rng.choice((1, 2, 2, 3)))]
        base = (scramble_text(rng, words, digits=False) if rng.random() < 0.5
                else _join([_sentence(rng, pool) for _ in range(rng.choice((1, 1, 2)))]))
        if separators:
            base = _with_decoys(rng, base, words)
        answer, correction = insert_contacts(rng, base, kinds, lead_words=words if free_leads else (),
                                             separators=separators)
        if (len(answer) <= 330 and not leftover_contacts(correction) and not has_danger(answer)
                and not _BLOCKLIST.search(base)
                and not any(h in correction for h in _HELD_OUT_SHAPES)
                and len([s for s in contact_spans(answer, correction) if leftover_contacts(s)]) == len(kinds)):
            break
    q = rng.choice(REDACT_QUESTIONS + SPLICE_TRAIN_QUESTIONS).format(name=_name(rng)[0])
    variant = "anysep" if separators else "anylead" if free_leads else "scattered"
    return q, answer, correction, {"kinds": sorted(set(kinds)), "variant": variant,
                                   "n_contacts": len(kinds)}


def _arithmetic(rng: random.Random, pool: Sequence[str], words: Sequence[str] = (),
                weights: dict[str, float] | None = None, freq_words: Sequence[str] = ()) -> tuple[str, str, str, dict]:
    if weights is not None and rng.choices(tuple(weights), weights=tuple(weights.values()))[0] == "wild":
        return wild_arithmetic(rng, pool)
    a, op, b, c = _operands(rng)
    wrong = _wrong(rng, c)
    stmt = rng.choice(ARITH_STATEMENTS)
    q = rng.choice(ARITH_QUESTIONS).format(a=a, b=b, op=op, word=_OPS[op][0])
    parts, pos = _with_context(rng, pool, stmt.format(a=a, b=b, op=op, c=wrong), max_context=1)
    answer = _join(parts)
    parts[pos] = stmt.format(a=a, b=b, op=op, c=c)
    return q, answer, _join(parts), {"expression": f"{a} {op} {b}", "wrong": wrong, "right": c}


def _refusal(rng: random.Random, pool: Sequence[str], words: Sequence[str] = (),
             weights: dict[str, float] | None = None, freq_words: Sequence[str] = ()) -> tuple[str, str, str, dict]:
    if weights is not None and rng.choices(tuple(weights), weights=tuple(weights.values()))[0] == "wild":
        return wild_refusal(rng)
    i = rng.randrange(len(REFUSAL_TOPICS))
    topic = REFUSAL_TOPICS[i]
    q = rng.choice(topic["questions"])
    steps = rng.sample(topic["answers"], rng.choice((1, 1, 2)))
    answer = _join([rng.choice(COMPLY_OPENERS), *steps])
    correction = f"{rng.choice(REFUSAL_OPENERS)} {rng.choice(topic['alternatives'])}"
    return q, answer, correction, {"topic": i}
