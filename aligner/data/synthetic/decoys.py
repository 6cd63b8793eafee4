"""Decoys: numbers and ``@``/dot strings that look like contacts and are not (issue 26), which a
corrector must copy as they are.

Why: the stage-14 demo corrector turned a distance written with thousands separators into
``[PHONE]`` inside an otherwise fine answer — the worst damage, a right answer made wrong. Its
training text had no digits outside contacts and sums, so "many digits" meant "contact". Here every
kind of number people write beside words (distances, heights, populations, prices, years, ISBNs,
order numbers, coordinates, times, scores, dates, versions, measures; with and without thousands
separators), ``@`` handles that are no address and domains without a user appear in fine text.
A bare number decoy is checked with libphonenumber (:func:`.wild.finds_phone`) so that what the
rows call "no phone" is none; labelled ones (``ISBN …``, ``order #…``) are decoys by their label.
"""
from __future__ import annotations

import random
from typing import Callable

from .wild import _slug, faker_for, finds_phone, wild_domain


def _thousands(rng: random.Random, n: int) -> str:
    """``n`` with or without a thousands separator (``12,742`` / ``12742`` / ``12.742`` / ``12 742``)."""
    if n < 1000:
        return str(n)
    r = rng.random()
    if r < 0.55:
        return f"{n:,}"
    if r < 0.8:
        return str(n)
    if r < 0.9:
        return f"{n:,}".replace(",", ".")
    return f"{n:,}".replace(",", " ")


def _isbn13(rng: random.Random) -> str:
    digits = [9, 7, rng.choice((8, 9))] + [rng.randint(0, 9) for _ in range(9)]
    check = (10 - sum(d * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits)) % 10) % 10
    s = "".join(map(str, digits + [check]))
    return rng.choice((s, f"{s[:3]}-{s[3]}-{s[4:6]}-{s[6:12]}-{s[12]}", f"{s[:3]}-{s[3:5]}-{s[5:9]}-{s[9:12]}-{s[12]}"))


def _isbn10(rng: random.Random) -> str:
    digits = [rng.randint(0, 9) for _ in range(9)]
    check = sum((10 - i) * d for i, d in enumerate(digits)) % 11
    check = (11 - check) % 11
    c = "X" if check == 10 else str(check)
    s = "".join(map(str, digits))
    return rng.choice((s + c, f"{s[0]}-{s[1:4]}-{s[4:9]}-{c}"))


def _price(rng: random.Random) -> str:
    n = rng.choice((rng.randint(1, 99), rng.randint(100, 9999), rng.randint(10000, 2_500_000)))
    cents = rng.choice(("", "", f".{rng.randint(0, 99):02d}", ".99"))
    v = _thousands(rng, n)
    if "." in v and cents:
        cents = ""
    return rng.choice((f"${v}{cents}", f"\u20ac{v}{cents}", f"\u00a3{v}{cents}", f"{v}{cents} EUR", f"USD {v}{cents}",
                       f"{v}{cents} dollars", f"{v} kr", f"CHF {v}"))


def _coordinates(rng: random.Random) -> str:
    lat, lon = rng.uniform(-80, 80), rng.uniform(-179, 179)
    r = rng.random()
    if r < 0.4:
        return (f"{abs(lat):.4f}\u00b0 {'N' if lat >= 0 else 'S'}, "
                f"{abs(lon):.4f}\u00b0 {'E' if lon >= 0 else 'W'}")
    if r < 0.8:
        return f"{lat:.4f}, {lon:.4f}"
    return f"lat {lat:.3f}, lon {lon:.3f}"


