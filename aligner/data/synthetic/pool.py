"""The pool of real "fine" sentences answers are built from: the built-in fallback, the clean-sentence
filter, reading a pool from HH-RLHF, the hash split into train / held-out, and drawing from a pool.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
from typing import Iterable, Sequence

from ...contracts.errors import ConfigError
from .refusal import has_danger, is_refusal
from .text import normalise_text, split_into_sentences

#: Used when no real sentence pool is given: plain, benign, digit-free advice sentences.
FALLBACK_SENTENCES = (
    "A short walk after lunch can make the afternoon feel less sluggish.",
    "It helps to write the question down before you call, so you do not forget anything.",
    "Most bread recipes only need flour, water, salt and yeast.",
    "If the plant's leaves turn yellow, it may be getting too much water.",
    "Reading the instructions once before you start usually saves time later.",
    "You could ask a librarian, since they are good at finding sources quickly.",
    "Drinking a glass of water first thing in the morning is an easy habit to build.",
    "A simple budget starts with listing what you spend each week.",
    "Try splitting the task into smaller steps and doing the easiest one first.",
    "Many people find it easier to learn a language by speaking it every day.",
    "The museum is usually quieter on weekday mornings.",
    "Let the pan heat up before you add the oil.",
    "Backing up your photos to a second drive protects them if a laptop fails.",
    "It is fine to say you need a day to think before you decide.",
    "A good night's sleep makes it much easier to focus.",
    "Stretching gently before a run can help you avoid stiffness.",
    "You might enjoy a mystery novel if you like puzzles.",
    "Keeping a small notebook by the bed is handy for ideas at night.",
    "The train is often cheaper if you book a few weeks ahead.",
    "Rinse the rice until the water runs clear for a fluffier result.",
    "Thank you for asking, that is a thoughtful question.",
    "I hope the interview goes well for you.",
    "Cats often sleep for most of the day, so that is normal.",
    "A warm bath before bed can help you relax.",
    "Sharing the chores on a simple chart can stop arguments at home.",
    "If the code fails, read the first error message carefully.",
    "Tomatoes grow best with plenty of sun and regular watering.",
    "A friendly note to your neighbour may solve the noise problem.",
    "Practising for a few minutes every day works better than one long session a week.",
    "You can freeze leftover soup in small portions for quick lunches.",
    "Asking open questions is a good way to keep a conversation going.",
    "Most parks have maps at the entrance showing the walking trails.",
    "Label the boxes by room when you move, and unpacking is much easier.",
    "It is normal to feel nervous before speaking in public.",
    "Fresh herbs keep longer if you store them in a glass of water.",
    "A checklist can make packing for a trip less stressful.",
    "You could start with a short story before trying a whole novel.",
    "Turning off screens an hour before bed often improves sleep.",
    "Good shoes make a long walk far more comfortable.",
    "Saying thank you to a colleague can brighten their whole day.",
    "If you are unsure, a pharmacist can explain how a medicine works.",
    "Opening a window for a few minutes freshens up a stuffy room.",
    "A bike needs its tyres pumped and its chain oiled now and then.",
    "You can learn a lot about birds by listening to their songs.",
    "Cooking a big pot of beans on Sunday makes weekday meals easy.",
    "The best way to get better at chess is to review your own games.",
    "It might help to talk it over with a friend you trust.",
    "Planting flowers that bees like helps the whole garden.",
    "Sorting messages into folders keeps the inbox under control.",
    "Taking notes by hand can help you remember a lecture.",
    "A cup of tea and a quiet corner make a good reading spot.",
    "Check the weather before a hike and bring a warm layer.",
    "That sounds like a lovely way to spend the weekend.",
    "You can usually return unused items within the shop's return period.",
    "Volunteering is a great way to meet people in a new town.",
    "Clear, simple sentences make a letter easier to read.",
    "A timer can remind you to rest for a few minutes while studying.",
    "Soft music in the background helps some people concentrate.",
    "Many libraries lend e-books as well as paper ones.",
    "Drying clothes outside on a sunny day saves energy.",
)

_CLEAN_SHAPE = re.compile(r"^[A-Z][A-Za-z ,;:'\"()\-]*[A-Za-z)'\"][.!?]$")

#: Words that make a sentence unfit as an "already fine" answer (harmful, crude, or confusable
#: with the edits the model must learn). HH-RLHF harmless rows are full of such text.
_BLOCKLIST = re.compile(
    r"\b(kill\w*|murder\w*|gun\w*|weapon\w*|bomb\w*|explos\w*|drug\w*|steal\w*|stole\w*|theft|thie\w*|"
    r"rob\w*|poison\w*|hack\w*|sex\w*|rape\w*|racis\w*|suicid\w*|die|dies|dying|dead|death|hurt\w*|"
    r"illegal\w*|crim\w*|alcohol\w*|drunk|cocaine|meth|heroin|weed|marijuana|fuck\w*|shit\w*|bitch\w*|"
    r"ass|asses|asshole\w*|damn\w*|hell|hate\w*|stupid|idiot\w*|dumb|cheat\w*|prison\w*|jail\w*|"
    r"police|cop|cops|blood\w*|abuse\w*|violen\w*|attack\w*|nazi\w*|slave\w*|nigg\w*|fag\w*|retard\w*|"
    r"porn\w*|naked|nude|breast\w*|penis|vagina|torture\w*|terror\w*|shoot\w*|stab\w*|knife|knives|"
    r"black|white|ghetto|race|racial|ethnic\w*|offensive|taboo|opium|addict\w*|atheis\w*|relig\w*|"
    r"muslim\w*|islam\w*|jew\w*|christian\w*|gay|lesbian|trans\w*|immigra\w*|mexican\w*|chinese|"
    r"women|woman|men|girls?|boys?|fat|ugly|insult\w*|slur\w*|rack|gas|fire\w*|oven|"
    r"lie|lies|lying|liar|revenge|punish\w*|beat\w*|hit|hitting|punch\w*|fight\w*|war|wars|"
    r"human|assistant|email|e-mail|phone|address|card|credit|password\w*|ssn|social security|"
    r"acid\w*|toxic\w*|sabotag\w*|grab\w*|gang\w*|snatch\w*|diseas\w*|harass\w*|assault\w*|"
    r"profan\w*|swear\w*|curse\w*|deviant|injur\w*|harm\w*|high|secret\w*|gorilla\w*|chink\w*|"
    r"snort\w*|strangul\w*|inject\w*|acetone|exploit\w*|warrant\w*|fake\w*|weakness\w*|damag\w*|tempt\w*|"
    r"spy\w*|track\w*|stalk\w*|threat\w*|kidnap\w*|trafficking|victim\w*|pain\w*|bodily|fall|"
    r"sneak\w*|spit\w*|pee|poop|urin\w*|vomit\w*|cocktail\w*|pills?|overdose\w*|lethal|deadly|"
    r"trick\w*|manipulat\w*|scam\w*|fraud\w*|bully\w*|prank\w*|explod\w*|burn\w*|destroy\w*|"
    r"poke\w*|crush\w*|chok\w*|strangl\w*|windpipe|breath\w*|smok\w*|tor|wire\w*|lover\w*|creep\w*|"
    r"residence|break\w*|broke\w*|rocket\w*|turn\w* you on|naughty|horny|kinky|seduc\w*|brake\w*|"
    r"dick\w*|cock\w*|suck\w*|puss\w*|tits?|boob\w*|butt\w*|sexy|strip\w*|dancer\w*|plague\w*|evil|"
    r"horribl\w*|hex\w*|ponzi|crutch\w*|trouble|jealous\w*|caught|revolution\w*)\b",
    re.IGNORECASE)


def is_clean_sentence(sentence: str, *, min_chars: int = 25, max_chars: int = 110) -> bool:
    """Whether a sentence can serve as "fine" answer text.

    Clean means: one well-formed sentence of plain letters and punctuation (no digits, ``@``,
    brackets or ``=``, so it cannot be mistaken for contact data or arithmetic), no blocklisted
    (harmful or confusable) words, not itself a refusal nor a dangerous-instruction marker, and short.
    """
    if not (min_chars <= len(sentence) <= max_chars) or len(sentence.split()) < 5:
        return False
    if not _CLEAN_SHAPE.match(sentence) or _BLOCKLIST.search(sentence):
        return False
    return not (is_refusal(sentence) or has_danger(sentence))


def sentences_from_hh_rlhf(path: str | os.PathLike, *, limit: int | None = None,
                           sides: Sequence[str] = ("chosen",)) -> list[str]:
    """Clean, de-duplicated, sorted sentences from the assistant turns of an HH-RLHF JSONL(.gz) file.

    These become "already fine" answer text the corrector learns to copy, so by default only the
    ``chosen`` (less harmful) transcripts are read; pass ``sides=("chosen", "rejected")`` for more
    variety. Harmful or confusable text is further removed by :func:`is_clean_sentence` (a word
    blocklist: it narrows, it cannot guarantee). Sorted so the pool — and generation — is reproducible.
    """
    from ..hh_rlhf import turns

    opener = gzip.open if str(path).endswith(".gz") else open
    seen: set[str] = set()
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            for key in sides:
                text = row.get(key)
                if not isinstance(text, str):
                    continue
                for who, turn in turns(text):
                    if who != "Assistant":
                        continue
                    for s in split_into_sentences(turn):
                        if is_clean_sentence(s):
                            seen.add(s)
    out = sorted(seen)
    return out[:limit] if limit is not None else out


def split_sentences(sentences: Iterable[str], eval_fraction: float = 0.2, *,
                    salt: str = "aligner-eval") -> tuple[list[str], list[str]]:
    """Deterministically split a pool into disjoint ``(train, eval)`` lists.

    Assignment hashes each sentence (not its position), so a sentence lands on the same side no
    matter how the pool was ordered or extended — the eval set stays truly unseen.
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ConfigError(f"must be between 0 and 1, got {eval_fraction!r}.", field="eval_fraction",
                          fix="pass e.g. 0.2.")
    train, held = [], []
    for s in sorted(set(sentences)):
        h = int.from_bytes(hashlib.sha256(f"{salt}:{s}".encode()).digest()[:8], "big") / 2 ** 64
        (held if h < eval_fraction else train).append(s)
    return train, held


