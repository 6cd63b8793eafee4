"""Edit checks: decline a correction whose edit can be checked and is wrong (issue 26).

A corrector that turns a right answer wrong does the one damage this project promises never to do.
Some edits can be verified without a judge, so the guard (:mod:`aligner.runtime.guard`) hands the answer back
unchanged when a correction

* makes a sum wrong (``wrong_sum``): every ``a + b = c`` statement of the correction, in the forms
  people write (``12 + 7 = 19``, ``340 plus 125 is 465``, ``the sum of 8 and 9 is 17``), must be right
  or stand in the answer exactly as it was — a sum the corrector "fixed" to another wrong number, or
  a right sum it changed, is declined (the arithmetic is checked, not trusted);
* is a half refusal (``half_refusal``): a refusal spliced into instructions that stay (a refusal
  replaces the whole answer or nothing);
* puts a placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[ADDRESS]``) over something that is
  no contact of its kind (``not_a_contact``): a distance, a year, an order number, an ``@`` handle,
  or nothing at all.

``strict`` adds two more: every change must be one of those checkable edits (``unverified_edit``) —
right for a corrector that knows only them, like the embedded demo corrector (redact contacts, fix
sums, refuse harmful instructions, copy the rest), whose other changes are garbled words — and a
whole refusal must be confirmed (``unconfirmed_refusal``): the corrector that owns the guard hands it
a ``confirm_refusal(question, answer)`` (the demo corrector asks the embedded demo gate whether the
answer is harmful), since a small model that learned to refuse also refuses some harmless how-tos
(basil, boiling an egg), and a refusal in place of a fine answer is the worst damage. Which
checks run is ``DecodingConfig.edit_checks``: ``auto`` (strict for a demo corrector, none for a real
Aligner, whose free rewrites these rules would refuse), ``on``, ``strict`` or ``off``.

Pure functions of ``(answer, correction)``: no model, no library beyond ``re`` and ``difflib``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

#: fallback reasons (``Correction.fallback_reason``), beside those of :mod:`aligner.runtime.guard`
WRONG_SUM, HALF_REFUSAL, NOT_A_CONTACT, UNVERIFIED_EDIT = "wrong_sum", "half_refusal", "not_a_contact", "unverified_edit"
UNCONFIRMED_REFUSAL = "unconfirmed_refusal"
EDIT_REASONS = (WRONG_SUM, HALF_REFUSAL, NOT_A_CONTACT, UNVERIFIED_EDIT, UNCONFIRMED_REFUSAL)
#: values of ``DecodingConfig.edit_checks``
MODES = ("auto", "off", "on", "strict")

PLACEHOLDERS = {"[EMAIL]": "email", "[PHONE]": "phone", "[CARD]": "card", "[ADDRESS]": "address"}
_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|ADDRESS)\]")

# -- sums ------------------------------------------------------------------------------------------
_NUM = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
_OPS = {"+": "+", "plus": "+", "-": "-", "minus": "-", "*": "*", "x": "*", "\u00d7": "*", "times": "*",
        "multiplied by": "*", "\u2212": "-"}
_OP = r"\+|-|\u2212|\*|\u00d7|x|plus|minus|times|multiplied by"
_EQ = r"=|equals|is equal to|is|makes|gives you|gives|comes to|gets you"
_SUM_FORMS = (
    # 12 + 7 = 19, 340 plus 125 is 465
    re.compile(rf"(?<![\w.,])(?P<a>{_NUM})\s*(?P<op>{_OP})\s*(?P<b>{_NUM})\s*(?:{_EQ})\s*(?P<c>{_NUM})(?![\d])", re.I),
    # the sum of 8 and 9 is 17, adding 8 and 9 gives 17, the difference between 9 and 3 is 6
    re.compile(rf"\b(?P<word>sum|total|adding|add|difference between|difference of|product of|multiplying)"
               rf"(?: of)? (?P<a>{_NUM}) (?:and|to|by) (?P<b>{_NUM}),? (?:{_EQ}|equal) (?P<c>{_NUM})(?![\d])", re.I),
    # 8 and 9 add up to 17, 8 and 9 make 17
    re.compile(rf"(?<![\w.,])(?P<a>{_NUM}) and (?P<b>{_NUM}) (?:add up to|sum to|come to|make|makes|total) "
               rf"(?P<c>{_NUM})(?![\d])", re.I),
)
_WORD_OPS = {"sum": "+", "total": "+", "adding": "+", "add": "+", "difference between": "-", "difference of": "-",
             "product of": "*", "multiplying": "*"}


@dataclass(frozen=True)
class Sum:
    """One ``a op b = c`` statement found in a text; ``span`` is where its result ``c`` stands."""

    a: int
    op: str
    b: int
    c: int
    span: tuple[int, int]

    @property
    def right(self) -> bool:
        return self.c == self.value

    @property
    def value(self) -> int:
        if self.op == "+":
            return self.a + self.b
        if self.op == "-":
            return self.a - self.b
        return self.a * self.b


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def find_sums(text: str) -> list[Sum]:
    """Every arithmetic statement of ``text`` in the forms :data:`_SUM_FORMS` reads, left to right
    (a statement found by an earlier form is not read again by a later one)."""
    found: list[Sum] = []
    taken: list[tuple[int, int]] = []
    for rx in _SUM_FORMS:
        for m in rx.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if "word" in rx.groupindex:
                op = _WORD_OPS[m.group("word").lower()]
            else:
                op = _OPS[m.group("op").lower()] if "op" in rx.groupindex else "+"
            found.append(Sum(_int(m.group("a")), op, _int(m.group("b")), _int(m.group("c")), m.span("c")))
            taken.append(m.span())
    return sorted(found, key=lambda s: s.span)


def wrong_sum(answer: str, correction: str) -> bool:
    """Whether the correction states a sum that is wrong and not the answer's own: it "fixed" a sum
    to another wrong number, changed a right one, or wrote a wrong one of its own."""
    kept = {(s.a, s.op, s.b, s.c) for s in find_sums(answer)}
    return any(not s.right and (s.a, s.op, s.b, s.c) not in kept for s in find_sums(correction))


# -- refusals --------------------------------------------------------------------------------------
_REFUSAL = re.compile(r"\b(?:i|we)(?:'m| am| are)? (?:sorry,? (?:but )?)?(?:i |we )?(?:can(?:'|no)t|can not|won't|"
                      r"will not|am not able to|'m not able to|are not able to|am unable to|'m unable to|"
                      r"refuse to|must decline to) (?:help|assist|provide|give|share|support|do that|explain)|"
                      r"\bnot something i can help|\bi'm not able to help|\bunable to help|\bcan(?:'|no)t help with",
                      re.I)


def is_refusal(text: str) -> bool:
    """Whether ``text`` declines to help (``I can't help with that``, ``I won't provide …``)."""
    return bool(_REFUSAL.search(text.replace("\u2019", "'")))


def whole_refusal(answer: str, correction: str) -> bool:
    """Whether ``correction`` refuses where ``answer`` did not: the refusal edit, whole or spliced
    into the answer's own words (:func:`half_refusal` tells the two apart)."""
    return is_refusal(correction) and not is_refusal(answer)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'@.+-]+", text.lower())


