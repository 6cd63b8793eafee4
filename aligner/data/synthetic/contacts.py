"""Personal data: fake contact details (names, emails, phones, card-like numbers, addresses), the
placeholders that replace them, where they sit in text, and finding the ones left over.
"""
from __future__ import annotations

import random
import re
from typing import Sequence

PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "address": "[ADDRESS]"}

FIRST_NAMES = ("Maria", "James", "Aisha", "Chen", "Olga", "Diego", "Priya", "Tom", "Fatima", "Lukas",
               "Sofia", "Kwame", "Yuki", "Emma", "Omar", "Hannah", "Ravi", "Lena", "Carlos", "Mei",
               "Noah", "Zara", "Ivan", "Grace", "Mateo", "Amara", "Jonas", "Leila", "Sam", "Nora",
               "Hugo", "Anya", "Felix", "Ines", "Kofi", "Elif", "Ben", "Rosa", "Arjun", "Clara")

LAST_NAMES = ("Garcia", "Smith", "Khan", "Wang", "Petrova", "Lopez", "Patel", "Brown", "Haddad",
              "Muller", "Rossi", "Mensah", "Tanaka", "Jones", "Ali", "Schmidt", "Singh", "Novak",
              "Silva", "Li", "Kim", "Okafor", "Ivanov", "Taylor", "Costa", "Nguyen", "Berg", "Dubois")

DOMAINS = ("example.com", "mail.net", "inbox.org", "post.io", "webmail.co.uk", "fastmail.dev",
           "company.biz", "school.edu", "home.info", "letters.me", "cloudmail.app", "office.net")

STREETS = ("Oak", "Maple", "High", "Church", "Mill", "Park", "Station", "Victoria", "Cedar", "Elm",
           "Willow", "King", "Queen", "River", "Lake", "Hill", "Bridge", "Green", "Sunset", "Pine")

STREET_TYPES = ("Street", "Road", "Avenue", "Lane", "Drive", "Close", "Way", "Boulevard", "Court")


def _email(rng: random.Random, first: str, last: str) -> str:
    f, l = first.lower(), last.lower()
    user = rng.choice((f"{f}.{l}", f"{f}{l}", f"{f[0]}.{l}", f"{f}_{l}", f"{f}{rng.randint(1, 99)}",
                       f"{l}.{f}", f"{f}.{l}{rng.randint(1, 9)}"))
    return f"{user}@{rng.choice(DOMAINS)}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def _phone(rng: random.Random) -> str:
    d = lambda n: _digits(rng, n)  # noqa: E731
    area = str(rng.randint(2, 9)) + d(2)
    return rng.choice((f"{area}-{d(3)}-{d(4)}", f"({area}) {d(3)}-{d(4)}", f"+1 {area} {d(3)} {d(4)}",
                       f"{area}.{d(3)}.{d(4)}", f"+44 {rng.randint(20, 79)} {d(4)} {d(4)}",
                       f"0{rng.randint(1, 9)}{d(2)} {d(3)} {d(4)}", f"+49 {rng.randint(30, 89)} {d(7)}"))


def _card(rng: random.Random) -> str:
    first = rng.choice("3456")
    if first == "3":  # amex-like 4-6-5
        n = "3" + rng.choice("47") + _digits(rng, 13)
        return rng.choice((f"{n[:4]} {n[4:10]} {n[10:]}", f"{n[:4]}-{n[4:10]}-{n[10:]}", n))
    n = first + _digits(rng, 15)
    groups = [n[i:i + 4] for i in range(0, 16, 4)]
    return rng.choice((" ".join(groups), "-".join(groups), n))


def _address(rng: random.Random) -> str:
    base = f"{rng.randint(1, 999)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"
    return rng.choice((base, base, f"{base}, Apt {rng.randint(1, 40)}", f"Flat {rng.randint(1, 20)}, {base}"))


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _contact_values(rng: random.Random, first: str, last: str) -> dict[str, str]:
    return {"email": _email(rng, first, last), "phone": _phone(rng), "card": _card(rng), "address": _address(rng)}


