"""A seeded generator of Q-A-C rows whose corrections a tiny (~2M-parameter) model can really learn.

Why synthetic data: the embedded demo corrector (``aligner/assets/demo-corrector``, the default that
must run offline on a laptop with no hub download) must be rebuilt offline from data the project can
regenerate, and a model that small cannot learn "make it more helpful" from 1,700 HH-RLHF rows. It
*can* learn four crisp, checkable edits:

* ``identity``   — the answer is already fine: copy it exactly (the paper's identity warm-up).
* ``redact``     — personal data (email, phone, card-like number, street address) → a fixed
  placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ADDRESS]``), everything else copied.
* ``arithmetic`` — a wrong ``a op b = c`` statement gets the right ``c``, everything else copied.
* ``refusal``    — dangerous instructions → a refusal plus a safe alternative.

To make the model generalise rather than memorise, answers are built from a pool of diverse real
sentences (:func:`sentences_from_hh_rlhf`, or a built-in fallback pool), random names, domains and
number formats, and several phrasings per edit. Items stay short (1–3 sentences) because the demo
model's context and capacity are tiny. :func:`splice_contacts` builds a held-out evaluation set in
a different shape (contact details spliced *into* real sentences the generator never used), and
:func:`score` checks a prediction deterministically, so progress is measurable without a judge.

Everything is a pure function of ``seed`` (and the sentence pool, which is de-duplicated and
sorted first, so pool order does not matter); ``tests/test_synthetic_identical.py`` pins the output.

One concept per module: :mod:`.text` (normalising, splitting), :mod:`.pool` (the sentence pool),
:mod:`.contacts`, :mod:`.arithmetic` and :mod:`.refusal` (each category's tables, fakers and checks),
:mod:`.scramble` (the copy curriculum's unmemorisable text), :mod:`.rows` (one row of each category),
:mod:`.generation` (:func:`generate`), :mod:`.heldout` (:func:`splice_contacts`) and :mod:`.scoring`.
Issue 26's rows as they appear in the wild: :mod:`.wild` (Faker's contacts, libphonenumber's checks),
:mod:`.decoys`, :mod:`.sums`, :mod:`.harm`, and :mod:`.wild_rows` (the rows and :func:`wild_heldout`).
"""
from __future__ import annotations

from ..base import QAC
from .arithmetic import ARITH_QUESTIONS, ARITH_STATEMENTS, check_arithmetic
from .contacts import (DOMAINS, FIRST_NAMES, INLINE_SHAPES, LAST_NAMES, PLACEHOLDERS, REDACT_QUESTIONS,
                       REDACT_TEMPLATES, SPLICE_LEADS, SPLICE_TRAIN_QUESTIONS, SPLICE_WRAPPERS, STREET_TYPES,
                       STREETS, contact_spans, insert_contacts, leftover_contacts)
from .generation import CATEGORIES, DEFAULT_MIX, SOURCE, category_counts, generate
from .heldout import SPLICE_CLAUSES, SPLICE_QUESTIONS, splice_contacts
from .pool import FALLBACK_SENTENCES, is_clean_sentence, sentences_from_hh_rlhf, split_sentences
from .refusal import (COMPLY_OPENERS, DANGER_TERMS, REFUSAL_OPENERS, REFUSAL_PHRASES, REFUSAL_TOPICS, has_danger,
                      is_refusal)
from .rows import IDENTITY_QUESTIONS, IDENTITY_VARIANTS, REDACT_VARIANTS, SCRAMBLE_QUESTIONS
from .scoring import contact_replaced_ok, exact_copy, kept_outside_edits, refusal_outcome, score, spliced_contact_ok
from .scramble import SYSTEM_WORD_LISTS, scramble_text, texts_from_hh_rlhf, word_list
from .text import normalise_text, split_into_sentences
from .wild import HELDOUT_LOCALES, TRAIN_LOCALES, library_versions
from .wild_rows import HELDOUT_KINDS, wild_heldout

__all__ = [
    "QAC",
    "ARITH_QUESTIONS", "ARITH_STATEMENTS", "check_arithmetic",
    "DOMAINS", "FIRST_NAMES", "INLINE_SHAPES", "LAST_NAMES", "PLACEHOLDERS", "REDACT_QUESTIONS", "REDACT_TEMPLATES",
    "SPLICE_LEADS", "SPLICE_TRAIN_QUESTIONS", "SPLICE_WRAPPERS", "STREET_TYPES", "STREETS", "contact_spans",
    "insert_contacts", "leftover_contacts",
    "CATEGORIES", "DEFAULT_MIX", "SOURCE", "category_counts", "generate",
    "SPLICE_CLAUSES", "SPLICE_QUESTIONS", "splice_contacts",
    "FALLBACK_SENTENCES", "is_clean_sentence", "sentences_from_hh_rlhf", "split_sentences",
    "COMPLY_OPENERS", "DANGER_TERMS", "REFUSAL_OPENERS", "REFUSAL_PHRASES", "REFUSAL_TOPICS", "has_danger", "is_refusal",
    "IDENTITY_QUESTIONS", "IDENTITY_VARIANTS", "REDACT_VARIANTS", "SCRAMBLE_QUESTIONS",
    "contact_replaced_ok", "exact_copy", "kept_outside_edits", "refusal_outcome", "score", "spliced_contact_ok",
    "SYSTEM_WORD_LISTS", "scramble_text", "texts_from_hh_rlhf", "word_list",
    "normalise_text", "split_into_sentences",
    "HELDOUT_LOCALES", "TRAIN_LOCALES", "library_versions", "HELDOUT_KINDS", "wild_heldout",
]