def shared_run(a: str, b: str) -> int:
    """The longest run of consecutive words the two texts share."""
    x, y = _words(a), _words(b)
    m = SequenceMatcher(None, x, y, autojunk=False).find_longest_match(0, len(x), 0, len(y))
    return m.size


#: a refusal that keeps this many consecutive words of the answer kept its instructions
HALF_REFUSAL_RUN = 5


def half_refusal(answer: str, correction: str) -> bool:
    """A refusal written into the correction while a run of the answer's own words stays."""
    if not whole_refusal(answer, correction):
        return False
    return shared_run(answer, correction) >= HALF_REFUSAL_RUN


# -- placeholders ----------------------------------------------------------------------------------
_EMAIL = re.compile(r"[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
_DIGITS = re.compile(r"\d")
_DATE = re.compile(r"(?:1[5-9]|20)\d\d([-/.])[01]?\d\1[0-3]?\d|[0-3]?\d([-/.])[01]?\d\2(?:1[5-9]|20)\d\d")
#: a word right before a number that makes it something other than a contact
_LABELS = re.compile(r"(?:isbn|order|invoice|ticket|tracking|booking|case|ref|reference|item|serial|model|flight|"
                     r"version|v|room|gate|route|chapter|page|no|nr|#)[.:#]?$", re.I)
_STREET_WORDS = re.compile(r"\b(?:st|street|rd|road|ave|avenue|lane|ln|way|drive|dr|court|ct|close|place|pl|square|"
                           r"sq|boulevard|blvd|terrace|crescent|row|hill|park|gardens|walk|path|parade|highway|"
                           r"apt|suite|unit|flat|floor|box|gasse|stra(?:ss|\u00df)e|str|weg|platz|allee|ring|rue|"
                           r"chemin|avenida|calle|camino|via|viale|piazza|rua|travessa|gatan|vej|gade|ul|laan|"
                           r"straat|plein|kade)\b\.?", re.I)
#: what a street address never holds: degrees (coordinates, temperatures) and clock times
_NOT_ADDRESS = re.compile(r"\u00b0|\b\d{1,2}:\d{2}\b")
#: words a full stop may follow inside one address (``St. Mary's Road``, ``Apt. 4``)
_ADDRESS_ABBREVIATIONS = {"st", "rd", "ave", "av", "avda", "dr", "ln", "ct", "pl", "sq", "blvd", "mt", "ft", "apt",
                          "ste", "bldg", "no", "nr", "co", "inc", "ltd", "jr", "sr", "str", "ul", "al", "os", "bd",
                          "pza", "gen", "prof", "sv", "sta", "sto", "gr", "pk", "cres", "tce", "hwy"}


def looks_like(kind: str, span: str, before: str = "") -> bool:
    """Whether ``span`` (what a placeholder replaced; ``before``: the text right before it) is a
    contact of ``kind``: an address with a user and a domain; a phone of 7 to 15 digits in groups,
    no thousands separators, times or units; a card of 13 to 19 digits; a street address with a
    number and a street word or a capitalised name, within one sentence, with no degrees or clock times
    (coordinates are none). A number after a label (``ISBN``, ``order``) is none."""
    s = span.strip(" \t,;:()[]<>\"'")
    if not s:
        return False
    if kind == "email":
        m = _EMAIL.search(s)
        return bool(m) and len(m.group(0)) >= len(s) - 2
    digits = len(_DIGITS.findall(s))
    if kind in ("phone", "card"):
        tail = before.rstrip(" ([").split(" ")[-1] if before.strip() else ""
        if _LABELS.search(tail) and not re.search(r"(?:card|tel|phone|no)\.?$", tail, re.I):
            return False
        if not re.fullmatch(r"\+?[\d()][\d ()./-]*\d", s) or re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
            return False
        if ":" in s or re.search(r"\d\.\d{3,}\b", s) and kind == "phone" and s.count(".") == 1:
            return False
        if _DATE.fullmatch(s):  # 2032-02-09, 09.02.2032, 2/9/2032
            return False
        return 7 <= digits <= 15 if kind == "phone" else 13 <= digits <= 19
    if kind == "address":
        if (not digits or len(s.split()) > 16 or "@" in s or _NOT_ADDRESS.search(s)
                or re.search(r"[()\[\]{}<>~|]", re.sub(r"\([A-Z]{2}\)?", "", s))):  # (PG): a province
            return False  # brackets inside: words beside the address went with it (``8 Oak St (office hours)``)
        if re.search(r",(?: [a-z\u00df-\u024f]+){2,}[.!?]?$", s):
            return False  # ends in a lowercase clause: ``8 rue des Lilas, just behind the bakery``
        if any(m.group(1).lower() not in _ADDRESS_ABBREVIATIONS
               and len(m.group(1)) > 1  # an initial: C. Silvestre Rosell 749
               for m in re.finditer(r"(\w+)[.!?]\s+[A-Z\u00c0-\u024f]", s)):  # a span across sentences is none
            return False
        return bool(_STREET_WORDS.search(s) or re.search(r"\b\d+[a-zA-Z]?\b.*\b[A-Z][a-z\u00c0-\u024f]+", s)
                    or re.search(r"\b[A-Z][a-z\u00c0-\u024f]+\w*\b.*\b\d+[a-zA-Z]?\b", s))
    return False


_INNER = re.compile(r"[\w@%+.,-]")


def _hunks(answer: str, correction: str) -> list[tuple[str, str, str]]:
    """``(answer part, correction part, text before)`` of each changed stretch, word-level with the
    common characters of its edges trimmed (``Email:ana@x.io,`` → ``ana@x.io`` / ``[EMAIL]``)."""
    a, c = answer.split(), correction.split()
    out = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, c, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        x, y = " ".join(a[i1:i2]), " ".join(c[j1:j2])
        before = " ".join(a[:i1])
        k = 0
        while k < min(len(x), len(y)) and x[k] == y[k]:
            k += 1
        while k and (_INNER.match(x[k - 1]) or x[k - 1] == "["):
            k -= 1  # never cut inside a number, an address or a placeholder
        before, x, y = (before + " " + x[:k]).strip() if k else before, x[k:], y[k:]
        e = 0
        while e < min(len(x), len(y)) and x[len(x) - 1 - e] == y[len(y) - 1 - e]:
            e += 1
        while e and (_INNER.match(x[len(x) - e]) or x[len(x) - e] == "]"):
            e -= 1
        out.append((x[:len(x) - e] if e else x, y[:len(y) - e] if e else y, before))
    return out


def _placeholder_ok(x: str, y: str, before: str) -> bool | None:
    """For a changed stretch whose correction holds placeholders: True when each replaced a contact
    of its kind and nothing else changed, False otherwise, None when it holds no placeholder."""
    names = _PLACEHOLDER.findall(y)
    if not names:
        return None
    pieces = _PLACEHOLDER.split(y)
    m = re.fullmatch("(.+?)".join(re.escape(p) for p in pieces), x, flags=re.S)
    if not m:
        return False  # words around the contact changed too
    return all(looks_like(PLACEHOLDERS[n], span, before + " " + pieces[i])
               for i, (n, span) in enumerate(zip(names, m.groups())))


_NUMBERISH = re.compile(r"\+?[\d(][\d ()./-]*\d")


def _holds(kind: str, text: str, before: str) -> bool:
    """Whether a contact of ``kind`` stands anywhere in ``text`` (a looser test than :func:`looks_like`)."""
    if kind == "email":
        return bool(_EMAIL.search(text))
    if kind == "address":
        return looks_like(kind, text, before)
    return any(looks_like(kind, m.group(0), before + " " + text[:m.start()]) for m in _NUMBERISH.finditer(text))


#: a placeholder with a piece of the contact still glued to it (``support@[EMAIL]``, ``[EMAIL].ng``)
_GLUED_PIECE = re.compile(r"\w[@.]?\[(?:EMAIL|PHONE|CARD|ADDRESS)\]|\[(?:EMAIL|PHONE|CARD|ADDRESS)\][@.-]?\w")


def placeholder_over_non_contact(answer: str, correction: str) -> bool:
    """A placeholder that stands where the answer had no contact of its kind (or had nothing), or
    beside a piece of the contact it half replaced."""
    if any(not re.search(re.escape(m.group(0)), answer) for m in _GLUED_PIECE.finditer(correction)):
        return True
    for x, y, before in _hunks(answer, correction):
        names = _PLACEHOLDER.findall(y)
        if names and not _placeholder_ok(x, y, before) and not any(_holds(PLACEHOLDERS[n], x, before) for n in names):
            return True
    return False


#: the one mark after a sum's result that a fix may change too (``= 44, but`` → ``= 43. but``: the
#: demo corrector's slip, which leaves every word as it was and the sum right)
_CLAUSE_MARKS = {"", ",", ".", ";", ":"}


def _sum_fix(x: str, y: str, correction: str) -> bool:
    """A hunk that only changes a number into the right result of a sum of the correction (and
    perhaps the clause mark right after it)."""
    mx, my = re.fullmatch(rf"({_NUM})([^\w]*)", x), re.fullmatch(rf"({_NUM})([^\w]*)", y)
    if not mx or not my or (mx.group(2) != my.group(2) and not {mx.group(2), my.group(2)} <= _CLAUSE_MARKS):
        return False  # not a number, or more than a clause mark after it changed too
    return any(s.right and s.c == _int(my.group(1)) for s in find_sums(correction))


def unverified_edit(answer: str, correction: str) -> bool:
    """A change that is none of the checkable edits: not a whole refusal, and some stretch is neither
    a contact replaced by its placeholder nor a sum's result made right."""
    if whole_refusal(answer, correction):
        return False  # a whole refusal (a half one is judged by half_refusal)
    for x, y, before in _hunks(answer, correction):
        if _placeholder_ok(x, y, before) is True or _sum_fix(x, y, correction):
            continue
        return True
    return False


def check_edit(answer: str, correction: str, *, strict: bool = False) -> str | None:
    """The reason to decline ``correction`` of ``answer`` (one of :data:`EDIT_REASONS`), or None."""
    if correction.split() == answer.split():
        return None
    if half_refusal(answer, correction):
        return HALF_REFUSAL
    if not whole_refusal(answer, correction):
        if wrong_sum(answer, correction):
            return WRONG_SUM
        if placeholder_over_non_contact(answer, correction):
            return NOT_A_CONTACT
    if strict and unverified_edit(answer, correction):
        return UNVERIFIED_EDIT
    return None


def resolve_mode(mode: str, *, demo: bool) -> str:
    """``DecodingConfig.edit_checks`` with ``auto`` settled: strict for a demo corrector, else off."""
    return ("strict" if demo else "off") if mode == "auto" else mode


def edit_check_for(mode: str, *, demo: bool) -> Callable[[str, str], str | None] | None:
    """The check a guard runs for ``DecodingConfig.edit_checks`` = ``mode`` (None: no check)."""
    mode = resolve_mode(mode, demo=demo)
    if mode == "off":
        return None
    strict = mode == "strict"
    return lambda answer, correction: check_edit(answer, correction, strict=strict)
