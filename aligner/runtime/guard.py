"""The degenerate-correction guard: when a corrector's output is worse than no correction at all.

Small or badly fitted correctors sometimes run away — ``2222…`` for hundreds of characters, a
phrase looped until the token limit, the prompt's own words (``BEGINNING OF CONVERSATION``,
``ASSISTANT:``) written back — and a user shown that has lost the answer they had. Every corrector
(local, remote; batch, async, stream) passes its output through one :class:`Guard`, which

* caps the new tokens relative to the answer (``2 × answer tokens + 64``) unless the caller set
  ``max_new_tokens`` explicitly,
* stops generation at the template's own markers and at a runaway repetition (checked on the
  text's tail after every step, so a local model stops within a step),
* and decides the *fallback*: a degenerate correction is replaced by the original answer, and the
  reason (``repetition``, ``template_marker``, ``too_long``, ``replacement_char``, ``empty``)
  travels with it.

``replacement_char``: a correction with more U+FFFD than its answer has bytes that are no text —
a byte-level model can emit a lone UTF-8 byte token (the demo corrector writes the continuation
byte ``0xA7`` for ``=`` in ``x=5``), which no decoder can turn into a character. Only the finished
text is judged: mid-generation, a U+FFFD at the end is a character whose other bytes are still
to come.

The same rules judge a finished text (what a remote corrector returned) and a text still being
generated (a local row's tail), so a stream and a batch reach the same verdict.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable

from ..contracts.decoding import CAP_FACTOR, CAP_SLACK, new_token_cap  # noqa: F401  (re-exported: the cap a guard is given)
from ..contracts.templates import STOP_MARKERS, Template, cut_at_stop
from .edit_checks import UNCONFIRMED_REFUSAL, whole_refusal

#: Fallback reasons, as they appear on ``Correction.fallback_reason`` and in the server's logs.
REPETITION, TEMPLATE_MARKER, TOO_LONG, EMPTY = "repetition", "template_marker", "too_long", "empty"
REPLACEMENT_CHAR = "replacement_char"
FALLBACK_REASONS = (REPETITION, TEMPLATE_MARKER, TOO_LONG, REPLACEMENT_CHAR, EMPTY)
#: what a decoder writes for bytes that are not UTF-8 text.
REPLACEMENT = "\ufffd"

#: a run is runaway when one unit of at most MAX_UNIT characters repeats at least MIN_REPEATS times
#: over at least MIN_RUN characters (``ha ha ha`` is text; 48 characters of ``os`` are not).
MIN_RUN, MIN_REPEATS, MAX_UNIT = 48, 4, 64
#: characters of a generation's tail the incremental check reads (4 repeats of the longest unit).
TAIL_CHARS = MAX_UNIT * MIN_REPEATS + 8

_CAPS = re.compile(r"[A-Z][A-Z]+(?: [A-Z][A-Z]+)*:")  # BEGINNING OF CONVERSATION:, USER:, ASSISTANT:
_CAP_WORD = re.compile(r"\b[A-Z]{6,}\b")  # CONVERSATION, ASSISTANT on their own
_HASH = re.compile(r"##\s?\w+")  # ##Question, ##Answer, ##Correction
_BAR = re.compile(r"\| ?[A-Z]\w*:")  # | Context:, | Edit:


def template_markers(template: Template) -> tuple[str, ...]:
    """The template's structural strings, which never belong in a correction.

    Taken from the template's text outside its placeholders: speaker tags (``USER:``), the
    conversation header and its capitalised words, ``##Section`` headings and ``| Field:`` tags.
    Derived, not listed, so a custom template is guarded the same way.
    """
    literal = re.sub(r"\{(question|answer|aspects)\}", "\n", template.text)
    found: list[str] = []
    for pattern in (_CAPS, _CAP_WORD, _HASH, _BAR):
        found += [m.group(0).strip() for m in pattern.finditer(literal)]
    if template.response_marker:
        found.append(template.response_marker.strip())
    return tuple(dict.fromkeys(m for m in found if len(m) >= 3))


def _periodic_run(text: str, end: int, unit: int) -> int:
    """Length of the stretch ending at ``end`` in which every character equals the one ``unit``
    before it, plus one unit (so ``abab`` with unit 2 is a run of 4)."""
    i = end - 1
    while i - unit >= 0 and text[i] == text[i - unit]:
        i -= 1
    return end - 1 - i + unit if end - 1 - i > 0 else 0


def _allowed(run: str, unit: int, reference: str) -> bool:
    """A run the answer already has is a copy, not a loop: allow up to one unit more than the
    answer's own run of that unit (in any phase)."""
    if not reference:
        return False
    piece = run[-unit:]
    if piece not in reference:
        return False
    lo, hi = 1, len(reference) // unit + 1  # largest k with piece * k in reference
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if piece * mid in reference:
            lo = mid
        else:
            hi = mid - 1
    return len(run) <= (lo + 2) * unit