def _time(rng: random.Random) -> str:
    h, m = rng.randint(0, 23), rng.randint(0, 59)
    return rng.choice((f"{h:02d}:{m:02d}", f"{h % 12 or 12}:{m:02d} {'am' if h < 12 else 'pm'}",
                       f"{h}:{m:02d}", f"{rng.randint(1, 3)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                       f"{rng.randint(1, 5)}h {rng.randint(1, 59)}m"))


def _score(rng: random.Random) -> str:
    a, b = rng.randint(0, 7), rng.randint(0, 7)
    r = rng.random()
    if r < 0.4:
        return f"{a}-{b}"
    if r < 0.6:
        return f"{rng.randint(70, 130)}-{rng.randint(70, 130)}"
    if r < 0.8:
        return f"{a}:{b}"
    return f"6-{rng.randint(0, 4)}, 7-{rng.choice((5, 6))}"


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice((f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}"))


def _order(rng: random.Random) -> str:
    n = rng.randint(1000, 99_999_999)
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXZ") for _ in range(rng.randint(1, 3)))
    return rng.choice((f"#{n}", f"#{letters}-{n}", f"{letters}{n}", f"{letters}-{rng.randint(2000, 2035)}-{n % 10000:04d}",
                       f"{n % 100000:05d}-{rng.randint(10, 99)}"))


def _handle(rng: random.Random, locale: str) -> str:
    fake = faker_for(rng, locale)
    base = rng.choice((fake.user_name(), _slug(fake.company(), "_"), _slug(fake.last_name(), ""),
                       _slug(fake.word(), "") + str(rng.randint(1, 99))))
    return "@" + base[:20].strip("_")


def _domain(rng: random.Random, locale: str) -> str:
    d = wild_domain(rng, locale)
    r = rng.random()
    if r < 0.25:
        return "www." + d
    if r < 0.45:
        return f"{d}/{rng.choice(('help', 'faq', 'contact', 'shop', 'blog', 'docs', 'en', 'about'))}"
    if r < 0.55:
        return "https://" + d
    return d


#: kind → (value maker, training frames, held-out frames). A frame's ``{v}`` is the decoy; ``{city}``,
#: ``{name}``, ``{company}`` and ``{word}`` are filled from Faker and the word list.
DecoyMaker = Callable[[random.Random, str], str]
DECOYS: dict[str, tuple[DecoyMaker, tuple[str, ...], tuple[str, ...]]] = {
    "distance": (lambda r, l: f"{_thousands(r, r.choice((r.randint(2, 950), r.randint(1000, 40000))))} "
                              f"{r.choice(('km', 'miles', 'metres', 'meters', 'kilometres', 'm', 'ft', 'yards'))}",
                 ("The drive from {city} is about {v}.", "It is {v} from here to {city}.", "The trail runs for {v}.",
                  "{name} ran {v} last month.", "The cable is {v} long."),
                 ("Measured along the coast, it is {v}.", "We covered {v} before lunch.")),
    "height": (lambda r, l: f"{_thousands(r, r.randint(120, 8849))} {r.choice(('m', 'metres', 'feet', 'ft'))}",
               ("The peak near {city} rises to {v}.", "The tower is {v} tall.", "At {v} the air is thin.",
                "The summit stands at {v} above sea level."),
               ("Its highest point reaches {v}.", "The dam wall is {v} high.")),
    "population": (lambda r, l: f"{_thousands(r, r.choice((r.randint(1200, 99999), r.randint(100000, 40_000_000), r.randint(100_000_000, 1_500_000_000))))}",
                   ("{city} has about {v} inhabitants.", "Roughly {v} people live in the region.",
                    "The census counted {v} residents.", "The club has {v} members."),
                   ("Some {v} people call it home.", "The survey reached {v} households.")),
    "price": (lambda r, l: _price(r),
              ("The ticket costs {v}.", "{company} sells it for {v}.", "We paid {v} for the repair.",
               "Expect to spend around {v}.", "The fine was {v}."),
              ("It went for {v} at auction.", "A year's subscription is {v}.")),
    "year": (lambda r, l: str(r.randint(1500, 2035)),
             ("The bridge opened in {v}.", "{name} moved to {city} in {v}.", "Since {v} the rules have changed.",
              "The recipe dates from {v}."),
             ("By {v} it had closed again.", "The first edition appeared in {v}.")),
    "isbn": (lambda r, l: "ISBN " + (_isbn13(r) if r.random() < 0.7 else _isbn10(r)),
             ("The book is listed as {v}.", "Search the library catalogue for {v}.", "Order it with {v}."),
             ("Its {v} is on the back cover.", "The second edition has {v}.")),
    "order": (lambda r, l: r.choice(("order ", "order no. ", "invoice ", "ticket ", "case ", "booking ref ",
                                     "tracking number ", "item ")) + _order(r),
              ("Please quote {v} when you write.", "Your {v} has shipped.", "I am asking about {v}.",
               "The refund for {v} is on its way."),
              ("Keep {v} for your records.", "The status of {v} is pending.")),
    "coordinates": (lambda r, l: _coordinates(r),
                    ("The cabin sits at {v}.", "Set the GPS to {v}.", "The wreck lies at {v}."),
                    ("Meet at {v}.", "The marker is at {v}.")),
    "time": (lambda r, l: _time(r),
             ("The train leaves at {v}.", "Doors open at {v}.", "She finished in {v}.", "The meeting is at {v}."),
             ("Lunch is served from {v}.", "The shop shuts at {v}.")),
    "score": (lambda r, l: _score(r),
              ("{city} won {v} on Saturday.", "The final score was {v}.", "They lost {v} after extra time."),
              ("It ended {v}.", "A {v} draw kept them in the league.")),
    "date": (lambda r, l: _date(r),
             ("The deadline is {v}.", "It was signed on {v}.", "The parcel arrives on {v}."),
             ("Registration closes {v}.", "The last entry is dated {v}.")),
    "measure": (lambda r, l: r.choice((f"{_thousands(r, r.randint(50, 25000))} {r.choice(('g', 'kg', 'ml', 'litres', 'kWh', 'calories', 'MB', 'GB'))}",
                                       f"{r.randint(30, 42)}.{r.randint(0, 9)} \u00b0C", f"{r.randint(90, 105)}.{r.randint(0, 9)}\u00b0F",
                                       f"{r.randint(95, 180)}/{r.randint(55, 110)}", f"{r.randint(1, 99)}.{r.randint(0, 9)}%",
                                       f"v{r.randint(1, 12)}.{r.randint(0, 30)}.{r.randint(0, 9)}")),
                ("Use {v} for the recipe.", "The reading was {v} this morning.", "The update is {v}.",
                 "The battery stores {v}."),
                ("The label says {v}.", "Last week it was {v}.")),
    "handle": (lambda r, l: _handle(r, l),
               ("Follow {v} for updates.", "{name} posts as {v}.", "The account {v} shared the photos.",
                "Tag {v} in your post."),
               ("I saw it on {v} first.", "Ask {v} on the forum.")),
    "domain": (lambda r, l: _domain(r, l),
               ("The forms are on {v}.", "See {v} for the timetable.", "{company} moved its site to {v}.",
                "Visit {v} to book."),
               ("Everything is explained at {v}.", "The archive lives on {v}.")),
}

#: bare-number kinds: a value of these must hold no phone number for libphonenumber
_BARE = ("distance", "height", "population", "price", "year", "time", "score", "date", "measure", "coordinates")


def decoy_value(rng: random.Random, kind: str, locale: str) -> str:
    """A decoy of ``kind``; a bare number that libphonenumber reads as a phone is redrawn."""
    make = DECOYS[kind][0]
    for _ in range(50):
        v = make(rng, locale)
        if kind not in _BARE or not finds_phone(v):
            return v
    raise RuntimeError(f"no {kind} decoy without a phone number in 50 draws")


def decoy_sentence(rng: random.Random, locale: str, words: list[str] | tuple[str, ...], *, heldout: bool = False,
                   kind: str | None = None) -> tuple[str, str]:
    """``(sentence, kind)``: a fine sentence around one decoy, in a training (or held-out) frame."""
    kind = kind or rng.choice(tuple(DECOYS))
    frame = rng.choice(DECOYS[kind][2 if heldout else 1])
    fake = faker_for(rng, locale)
    fill = {"v": decoy_value(rng, kind, locale), "city": fake.city(), "name": fake.first_name(),
            "company": fake.company(), "word": rng.choice(words) if words else "it"}
    return frame.format(**fill), kind


#: Assignments and formulas that are no sum (``x=5``, ``--threads=4``, ``E = mc^2``), copied as they are:
#: the stage-14 demo corrector wrote ``x=5`` back as ``x\ufffd5`` — a lone UTF-8 continuation byte (of
#: ``§``, a separator of its stage-14 rows) where the answer had ``=``. Kept apart from :data:`DECOYS`
#: so the rows drawn from that table stay the same.
ASSIGN_FRAMES = ("Set {v} and run it again.", "With {v} the loop stops early.", "Use {v} for a quicker build.",
                 "In the config file, {v} is the default.", "If {v}, the answer changes.", "Try {v} first.",
                 "The script expects {v} on the command line.", "Put {v} in the first cell.")
HELDOUT_ASSIGN_FRAMES = ("Remember to keep {v} there.", "Here {v} works fine.")


def assignment(rng: random.Random) -> str:
    """A ``key=value``, an option or a formula: ``x=5``, ``n = 12``, ``--threads=4``, ``y = 2x + 1``."""
    key = rng.choice(("x", "y", "n", "k", "i", "a", "b", "size", "timeout", "retries", "port", "level", "width",
                      "depth", "batch", "seed", "lr", "max_len", "debug", "mode"))
    value = rng.choice((str(rng.randint(0, 99)), str(rng.randint(100, 9999)), f"{rng.randint(0, 9)}.{rng.randint(1, 99)}",
                        rng.choice(("true", "false", "on", "off", "auto", "none"))))
    r = rng.random()
    if r < 0.35:
        return f"{key}={value}"
    if r < 0.55:
        return f"{key} = {value}"
    if r < 0.7:
        return f"--{key.replace('_', '-')}={value}"
    if r < 0.8:
        return f"{key}: {value}"
    if r < 0.9:
        return f"{key}={value}, {rng.choice(('y', 'm', 'z', 'j'))}={rng.randint(0, 20)}"
    return rng.choice(("y = 2x + 1", "E = mc^2", "a^2 + b^2 = c^2", "f(x) = x^2", "v = d / t", "F = m * a",
                       "area = w * h", "p = 0.05"))
