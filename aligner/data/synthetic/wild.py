"""Contacts as they appear in the wild (issue 26): Faker's people, companies, free-mail and role
addresses, each locale's phone formats (checked with Google's libphonenumber), card numbers and
street addresses, instead of the hand-kept tables of :mod:`.contacts`.

Why: the stage-14 demo corrector redacted 92% of the generator's own contacts and 53% of contacts
written by hand: it had learnt twelve domains and person-name addresses, not addresses. Faker knows
thousands of names, companies and streets in dozens of locales; ``phonenumbers`` says whether what
the generator calls a phone number is one (and, for decoys, that a number is *not* one).

Determinism: every value comes from a Faker instance re-seeded from the caller's ``random.Random``
just before it is drawn, so rows stay a pure function of the generator's seed — for the pinned
library versions (:func:`library_versions`, recorded in the demo corrector's report): another Faker
release may word its tables differently.
"""
from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any, Sequence

#: Latin-script locales the training rows draw from; :data:`HELDOUT_LOCALES` are kept for evaluation.
TRAIN_LOCALES = ("en_US", "en_GB", "en_CA", "en_IN", "de_DE", "de_CH", "fr_FR", "es_ES", "it_IT", "nl_NL",
                 "pt_BR", "sv_SE", "da_DK", "pl_PL")
HELDOUT_LOCALES = ("en_AU", "en_NZ", "en_IE", "de_AT", "fr_CH", "fr_CA", "es_MX", "pt_PT", "fi_FI", "cs_CZ")

#: The user part of an address that names a function, not a person (``support@``, ``billing-team@``).
ROLE_USERS = ("support", "help", "helpdesk", "info", "hello", "contact", "sales", "billing", "billing-team",
              "accounts", "accounting", "invoices", "payments", "orders", "returns", "refunds", "bookings",
              "reservations", "reception", "office", "admin", "team", "press", "media", "jobs", "careers",
              "hr", "people", "legal", "privacy", "security", "it", "it-support", "webmaster", "marketing",
              "events", "service", "customer.service", "customer-care", "care", "feedback", "enquiries",
              "questions", "noreply", "no-reply", "dispatch", "shipping", "warehouse", "studio", "editor",
              "newsroom", "partners", "donations", "volunteers", "membership", "admissions", "registrar",
              "frontdesk", "facilities", "operations", "ops", "dev", "community", "tickets", "claims")

#: Top-level domains beyond Faker's usual ``com``/``org``/``net``: newer generic and country ones.
NEW_TLDS = ("io", "app", "dev", "tech", "shop", "store", "online", "site", "xyz", "ai", "co", "cloud", "studio",
            "agency", "health", "travel", "eu", "me", "info", "biz", "design", "media", "news", "systems",
            "digital", "energy", "finance", "law", "legal", "email", "support", "team", "berlin", "london",
            "nyc", "swiss", "co.uk", "org.uk", "com.au", "co.nz", "com.br", "de", "fr", "es", "it", "nl",
            "se", "dk", "pl", "ch", "at", "be", "ca", "in", "ie", "us", "uk")

_SLUG = re.compile(r"[^a-z0-9]+")


#: Faker tables built from a set (their order follows ``PYTHONHASHSEED``): sorted before use
_SET_BUILT_TABLES = (("faker.providers.address.it_IT", "cities"),)


@lru_cache(maxsize=None)
def _faker(locale: str) -> Any:
    """The locale's Faker, with the tables Faker builds from a set sorted: drawing from a set's
    order (it_IT's cities) gave other rows in every process."""
    from faker import Faker  # lazy: only the rebuild's data step needs it (extra "synth")

    fake = Faker(locale)
    for provider in fake.get_providers():
        for module, name in _SET_BUILT_TABLES:
            if type(provider).__module__ == module:
                setattr(provider, name, sorted(getattr(provider, name)))
    return fake


def faker_for(rng: random.Random, locale: str) -> Any:
    """The locale's Faker, re-seeded from ``rng``: the next value is a pure function of ``rng``'s state."""
    fake = _faker(locale)
    fake.seed_instance(rng.getrandbits(48))
    return fake