def repeated_tail(text: str, reference: str = "") -> str | None:
    """The runaway run at the end of ``text``, or None. Cheap enough to call after every token:
    one slice comparison per unit length until a candidate is found."""
    n = len(text)
    if n < MIN_RUN:
        return None
    last = text[-1]
    for unit in range(1, MAX_UNIT + 1):
        span = max(MIN_RUN, MIN_REPEATS * unit)
        if span > n:
            break
        if text[n - 1 - unit] != last:  # cheap necessary condition before comparing the span
            continue
        tail = text[n - span:]
        if tail[unit:] != tail[:-unit]:
            continue
        run = text[n - _periodic_run(text, n, unit):]
        if not _allowed(run, unit, reference):
            return run
    return None


_RUN = re.compile(r"(.{1,%d}?)\1{%d,}" % (MAX_UNIT, MIN_REPEATS - 1), re.DOTALL)


def find_repetition(text: str, reference: str = "") -> str | None:
    """A runaway run anywhere in a finished ``text`` (a loop the model later left still ruins it)."""
    for m in _RUN.finditer(text):
        run, unit = m.group(0), len(m.group(1))
        if len(run) >= max(MIN_RUN, MIN_REPEATS * unit) and not _allowed(run, unit, reference):
            return run
    return None


class Guard:
    """The rules for one correction: which markers stop it, how long it may get, what it may copy.

    ``answer`` is what the corrector was shown (after truncation); ``question`` too, since a
    marker the user wrote is not a leak. ``cap`` is the new-token cap (None: the caller chose the
    length). ``enabled=False`` keeps only the normal end-of-turn stops (``DecodingConfig.fallback``).
    """

    #: characters of a generation's tail that ``check`` needs to see.
    tail_chars = TAIL_CHARS

    def __init__(self, template: Template, question: str, answer: str, *, eos_token: str | None = None,
                 cap: int | None = None, enabled: bool = True,
                 edit_check: Callable[[str, str], str | None] | None = None,
                 confirm_refusal: Callable[[str, str], bool] | None = None):
        self.answer = answer
        self.question = question
        #: ``(answer, correction) -> reason | None`` run on a finished correction (:mod:`aligner.runtime.edit_checks`)
        self.edit_check = edit_check if enabled else None
        #: ``(question, answer) -> bool``: whether a whole refusal of this answer may be shown (None: always)
        self.confirm_refusal = confirm_refusal if enabled else None
        self.cap = cap if enabled else None
        self.enabled = enabled
        self.stops: tuple[str, ...] = (*STOP_MARKERS, *((eos_token,) if eos_token else ()))
        given = f"{question}\n{answer}"
        # A marker the user wrote is not a leak; one that is also a normal stop stays a stop.
        self.markers: tuple[str, ...] = tuple(m for m in template_markers(template)
                                              if m not in given and m not in self.stops) if enabled else ()

    @property
    def cut_markers(self) -> tuple[str, ...]:
        """Where the shown text ends: a normal stop or a leaked marker (what a stream holds back)."""
        return (*self.stops, *self.markers)

    def check(self, tail: str) -> str | None:
        """Why generation should stop now, judging the generated text's tail (``TAIL_CHARS`` is
        enough): ``"stop"`` (a new turn — a normal end), ``"marker"``, ``"repetition"``, or None."""
        first = _first(tail, self.cut_markers)
        if first is not None:
            return "stop" if first in self.stops else "marker"
        if self.enabled and repeated_tail(tail, self.answer) is not None:
            return "repetition"
        return None

    def replacement_at(self, text: str) -> int | None:
        """Where ``text`` (finished, or shown so far) has one U+FFFD more than the answer: the index
        of that replacement character, or None. Copying the answer's own is not an error."""
        if not self.enabled:
            return None
        at = -1
        for _ in range(self.answer.count(REPLACEMENT) + 1):
            at = text.find(REPLACEMENT, at + 1)
            if at == -1:
                return None
        return at

    def verdict(self, raw: str, shown: str, stop_reason: str | None = None) -> str | None:
        """The fallback reason for a finished generation, or None to keep ``shown`` (the parsed
        correction). ``stop_reason`` is how generation ended when the backend knows it."""
        if not self.enabled:
            return None
        if stop_reason == "repetition":
            return REPETITION
        body = cut_at_stop(raw, self.stops)
        if stop_reason == "marker" or _first(body, self.markers) is not None:
            return TEMPLATE_MARKER
        if find_repetition(body, self.answer) is not None or repeated_tail(body, self.answer) is not None:
            return REPETITION
        if stop_reason == "cap":
            return TOO_LONG
        if self.replacement_at(shown) is not None:
            return REPLACEMENT_CHAR
        if not shown.strip() and self.answer.strip():
            return EMPTY
        reason = self.edit_check(self.answer, shown) if self.edit_check is not None else None
        if reason is None and self.confirm_refusal is not None and whole_refusal(self.answer, shown) \
                and not self.confirm_refusal(self.question, self.answer):
            return UNCONFIRMED_REFUSAL
        return reason


def _first(text: str, markers: Iterable[str]) -> str | None:
    """The marker that occurs first in ``text`` (None when none does)."""
    best, at = None, len(text) + 1
    for m in markers:
        i = text.find(m) if m else -1
        if i != -1 and i < at:
            best, at = m, i
    return best
