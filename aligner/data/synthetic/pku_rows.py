"""Seeded PKU-SafeRLHF-format rows with harm categories and severities, for the demo gate.

The embedded demo gate (``aligner/assets/demo-gate``) must be rebuilt offline from rows the project
can regenerate, like the demo corrector. Each row has a prompt and two responses, each labelled as
PKU-SafeRLHF labels them: ``is_response_N_safe``, ``response_N_harm_category`` (all 19 categories,
true/false) and ``response_N_severity_level`` (0 safe, 1 minor, 2 moderate, 3 severe).

What the answers are: for a harmful request, a compliant answer (an opener, one or two toy steps of
the topic — deliberately non-actionable, like :mod:`.refusal`'s — and a closer) against a refusal, a
safe alternative or safety information; for an everyday question, two fine answers, some of which
use alarming words harmlessly ("kill the process", "this cake is the bomb", a wrong sum) so that a
gate must read more than words. Every harmful topic carries the categories and the severity of its
steps; a step may belong to two categories (a hidden camera is a privacy violation and
psychological harm).

``heldout=True`` draws from the other side of every split: other names, places and fillers, other
openers, closers and ways to refuse, one question, one alternative and two fine answers per topic,
and the held-out part of the sentence pool, that training never shows — so the demo gate's targets
are measured on phrasings it has not seen. The harmful steps themselves are the training ones: a
tiny model trained from scratch on three harmful sentences per topic cannot know that a fourth,
unseen one is harmful too. That is measured apart: ``unseen_steps=True`` builds every harmful
answer from the one step per topic that training never shows.

Fine answers must be as varied as harmful ones, or a gate learns "text I have not seen is unsafe":
besides each topic's answers they are drawn from a pool of real sentences (``sentences``: the
clean-sentence filter of :mod:`.pool` over the HH-RLHF sample's *chosen* turns, the demo
corrector's "fine" text, else its built-in pool), and compliance openers start fine answers too, so
"Sure!" says nothing about harm. Where the HH-RLHF sample is used, and where it is not: its whole
``chosen`` replies are only the *less* harmful of two and often still harmful, so they are never
labelled safe; only single sentences that pass the blocklist filter serve as unlabeled fine text (the
filter narrows, it cannot guarantee — see :func:`.pool.is_clean_sentence`). Harmful answers
sometimes carry such a sentence too, so harm, not novelty, is what a gate must find.

Everything is a pure function of ``seed``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from ..pku_saferlhf import HARM_CATEGORIES
from .pool import FALLBACK_SENTENCES, split_sentences

#: fillers, each split into a training part and a held-out part
NAMES = (("Maria", "James", "Aisha", "Tom", "Lena", "Omar", "Sofia", "Daniel", "Grace", "Ivan", "Priya", "Lucas"),
         ("Hannah", "Mateo", "Yuki", "Peter", "Fatima", "Noah"))
PLACES = (("the office", "school", "the gym", "the parking lot", "the station", "the park", "the mall"),
          ("the library", "the stadium", "the bus stop", "the campus"))
ROOMS = (("bathroom", "kitchen", "garage", "basement"), ("bedroom", "shed"))
STREETS = (("Oak Street", "Maple Avenue", "Hill Road", "Station Road", "Cedar Lane"), ("Birch Way", "Mill Street"))
DOMAINS = (("example.com", "mail.test", "inbox.example"), ("post.example", "webmail.test"))
COMPANIES = (("Acme", "Northwind", "Globex"), ("Initech", "Umbrella"))

#: openers and closers of an answer — harmful and fine answers share them, so they carry no signal
#: (the last two of each are held out, for both kinds alike)
OPENERS = ("Sure! ", "Easy. ", "Here's what you do: ", "No problem. ", "Of course. ", "", "Okay, listen. ",
           "Honestly, it's simple. ", "Glad you asked. ", "Fine, here it is: ")
CLOSERS = ("", " Nobody will ever find out.", " Just make sure no one sees you.", " It works every time.",
           " Good luck!", " Don't tell anyone it was me.", " Trust me, it works.", " Do it quickly.")

#: refusals, built from parts: an opening, a way to decline (the last two held out), what, why
REFUSAL_HEADS = ("", "Sorry, ", "I'm sorry, but ", "No. ", "Honestly, ", "I'm afraid ")
REFUSAL_VERBS = ("I can't help with", "I won't help with", "I can't assist with", "I won't explain",
                 "I'm not able to help with", "I have to decline", "I won't give you steps for", "I can't support")
REFUSAL_OBJECTS = ("that", "this", "this request", "something that could hurt people", "that plan", "anything like that")
REFUSAL_REASONS = ("", " because it could hurt someone", " since it is against the law", " as it puts people at risk",
                   " because it would harm others")
#: a few whole refusals, as people write them (the last one held out)
REFUSALS = ("I can't help with that.", "I won't help with this.", "Sorry, but I can't assist with that request.",
            "That could hurt someone, so I won't explain it.", "I'm not able to help with that.",
            "No, I won't do that.")
SAFE_CLOSERS = ("", " Is there something else I can help with?", " I'm happy to help with something else.",
                " Please take care.", " Let me know if you want to talk it through.")

# The topic tables are data, so they live in ``pku_topics.json`` beside this module (written as code
# they were 260 lines of dicts of one shape). Read once, turned into the tuples the generator draws
# from: the order of every list is what makes a seed's rows, so the file must never be re-sorted.
_TABLES = json.loads(Path(__file__).with_name("pku_topics.json").read_text(encoding="utf-8"))

#: Each harmful topic: its questions, its toy steps (text, categories, severity), its safe alternatives.
#: Steps use {name}, {place}, {room}, {street}, {number}, {email}, {phone}, {company} fillers. The last
#: question and the last alternative of every topic are held out; the last step is never trained on
#: (``unseen_steps``).
TOPICS: tuple[dict[str, Any], ...] = tuple(
    {"questions": tuple(t["questions"]), "steps": tuple((text, categories, severity)
                                                        for text, categories, severity in t["steps"]),
     "alternatives": tuple(t["alternatives"])} for t in _TABLES["topics"])

#: information a safe answer may give about a harmful topic, without helping to do it
SAFETY_INFO: tuple[str, ...] = tuple(_TABLES["safety_info"])

#: everyday questions and fine answers (the last question and the last two answers of each topic are held out)
BENIGN: tuple[dict[str, Any], ...] = tuple({"questions": tuple(t["questions"]), "answers": tuple(t["answers"])}
                                           for t in _TABLES["benign"])


def _split(pool: Sequence[Any], heldout: bool, keep: int = 1) -> Sequence[Any]:
    """The training part of a table (all but its last ``keep``) or its held-out part (the last ``keep``)."""
    return pool[-keep:] if heldout else pool[:-keep]


def _fields(rng: random.Random, heldout: bool) -> dict[str, str]:
    """One row's fillers: the prompt and both responses speak of the same person and place."""
    side = 1 if heldout else 0
    name = rng.choice(NAMES[side])
    user = f"{name.lower()}.{rng.choice(('lopez', 'smith', 'khan', 'meyer', 'rossi', 'kim'))}"
    return {"name": name, "place": rng.choice(PLACES[side]), "room": rng.choice(ROOMS[side]),
            "street": rng.choice(STREETS[side]), "number": str(rng.randint(2, 240)),
            "email": f"{user}@{rng.choice(DOMAINS[side])}",
            "phone": f"+1 555 {rng.randint(100, 999):03d} {rng.randint(1000, 9999):04d}",
            "company": rng.choice(COMPANIES[side])}


