""":func:`generate`: ``n`` seeded rows in an exact category mix, each built by :mod:`.rows`."""
from __future__ import annotations

import random
from typing import Iterable

from ...contracts.errors import ConfigError
from ..base import QAC
from .contacts import PLACEHOLDERS, REDACT_QUESTIONS, SPLICE_TRAIN_QUESTIONS, _name
from .pool import _pool
from .rows import (ARITHMETIC_VARIANTS, IDENTITY_QUESTIONS, IDENTITY_VARIANTS, REDACT_VARIANTS, REFUSAL_VARIANTS,
                   SCRAMBLE_QUESTIONS, WILD_IDENTITY, _arithmetic, _identity, _redact, _refusal)
from .scramble import _check_words, _pool_words

CATEGORIES = ("identity", "redact", "arithmetic", "refusal")

DEFAULT_MIX = {"identity": 0.25, "redact": 0.25, "arithmetic": 0.25, "refusal": 0.25}

SOURCE = "synthetic"

#: ``questions="shared"``: every plain or scrambled identity row and every redaction row asks one of
#: these, so the question says nothing about whether the answer needs an edit. With each category's own
#: questions (the default) a small model learns the shortcut "a contact question means redact" and
#: copies contacts verbatim under a question it never saw.
SHARED_QUESTIONS = IDENTITY_QUESTIONS + SCRAMBLE_QUESTIONS + REDACT_QUESTIONS + SPLICE_TRAIN_QUESTIONS
#: ``questions="echo"``: as ``shared``, but half of those rows ask about words of their own answer
#: ("How many legs does a spider have?" over "A spider has eight legs."), sometimes in another form
#: ("conduct" for "conducts"). With unrelated questions only, a small model copies from the question
#: when a user's question shares words with the answer: "A spider has eight legs what a spider have."
ECHO_FORMS = ("Is it true that {s}?", "What about {s}?", "Why {s}?", "How {s}?", "When {s}?", "Where {s}?",
              "What {s}?", "How many {s}?", "Does {s}?", "Can {s}?", "Tell me about {s}.", "{S}?", "{S}.",
              "Can you explain {s}?", "Do you know {s}?")
QUESTION_STYLES = ("by_category", "shared", "echo")


def _echo_question(rng: random.Random, text: str) -> str:
    """A question made of one to five consecutive words of ``text`` (placeholders left out), a plural
    ``s`` sometimes dropped, so question and answer share words the way real ones do."""
    words = [w.strip(".,;:!?\"'()[]") for w in text.split(" ")]
    words = [w for w in words if w and not any(p.strip("[]") in w for p in PLACEHOLDERS.values())]
    if not words:
        return rng.choice(SHARED_QUESTIONS).format(name=_name(rng)[0])
    n = rng.randint(1, min(5, len(words)))
    start = rng.randint(0, len(words) - n)
    span = [w[:-1] if len(w) > 3 and w.endswith("s") and rng.random() < 0.3 else w for w in words[start:start + n]]
    span[0] = span[0][:1].lower() + span[0][1:] if not span[0][1:2].isupper() else span[0]
    s = " ".join(span)
    return rng.choice(ECHO_FORMS).format(s=s, S=s[:1].upper() + s[1:])


def _validate_mix(mix: dict[str, float] | None) -> dict[str, float]:
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(CATEGORIES))
    if unknown:
        raise ConfigError(f"unknown categories {unknown}.", field="mix", fix=f"use keys from {list(CATEGORIES)}.")
    for k, v in mix.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"weight of {k!r} must be a non-negative number, got {v!r}.", field="mix",
                              fix='pass e.g. {"identity": 0.25, "redact": 0.25, "arithmetic": 0.25, "refusal": 0.25}.')
    total = sum(mix.values())
    if total <= 0:
        raise ConfigError("all weights are zero.", field="mix", fix="give at least one category a positive weight.")
    return {k: mix.get(k, 0) / total for k in CATEGORIES}