def library_versions() -> dict[str, str]:
    """The versions of the libraries the wild rows come from (their tables decide the rows)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("faker", "phonenumbers", "wordfreq"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _ascii(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _slug(text: str, sep: str = "-") -> str:
    return _SLUG.sub(sep, _ascii(text).lower()).strip(sep)


def wild_domain(rng: random.Random, locale: str) -> str:
    """A domain as companies, schools and shops have them: Faker's, a company name made a slug
    (``weaver-dunn.io``), a hyphenated pair of surnames, or a sub-domain, on old and new TLDs."""
    fake = faker_for(rng, locale)
    r = rng.random()
    if r < 0.3:
        return fake.domain_name()
    if r < 0.6:
        name = _slug(re.sub(r"\b(Ltd|LLC|Inc|PLC|GmbH|AG|SA|SARL|S\.?p\.?A|BV|AB|Group|and|und|et|y|e|& ?Co)\b\.?",
                            "", fake.company()))
        name = name or _slug(fake.last_name())
    elif r < 0.8:
        name = f"{_slug(fake.last_name())}-{_slug(rng.choice((fake.last_name(), fake.word(), fake.city())))}"
    else:
        name = f"{rng.choice(('mail', 'shop', 'help', 'www', 'team', 'eu', 'uk', 'go'))}.{_slug(fake.last_name())}"
    tld = rng.choice(NEW_TLDS) if rng.random() < 0.6 else fake.tld()
    return f"{name[:30].strip('-')}.{tld}"


def wild_email(rng: random.Random, locale: str, style: str | None = None) -> str:
    """An address of one ``style``: ``person`` (Faker's user names on company domains), ``free``
    (free-mail providers), ``company`` (Faker's), ``role`` (``support@``, ``billing-team@`` on a company
    domain) or ``dotted`` (``first.last@``)."""
    style = style or rng.choice(("person", "free", "company", "role", "role", "dotted"))
    fake = faker_for(rng, locale)
    if style == "free":
        return _ascii(fake.free_email())
    if style == "company":
        return _ascii(fake.company_email())
    if style == "role":
        user = rng.choice(ROLE_USERS)
        if rng.random() < 0.15:
            user += rng.choice(("-team", ".desk", "-eu", "-uk", "24", "-help"))
        return f"{user}@{wild_domain(rng, locale)}"
    first, last = _slug(fake.first_name(), ""), _slug(fake.last_name(), "")
    if style == "dotted":
        user = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first}-{last}", f"{first}_{last}"))
    else:
        user = _ascii(fake.user_name())
    return f"{user}@{wild_domain(rng, locale)}"


def region_of(locale: str) -> str:
    return locale.split("_")[1]


def is_phone(text: str, region: str) -> bool:
    """Whether libphonenumber finds a valid phone number of ``region`` in ``text`` (all of it)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


#: Regions whose number plans a decoy must not match (see :func:`finds_phone`).
CHECK_REGIONS = ("US", "GB", "DE", "FR", "IN", "AU", "ES", "IT", "NL", "BR", "SE", "PL", "CH", "CA")


def finds_phone(text: str, regions: Sequence[str] = CHECK_REGIONS) -> bool:
    """Whether libphonenumber's matcher finds a phone number anywhere in ``text`` for any of ``regions``."""
    import phonenumbers

    if sum(c.isdigit() for c in text) < 6:  # shorter than any number plan's shortest subscriber number here
        return False
    return any(True for r in regions for _ in phonenumbers.PhoneNumberMatcher(text, r))


def wild_phone(rng: random.Random, locale: str) -> str:
    """A number in the locale's own written formats that libphonenumber accepts as valid there
    (Faker's formats with extensions and odd prefixes are redrawn)."""
    region = region_of(locale)
    for _ in range(40):
        fake = faker_for(rng, locale)
        number = fake.phone_number()
        if "x" not in number and "ext" not in number.lower() and is_phone(number, region):
            return number
    raise RuntimeError(f"no valid {locale} phone number in 40 draws")  # never seen for the listed locales


def wild_card(rng: random.Random, locale: str) -> str:
    """A Luhn-valid card number (Faker's issuers), plain or grouped by spaces or dashes."""
    fake = faker_for(rng, locale)
    card_type = rng.choice(("visa16", "mastercard", "amex", "discover", "visa16"))
    try:
        n = fake.credit_card_number(card_type=card_type)
    except KeyError:  # a locale with fewer issuers (pt_PT): one of its own
        n = fake.credit_card_number()
    r = rng.random()
    if r < 0.3:
        return n
    sep = " " if r < 0.75 else "-"
    groups = [n[:4], n[4:10], n[10:]] if len(n) == 15 else [n[i:i + 4] for i in range(0, len(n), 4)]
    return sep.join(groups)


def wild_address(rng: random.Random, locale: str) -> str:
    """A street address of the locale (``Hofmanngasse 4``, ``24, boulevard Adélaïde Torres``), sometimes
    with its postcode and town, on one line."""
    fake = faker_for(rng, locale)
    if rng.random() < 0.55:
        text = fake.street_address()
    else:
        text = fake.address().replace("\n", ", ")
    return re.sub(r"\s+", " ", text.replace("\u2019", "'")).strip()


def wild_contact(rng: random.Random, kind: str, locale: str) -> str:
    """A contact value of ``kind`` (``email``, ``phone``, ``card``, ``address``) from ``locale``."""
    if kind == "email":
        return wild_email(rng, locale)
    if kind == "phone":
        return wild_phone(rng, locale)
    if kind == "card":
        return wild_card(rng, locale)
    if kind == "address":
        return wild_address(rng, locale)
    raise ValueError(f"unknown contact kind {kind!r}")
