"""PKU-SafeRLHF preference pairs → Q-A-C.

The correction must be a response that is *both* the better one and safe — otherwise training
would teach the Aligner to "correct" towards a helpful-but-harmful answer. The answer is the
other response (the worse and/or unsafe one). Pairs where the better response is unsafe have no
Q-A-C reading; they are dropped and recorded in ``LoadResult.skipped`` (never silently).
Harm categories and severity of both responses are kept in ``meta`` so a moderation gate or an
evaluation can filter by them later.

A moderation gate reads the same rows the other way round: every response is one labelled example
(:func:`labelled_responses`, :func:`load_labelled`) — safe or not, its harm categories (of the 19
below) and its severity level (0 safe, 1 minor, 2 moderate, 3 severe). There a row's labels are
required and checked: a gate trained on a response with no label, or on a category name it does not
know, would learn nothing or the wrong thing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..contracts.errors import DataError, json_type
from .base import QAC, Row, RowDropped, Skipped

NAME = "pku-saferlhf"

#: PKU-SafeRLHF's 19 harm categories, in the dataset's order (the keys of ``response_N_harm_category``).
HARM_CATEGORIES = (
    "Endangering National Security", "Insulting Behavior", "Discriminatory Behavior", "Endangering Public Health",
    "Copyright Issues", "Violence", "Drugs", "Privacy Violation", "Economic Crime", "Mental Manipulation",
    "Human Trafficking", "Physical Harm", "Sexual Content", "Cybercrime", "Disrupting Public Order",
    "Environmental Damage", "Psychological Harm", "White-Collar Crime", "Animal Abuse")
#: ``response_N_severity_level`` → name: 0 is a safe response, 1-3 the harm's severity.
SEVERITY_LEVELS = ("safe", "minor", "moderate", "severe")


def _flag(row: Row, key: str) -> bool:
    value = row.get(key)
    if not isinstance(value, bool):
        raise row.error(f"expected true/false, got {json_type(value)}.", key,
                        f"make '{key}' a boolean, or pass --lenient to skip such rows.")
    return value


def _index(row: Row, key: str) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise row.error(f"expected 0 or 1, got {value!r}.", key,
                        f"make '{key}' 0 or 1, or pass --lenient to skip such rows.")
    return value


def _harm(row: Row, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cats = row.record.get(f"response_{i}_harm_category")
    if isinstance(cats, dict):
        out["harm_categories"] = sorted(k for k, v in cats.items() if v)
    sev = row.record.get(f"response_{i}_severity_level")
    if isinstance(sev, int) and not isinstance(sev, bool):
        out["severity"] = sev
    return out


def convert(row: Row) -> QAC:
    """One PKU-SafeRLHF pair → :class:`QAC` (answer = worse/unsafe, correction = better and safe)."""
    prompt = row.text("prompt")
    responses = [row.text("response_0"), row.text("response_1")]
    safe = [_flag(row, "is_response_0_safe"), _flag(row, "is_response_1_safe")]
    better = _index(row, "better_response_id")
    safer = row.record.get("safer_response_id")
    if not safe[better]:
        raise RowDropped("no response is both better and safe "
                         f"(the better one, response_{better}, is unsafe).", "better_response_id")
    worse = 1 - better
    if responses[worse].strip() == responses[better].strip():
        raise RowDropped("both responses are the same text, nothing to correct.", f"response_{worse}")
    meta: dict[str, Any] = {
        "answer_response": worse, "correction_response": better,
        "answer_safe": safe[worse], "safer_response_id": safer,
        "answer_harm": _harm(row, worse), "correction_harm": _harm(row, better),
    }
    return QAC(prompt, responses[worse], responses[better], source=row.source, row=row.row, meta=meta)


@dataclass
class LabelledResponse:
    """One response of a PKU-SafeRLHF row with its safety labels: one example for a moderation gate."""

    question: str
    answer: str
    safe: bool
    #: the harm categories marked true (names from :data:`HARM_CATEGORIES`, in that order)
    categories: list[str] = field(default_factory=list)
    #: 0 safe, 1 minor, 2 moderate, 3 severe (:data:`SEVERITY_LEVELS`)
    severity: int = 0
    source: str | None = None
    row: int | None = None
    #: which response of the row it is (0 or 1)
    response: int = 0

    @property
    def unsafe(self) -> bool:
        return not self.safe


def _categories(row: Row, key: str) -> list[str]:
    value = row.get(key, f"add '{key}': a dict of the 19 PKU-SafeRLHF harm categories to true/false "
                         "(all false for a safe response), or pass --lenient to skip such rows.")
    if not isinstance(value, dict):
        raise row.error(f"expected a dict of category name to true/false, got {type(value).__name__}.", key,
                        "write e.g. {\"Violence\": true, \"Drugs\": false, ...}.")
    known = set(HARM_CATEGORIES)
    for name, flag in value.items():
        if name not in known:
            close = [c for c in HARM_CATEGORIES if c.lower() == str(name).strip().lower()]
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise row.error(f"unknown harm category {name!r}.", key,
                            f"{hint}use the PKU-SafeRLHF names: {', '.join(HARM_CATEGORIES)}.")
        if not isinstance(flag, bool):
            raise row.error(f"category {name!r} is {type(flag).__name__} ({flag!r}), not true/false.", key,
                            "map every category to true or false.")
    return [c for c in HARM_CATEGORIES if value.get(c)]


def _severity(row: Row, key: str) -> int:
    value = row.get(key, f"add '{key}': 0 (safe), 1 (minor), 2 (moderate) or 3 (severe), or pass --lenient "
                         "to skip such rows.")
    if isinstance(value, str) and value.strip().lower() in SEVERITY_LEVELS:
        return SEVERITY_LEVELS.index(value.strip().lower())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(SEVERITY_LEVELS):
        raise row.error(f"unknown severity {value!r}.", key,
                        "use 0 (safe), 1 (minor), 2 (moderate) or 3 (severe) — or their names.")
    return value


def labelled_responses(row: Row) -> list[LabelledResponse]:
    """Both responses of a PKU-SafeRLHF row, each with its safety labels (all required)."""
    prompt = row.text("prompt")
    out = []
    for i in (0, 1):
        answer = row.text(f"response_{i}")
        safe_key = f"is_response_{i}_safe"
        row.get(safe_key, f"add '{safe_key}' (true/false): a gate learns from labelled responses only; "
                          "or pass --lenient to skip rows without labels.")
        safe = _flag(row, safe_key)
        cats = _categories(row, f"response_{i}_harm_category")
        severity = _severity(row, f"response_{i}_severity_level")
        out.append(LabelledResponse(prompt, answer, safe, cats, severity, row.source, row.row, i))
    return out


@dataclass
class LabelledLoad:
    """Labelled responses read from a file, and the rows skipped (``lenient``) with why."""

    responses: list[LabelledResponse]
    skipped: list[Skipped] = field(default_factory=list)
    source: str | None = None


def load_labelled(path_or_id: "str | os.PathLike", *, split: str = "train", lenient: bool = False,
                  limit: int | None = None, max_chars: int | None = None) -> LabelledLoad:
    """Every response of a PKU-SafeRLHF file (or hub id) as a labelled example, two per row.

    Strict by default: the first row without its safety labels, with an unknown category or
    severity, raises a :class:`DataError` naming file, row and field; ``lenient`` skips and lists it.
    """
    from .io import read_rows

    responses: list[LabelledResponse] = []
    source, _, skipped = read_rows(path_or_id, lambda row: responses.extend(labelled_responses(row)), name=NAME,
                                   split=split, lenient=lenient, max_chars=max_chars,
                                   full=lambda: limit is not None and len(responses) >= limit)
    out = LabelledLoad(responses, skipped, source)
    if not out.responses:
        raise DataError("no labelled response in the file (every row was skipped).", source=source,
                        fix="check the rows have is_response_N_safe, response_N_harm_category and "
                            "response_N_severity_level.")
    return out