def harm_dict(categories: Sequence[str]) -> dict[str, bool]:
    """PKU-SafeRLHF's ``response_N_harm_category``: every one of the 19 names, true or false."""
    return {c: c in categories for c in HARM_CATEGORIES}


def _unsafe(topic: dict[str, Any], rng: random.Random, heldout: bool, fields: dict[str, str],
            pool: Sequence[str] = (), unseen_steps: bool = False) -> tuple[str, list[str], int]:
    steps = list(_split(topic["steps"], unseen_steps))
    first = rng.choice(steps)
    picked = [first]
    if len(steps) > 1 and rng.random() < 0.3:
        picked.append(rng.choice([s for s in steps if s is not first]))
    body = " ".join(s[0].format(**fields) for s in picked)
    text = rng.choice(_split(OPENERS, heldout, 2)) + body + rng.choice(_split(CLOSERS, heldout, 2))
    if pool and rng.random() < 0.2:  # harm beside harmless text: the harm is what counts
        text = f"{rng.choice(pool)} {text}" if rng.random() < 0.5 else f"{text} {rng.choice(pool)}"
    categories = [c for c in HARM_CATEGORIES if any(c in s[1] for s in picked)]
    return text.strip(), categories, max(s[2] for s in picked)


def refusal(rng: random.Random, heldout: bool) -> str:
    """A refusal: a whole one (the last held out), or one built from parts."""
    if rng.random() < 0.3:
        return rng.choice(_split(REFUSALS, heldout))
    # held out: the two last ways to decline, in any combination with the other parts
    text = (rng.choice(REFUSAL_HEADS) + rng.choice(_split(REFUSAL_VERBS, heldout, 2)) + " "
            + rng.choice(REFUSAL_OBJECTS) + rng.choice(REFUSAL_REASONS) + ".")
    return text[0].upper() + text[1:]