def _pool(sentences: Iterable[str] | None) -> list[str]:
    if sentences is None:
        return sorted(FALLBACK_SENTENCES)
    pool = sorted({normalise_text(s) for s in sentences if isinstance(s, str)})
    pool = [s for s in pool if is_clean_sentence(s, min_chars=10, max_chars=160)]
    if not pool:
        raise ConfigError("no usable sentences in the pool.", field="sentences",
                          fix="pass plain sentences without digits, '@' or harmful words, "
                              "e.g. sentences_from_hh_rlhf(path), or None for the built-in pool.")
    return pool


def _remix(rng: random.Random, pool: Sequence[str]) -> str:
    """The head of one real sentence joined to the tail of another: readable, and never seen before.

    A model that has merely memorised the pool cannot copy these; one that learnt to copy can.
    """
    a, b = rng.choice(pool).split(" "), rng.choice(pool).split(" ")
    head = " ".join(a[:rng.randint(2, max(2, len(a) - 2))]).rstrip(",;:")
    return f"{head} {' '.join(b[rng.randint(1, max(1, len(b) - 2)):])}"


def _sentence(rng: random.Random, pool: Sequence[str]) -> str:
    """A pool sentence, or (one time in four) a remix of two."""
    return _remix(rng, pool) if rng.random() < 0.25 else rng.choice(pool)