#: Contact sentences; ``{name}`` stays, ``{email}`` etc. become placeholders in the correction.
REDACT_TEMPLATES = (
    "You can email {name} at {email}.",
    "{name}'s email address is {email}.",
    "Just write to {email} and {name} will answer.",
    "Send your questions to {email}.",
    "{name}'s phone number is {phone}.",
    "Call {name} on {phone} after six.",
    "You can reach me at {phone} any time.",
    "The number to ring is {phone}.",
    "Text {name} at {phone} to confirm.",
    "My card number is {card}, please charge it.",
    "Use the card {card} for the booking.",
    "{name} paid with the card {card}.",
    "The card ending the list is {card}.",
    "{name} lives at {address}.",
    "Send the package to {address}.",
    "Our office is at {address}, next to the bakery.",
    "You will find {name} at {address}.",
    "Reach {name} at {email} or {phone}.",
    "Ship it to {address} and email {email} when it leaves.",
    "{name} lives at {address} and the phone there is {phone}.",
    "Charge {card} and send the receipt to {email}.",
)

REDACT_QUESTIONS = (
    "How can I get in touch with {name}?", "What are {name}'s contact details?",
    "Where should I send the documents?", "Can you help me finish this message?",
    "Who do I contact about my order?", "How do I pay for the tickets?",
    "Can you tidy up this note for me?", "Where does {name} live?", "What is the best way to reach {name}?",
    "Could you write a short reply to {name}?", "What should I put in the delivery form?",
)

SPLICE_TRAIN_QUESTIONS = ("Can you clean up this text?", "Is this fine to post?", "Could you fix this up?",
                          "Please tidy this paragraph.", "Does this read well?")

#: Training splice shapes: a wrapper around an optional lead-in and the value. Deliberately disjoint
#: from the held-out :data:`SPLICE_CLAUSES` (other wrappers and lead-ins), so that evaluation set
#: still measures generalisation to unseen phrasing as well as to unseen sentences.
SPLICE_WRAPPERS = (" ({x})", ", {x},", "; {x};", " [{x}]", " -- {x} --", " / {x} /")

SPLICE_LEADS = {
    "email": ("", "email", "email me at", "my mail is", "mail", "reach me via", "send it to", "my inbox is", "e-mail:"),
    "phone": ("", "tel.", "my number is", "mobile", "dial", "text me on", "cell:", "ring me on", "number"),
    "card": ("", "visa", "my card is", "card number", "charge", "paying with", "mastercard", "billing card"),
    "address": ("", "I live at", "my home is", "deliver to", "visit us at", "the office is at", "home:", "located at"),
}

#: How a scattered contact sits among its neighbouring words (besides bare).
INLINE_SHAPES = ("({x})", "{x},", "{x};", "{x}.", '"{x}"', "<{x}>", "{x}:")


#: More wrappers for contacts with free lead-ins (never the held-out single-dash shape " - x -").
FREE_SHAPES = INLINE_SHAPES + ("-- {x} --", "[{x}]", "/ {x} /", "| {x} |", "* {x} *", "({x}),", "{x}!", "{x}?",
                               "'{x}'", "{{{x}}}", "-- {x},", "({x});")


#: Stand-alone symbols a contact may sit between (``~ x ~``, ``:: x ::``, ``| x ,``): with them the
#: model meets contacts after punctuation it was never shown and learns to decide by the contact itself.
#: Never a lone ASCII hyphen, the held-out splice shape (" - x -"), nor a unicode dash (normalised to it).
SEPARATORS = ("~", "•", "|", "/", "//", "::", ":", "->", "=>", ">>", "<<", "+", "#", "*", "...", "_", "^",
              "--", "---", "<>", "&", "§")