def _safe_reply(topic: dict[str, Any], rng: random.Random, heldout: bool) -> str:
    shape = rng.random()
    refusal_text = refusal(rng, heldout)
    if shape < 0.35:
        return refusal_text + rng.choice(_split(SAFE_CLOSERS, heldout, 1))
    if shape < 0.8:
        return f"{refusal_text} {rng.choice(_split(topic['alternatives'], heldout))}"
    return f"{refusal_text} {rng.choice(_split(SAFETY_INFO, heldout, 2))}"


#: closers a fine answer may end with (held out alike)
FINE_CLOSERS = ("", "", "", " Hope that helps!", " Good luck!", " Have fun with it.", " Enjoy!")


def _fine(topic: dict[str, Any], rng: random.Random, heldout: bool, pool: Sequence[str]) -> str:
    """A fine answer: the topic's own, sentences from the pool, or both, maybe after an opener."""
    shape = rng.random()
    own = rng.choice(list(_split(topic["answers"], heldout, 2)))
    if shape < 0.4 or not pool:
        body = own
    elif shape < 0.8:
        body = " ".join(rng.sample(list(pool), rng.choice((1, 1, 2))))
    else:
        body = f"{own} {rng.choice(pool)}"
    opener = rng.choice(_split(OPENERS, heldout, 2)) if rng.random() < 0.5 else ""
    return (opener + body + rng.choice(_split(FINE_CLOSERS, heldout, 2))).strip()


def _benign(topic: dict[str, Any], rng: random.Random, heldout: bool, pool: Sequence[str]) -> tuple[str, str, str]:
    question = rng.choice(_split(topic["questions"], heldout))
    a = _fine(topic, rng, heldout, pool)
    b = _fine(topic, rng, heldout, pool)
    return question, a, b


def response(text: str, categories: Sequence[str] = (), severity: int = 0) -> dict[str, Any]:
    return {"text": text, "safe": severity == 0 and not categories, "categories": list(categories),
            "severity": severity}


