"""The copy curriculum's unmemorisable text (issue 14): word lists and scrambled sentences of words,
names, made-up words and codes that a model can only reproduce by copying them from the prompt.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
from typing import Iterable, Sequence

from ...contracts.errors import ConfigError
from .contacts import FIRST_NAMES, leftover_contacts
from .pool import _BLOCKLIST
from .refusal import has_danger, is_refusal
from .text import _join, normalise_text, split_into_sentences

SYSTEM_WORD_LISTS = ("/usr/share/dict/words", "/usr/share/dict/american-english")

_PLAIN_WORD = re.compile(r"^[A-Za-z][a-z]{0,13}(?:'[a-z]{1,2})?$")

_ONSETS = ("b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p",
           "pl", "qu", "r", "s", "sh", "sk", "st", "t", "th", "tr", "v", "w", "z", "")

_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y", "oo")

_CODAS = ("", "", "", "n", "r", "l", "s", "x", "th", "nd", "rk", "m", "st")

_PUNCT_AFTER = (",", ",", ",", ";", ":", "!", "?", "...")


def _usable_word(w: str) -> bool:
    return bool(_PLAIN_WORD.match(w)) and not _BLOCKLIST.search(w) and not has_danger(w) and not is_refusal(w)


def word_list(texts: Iterable[str] = (), *, system: bool = True) -> list[str]:
    """Every plain word of ``texts`` plus (if ``system`` and one is installed, e.g. Debian's
    ``wamerican``) the system word list, minus blocklisted and dangerous words; sorted, so seeded
    generation is reproducible for a given list. Without a system list it is just the text's words."""
    found: set[str] = set()
    for t in texts:
        found.update(w for w in re.findall(r"[A-Za-z][A-Za-z']*", normalise_text(t)))
    if system:
        for path in SYSTEM_WORD_LISTS:
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="ignore") as fh:
                    found.update(line.strip() for line in fh)
                break
    return sorted(w for w in found if _usable_word(w))


def texts_from_hh_rlhf(path: str | os.PathLike) -> list[str]:
    """All transcript text (both sides, every turn) of an HH-RLHF JSONL(.gz) file: a source of words."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out += [row[k] for k in ("chosen", "rejected") if isinstance(row.get(k), str)]
    return out


def _pool_words(pool: Sequence[str]) -> list[str]:
    return word_list(pool, system=False) or ["word"]


def _check_words(words: Iterable[str]) -> list[str]:
    vocab = sorted({w for w in words if isinstance(w, str) and _usable_word(w)})
    if not vocab:
        raise ConfigError("no usable words in the word list.", field="words",
                          fix="pass plain words (letters only), e.g. word_list(texts), or None for the pool's words.")
    return vocab


def _made_up(rng: random.Random) -> str:
    """A pronounceable word that is in no dictionary (``blorvex``, ``quaint``-like)."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(rng.choice((1, 2, 2, 3))))


def _code(rng: random.Random) -> str:
    """A letter/digit string (``x7Kq2``, ``AB12``, ``v3``) with at most three digits in a row."""
    chars = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    n = rng.randint(2, 7)
    out = [rng.choice(chars)]
    for _ in range(n - 1):
        out.append(rng.choice(chars + "0123456789" * 2))
    s = "".join(out)
    return re.sub(r"\d{4,}", lambda m: m.group(0)[:3], s)


def _case(rng: random.Random, w: str) -> str:
    r = rng.random()
    if r < 0.12:
        return w.capitalize()
    if r < 0.18:
        return w.upper()
    if r < 0.22:
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in w)
    return w


def _scramble_token(rng: random.Random, words: Sequence[str], digits: bool) -> str:
    kind = rng.choices(("word", "name", "made_up", "code", "number"),
                       weights=(0.62, 0.1, 0.14, 0.08 if digits else 0, 0.06 if digits else 0))[0]
    if kind == "word":
        return _case(rng, rng.choice(words))
    if kind == "name":
        first = rng.choice((rng.choice(FIRST_NAMES), _made_up(rng).capitalize()))
        return first if rng.random() < 0.6 else f"{first} {_made_up(rng).capitalize()}"
    if kind == "made_up":
        return _case(rng, _made_up(rng))
    if kind == "code":
        return _code(rng)
    return str(rng.randint(0, 999))


def _scramble_once(rng: random.Random, words: Sequence[str], digits: bool) -> str:
    tokens = []
    for i in range(rng.randint(3, 16)):
        t = _scramble_token(rng, words, digits)
        r = rng.random()
        if r < 0.04:
            t = f'"{t}"'
        elif r < 0.07:
            t = f"({t})"
        elif r < 0.10 and tokens:
            tokens[-1] = f"{tokens[-1]}-{t}"
            continue
        if rng.random() < 0.13:
            t += rng.choice(_PUNCT_AFTER)
        tokens.append(t)
    text = " ".join(tokens)
    if rng.random() < 0.7:
        text = text[:1].upper() + text[1:]
    end = rng.choice((".", ".", ".", "!", "?", ""))
    return text.rstrip(",;:") + end if end else text


def _fits(text: str, *, digits: bool = True) -> bool:
    """Unmemorisable text must still be "fine": no contact, sum, danger or refusal look-alike, short."""
    if (leftover_contacts(text) or "=" in text or "@" in text or has_danger(text) or is_refusal(text)
            or _BLOCKLIST.search(text)):
        return False
    if not digits and re.search(r"\d", text):
        return False
    return len(text) <= 200 and 1 <= len(split_into_sentences(text)) <= 3


def scramble_text(rng: random.Random, words: Sequence[str], *, pool: Sequence[str] = (), digits: bool = True) -> str:
    """Unmemorisable "fine" text: 1–2 scrambled sentences, sometimes next to a real sentence."""
    while True:
        parts = [_scramble_once(rng, words, digits) for _ in range(rng.choice((1, 1, 2)))]
        if pool and rng.random() < 0.25:
            parts.insert(rng.randint(0, len(parts)), rng.choice(pool))
        text = _join(parts)
        if _fits(text, digits=digits):
            return text