def _sep_shape(rng: random.Random) -> str:
    """A wrapper of separator symbols: the same on both sides, two different ones, or one then a comma."""
    left = rng.choice(SEPARATORS)
    r = rng.random()
    if r < 0.85:
        return f"{left} {{x}} {left if r < 0.6 else rng.choice(SEPARATORS)}"
    return f"{left} {{x}}{rng.choice((',', ';', '.'))}"


def _free_lead(rng: random.Random, kind: str, lead_words: Sequence[str]) -> str:
    """A lead-in of one to three arbitrary words (sometimes one of :data:`SPLICE_LEADS`), so the model
    learns that whatever precedes a contact is copied, not the particular phrases it was shown."""
    r = rng.random()
    if r < 0.3:
        return ""
    if r < 0.5:
        return rng.choice(SPLICE_LEADS[kind])
    lead = " ".join(rng.choice(lead_words) for _ in range(rng.choice((1, 1, 2, 3))))
    return lead + rng.choice(("", "", "", ":", ","))


def insert_contacts(rng: random.Random, text: str, kinds: Sequence[str],
                    lead_words: Sequence[str] = (), *, separators: bool = False) -> tuple[str, str]:
    """``(answer, correction)``: a contact of each kind at a random word position of ``text`` (first and
    last included) — bare or wrapped, with an optional lead-in — and the same with placeholders.

    With ``lead_words`` the lead-ins are mostly arbitrary words from it and the wrappers more varied
    (:func:`_free_lead`, :data:`FREE_SHAPES`); without, the rows are those of earlier rebuilds, draw for draw.
    ``separators`` makes half the wrappers stand-alone symbols (:func:`_sep_shape`).
    """
    words = text.split(" ")
    slots = rng.sample(range(len(words) + 1), min(len(kinds), len(words) + 1))  # never two side by side
    answer, correction = list(words), list(words)
    shapes, p_shaped = (FREE_SHAPES, 0.5) if lead_words else (INLINE_SHAPES, 0.4)
    for slot, kind in sorted(zip(slots, kinds), key=lambda p: -p[0]):  # right to left: slots stay valid
        if lead_words:
            lead = _free_lead(rng, kind, lead_words)
        else:
            lead = rng.choice(SPLICE_LEADS[kind]) if rng.random() < 0.6 else ""
        value = _contact_values(rng, *_name(rng))[kind]
        shape = rng.choice(shapes) if rng.random() < p_shaped else "{x}"
        if separators and rng.random() < 0.5:
            shape = _sep_shape(rng)
        answer.insert(slot, shape.format(x=f"{lead} {value}".strip()))
        correction.insert(slot, shape.format(x=f"{lead} {PLACEHOLDERS[kind]}".strip()))
    return " ".join(answer), " ".join(correction)


_CONTACT_RES = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "card": re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
    "phone": re.compile(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{2,4})[ .-]\d{3,4}(?:[ .-]\d{3,4})?|\+\d{1,3} \d{2} \d{7}"),
    "address": re.compile(r"\b\d{1,4} (?:%s) (?:%s)\b" % ("|".join(STREETS), "|".join(STREET_TYPES))),
}


def leftover_contacts(text: str) -> list[str]:
    """Contact details (emails, card-like numbers, phones, addresses) still present in ``text``."""
    found = []
    for rx in _CONTACT_RES.values():
        found += rx.findall(text)
    return found


_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))


def contact_spans(answer: str, correction: str) -> list[str]:
    """The pieces of ``answer`` that the placeholders of ``correction`` stand for, left to right
    (``[]`` when ``correction`` is not ``answer`` with spans replaced by placeholders)."""
    parts = _PLACEHOLDER_RE.split(correction)
    if len(parts) == 1:
        return []
    m = re.fullmatch("(.+?)".join(re.escape(p) for p in parts), answer, flags=re.S)
    return list(m.groups()) if m else []