def pku_row(prompt: str, first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One PKU-SafeRLHF row from two labelled responses (the safer one is also the better one)."""
    safer = 0 if (first["severity"], len(first["categories"])) <= (second["severity"], len(second["categories"])) else 1
    row: dict[str, Any] = {"prompt": prompt, "better_response_id": safer, "safer_response_id": safer}
    for i, r in enumerate((first, second)):
        row[f"response_{i}"] = r["text"]
        row[f"is_response_{i}_safe"] = r["safe"]
        row[f"response_{i}_harm_category"] = harm_dict(r["categories"])
        row[f"response_{i}_severity_level"] = r["severity"]
    return row


def sentence_pool(sentences: Sequence[str] | None, heldout: bool) -> list[str]:
    """The side of the fine-sentence pool a generation draws from (a hash split, 20% held out)."""
    train, held = split_sentences(list(sentences if sentences is not None else FALLBACK_SENTENCES), 0.2)
    return held if heldout else train


def pku_rows(n: int, *, seed: int = 0, heldout: bool = False, harmful_share: float = 0.6,
             sentences: Sequence[str] | None = None, unseen_steps: bool = False) -> list[dict[str, Any]]:
    """``n`` PKU-SafeRLHF rows: ``harmful_share`` of them a harmful request (a compliant answer against
    a safe one, or two compliant answers, or two safe ones), the rest an everyday question with two
    fine answers. ``heldout`` draws from the held-out side of every table (see the module docstring);
    ``sentences`` is the fine-sentence pool (default: the built-in one); ``unseen_steps`` builds every
    harmful answer from the step per topic that training never shows."""
    rng = random.Random(f"pku-rows:{seed}:{heldout}")
    pool = sentence_pool(sentences, heldout)
    rows = []
    for _ in range(n):
        if rng.random() < harmful_share:
            topic = rng.choice(TOPICS)
            fields = _fields(rng, heldout)
            prompt = rng.choice(_split(topic["questions"], heldout)).format(**fields)
            shape = rng.random()
            if shape < 0.7:
                pair = [response(*_unsafe(topic, rng, heldout, fields, pool, unseen_steps)),
                        response(_safe_reply(topic, rng, heldout))]
            elif shape < 0.85:
                pair = [response(*_unsafe(topic, rng, heldout, fields, pool, unseen_steps)),
                        response(*_unsafe(topic, rng, heldout, fields, pool, unseen_steps))]
            else:
                pair = [response(_safe_reply(topic, rng, heldout)), response(_safe_reply(topic, rng, heldout))]
        else:
            question, a, b = _benign(rng.choice(BENIGN), rng, heldout, pool)
            prompt, pair = question, [response(a), response(b)]
        rng.shuffle(pair)
        rows.append(pku_row(prompt, pair[0], pair[1]))
    return rows


def labelled_mix(n: int, *, seed: int = 0, unsafe_share: float = 0.3, heldout: bool = True,
                 sentences: Sequence[str] | None = None, unseen_steps: bool = False) -> list[dict[str, Any]]:
    """``n`` labelled (question, answer) pairs with ``unsafe_share`` unsafe ones: a realistic mix in
    which most answers are fine, for measuring a gate (``bench/gate.py``, ``aligner eval``). Each is
    ``{"question", "answer", "is_safe", "categories", "severity"}``."""
    rng = random.Random(f"pku-mix:{seed}:{heldout}")
    want_unsafe = round(n * unsafe_share)
    unsafe: list[dict[str, Any]] = []
    safe: list[dict[str, Any]] = []
    batch = 0
    while len(unsafe) < want_unsafe or len(safe) < n - want_unsafe:
        for row in pku_rows(200, seed=seed * 1000 + batch, heldout=heldout, sentences=sentences,
                            unseen_steps=unseen_steps):
            for i in (0, 1):
                item = {"question": row["prompt"], "answer": row[f"response_{i}"], "is_safe": row[f"is_response_{i}_safe"],
                        "categories": [c for c, v in row[f"response_{i}_harm_category"].items() if v],
                        "severity": row[f"response_{i}_severity_level"]}
                (safe if item["is_safe"] else unsafe).append(item)
        batch += 1
    picked = rng.sample(unsafe, want_unsafe) + rng.sample(safe, n - want_unsafe)
    rng.shuffle(picked)
    return picked
