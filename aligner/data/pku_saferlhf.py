"""PKU-SafeRLHF preference pairs → Q-A-C.

The correction must be a response that is *both* the better one and safe — otherwise training
would teach the Aligner to "correct" towards a helpful-but-harmful answer. The answer is the
other response (the worse and/or unsafe one). Pairs where the better response is unsafe have no
Q-A-C reading; they are dropped and recorded in ``LoadResult.skipped`` (never silently).
Harm categories and severity of both responses are kept in ``meta`` so a moderation gate or an
evaluation can filter by them later.
"""
from __future__ import annotations

from typing import Any

from ..errors import json_type
from .base import QAC, Row, RowDropped

NAME = "pku-saferlhf"


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