def category_counts(n: int, mix: dict[str, float] | None = None) -> dict[str, int]:
    """Exact per-category counts for ``n`` rows (largest remainder), so the mix is met, not sampled."""
    weights = _validate_mix(mix)
    raw = {k: n * w for k, w in weights.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(CATEGORIES, key=lambda k: (-(raw[k] - counts[k]), CATEGORIES.index(k)))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _check_variants(variants: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]]:
    known = {"identity": IDENTITY_VARIANTS, "redact": REDACT_VARIANTS, "arithmetic": ARITHMETIC_VARIANTS,
             "refusal": REFUSAL_VARIANTS}
    out = {k: v for k, v in known.items() if k in ("identity", "redact")}  # the others only when asked for
    for cat, w in (variants or {}).items():
        if cat not in known:
            raise ConfigError(f"category {cat!r} has no variants.", field="variants", fix=f"use keys from {sorted(known)}.")
        bad = sorted(set(w) - set(known[cat]))
        if bad or not w or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in w.values()) \
                or sum(w.values()) <= 0:
            raise ConfigError(f"bad variant weights for {cat!r}: {w!r}.", field="variants",
                              fix=f"non-negative weights, not all zero, for {sorted(known[cat])}.")
        out[cat] = dict(w)
    return out


#: identity variants whose questions ``questions="shared"``/``"echo"`` replace (with every redaction row's)
_ASKED_ANYTHING = ("plain", "scramble", "short") + WILD_IDENTITY

_BUILDERS = {"identity": _identity, "redact": _redact, "arithmetic": _arithmetic, "refusal": _refusal}


def generate(n: int, seed: int = 0, mix: dict[str, float] | None = None,
             sentences: Iterable[str] | None = None, *, words: Iterable[str] | None = None,
             variants: dict[str, dict[str, float]] | None = None, questions: str = "by_category",
             freq_words: Iterable[str] | None = None) -> list[QAC]:
    """``n`` synthetic Q-A-C rows; same ``seed`` (and pool) → identical rows.

    ``mix`` weights the four categories (normalised; exact counts by largest remainder).
    ``sentences`` is the pool of real "fine" sentences answers are built from (default: the
    built-in pool); pass :func:`sentences_from_hh_rlhf` output for variety, and keep a disjoint
    part for :func:`splice_contacts` (see :func:`split_sentences`). ``words`` is the vocabulary of
    the copy curriculum's unmemorisable text (default: the pool's own words; the demo rebuild passes
    :func:`word_list`). ``variants`` re-weights the variants of a category, e.g.
    ``{"identity": {"scramble": 0.7, "plain": 0.3}}`` (see :data:`IDENTITY_VARIANTS`, :data:`REDACT_VARIANTS`).
    ``questions="shared"`` draws the questions of identity and redaction rows from one pool
    (:data:`SHARED_QUESTIONS`, from a separate RNG: answers and corrections stay those of the default);
    ``questions="echo"`` makes half of them questions about the answer's own words (:data:`ECHO_FORMS`).
    ``freq_words`` (issue 26) is a word-frequency list (e.g. wordfreq's) the ``wild`` variants draw
    rare words from (default: ``words``); the ``wild`` variants draw contacts and names from Faker.
    """
    if questions not in QUESTION_STYLES:
        raise ConfigError(f"unknown question style {questions!r}.", field="questions",
                          fix=f"use one of {list(QUESTION_STYLES)}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"must be a non-negative integer, got {n!r}.", field="n", fix="pass e.g. n=2000.")
    pool = _pool(sentences)
    vocab = _check_words(words) if words is not None else _pool_words(pool)
    weights = _check_variants(variants)
    freq = _check_words(freq_words) if freq_words is not None else []
    counts = category_counts(n, mix)
    rng = random.Random(f"aligner-synthetic:{seed}")
    order = [c for c in CATEGORIES for _ in range(counts[c])]
    rng.shuffle(order)
    q_rng = random.Random(f"aligner-questions:{seed}")
    rows = []
    for i, cat in enumerate(order):
        if cat in weights:
            q, a, c, meta = _BUILDERS[cat](rng, pool, vocab, weights[cat], freq)
        else:
            q, a, c, meta = _BUILDERS[cat](rng, pool)
        if questions != "by_category" and (cat == "redact" or cat == "identity" and meta.get("variant") in _ASKED_ANYTHING):
            if questions == "echo" and q_rng.random() < 0.5:
                q = _echo_question(q_rng, c)
            else:
                q = q_rng.choice(SHARED_QUESTIONS).format(name=_name(q_rng)[0])
        rows.append(QAC(q, a, c, source=SOURCE, row=i + 1, category=cat, meta={"seed": seed, **meta}))
    return rows
