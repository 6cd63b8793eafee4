"""Anthropic HH-RLHF ``chosen``/``rejected`` transcripts → Q-A-C.

Both transcripts share every turn except the last assistant turn, so: question = that shared
conversation (multi-turn context kept — the correction often only makes sense given earlier
turns), answer = the rejected last assistant turn, correction = the chosen one. A single-turn
conversation becomes just the human message; a multi-turn one keeps its ``Human:``/``Assistant:``
labels. Rows whose prefixes differ (the pair is not a clean last-turn comparison) or whose last
assistant turn is empty are errors, or skips with ``lenient=True``.
"""
from __future__ import annotations

import re

from ..contracts.conversation import transcript
from .base import QAC, Row

NAME = "hh-rlhf"
ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_last_turn(text: str) -> tuple[str, str]:
    """``(prefix, last assistant turn)``; the prefix ends right before ``\\n\\nAssistant:``."""
    i = text.rfind(ASSISTANT)
    if i < 0:
        return text, ""
    return text[:i], text[i + len(ASSISTANT):].strip()


def turns(transcript: str) -> list[tuple[str, str]]:
    """``[(speaker, text), ...]`` of a ``\\n\\nHuman: …\\n\\nAssistant: …`` transcript."""
    parts = _TURN.split("\n\n" + transcript.lstrip("\n") if not transcript.startswith("\n\n") else transcript)
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def format_question(prefix: str) -> str:
    """The shared prefix as a question: the bare message if single-turn, else a labelled transcript
    (:func:`aligner.contracts.conversation.transcript`, the one rendering a chat's messages are given in when
    a corrector trained on these rows corrects in conversation mode)."""
    return transcript(turns(prefix))


def convert(row: Row) -> QAC:
    """One HH-RLHF pair → :class:`QAC`."""
    # max_chars applies to the derived question/answer/correction, not to the whole transcripts
    chosen = row.text("chosen", check_length=False)
    rejected = row.text("rejected", check_length=False)
    if ASSISTANT not in chosen:
        raise row.error("has no '\\n\\nAssistant:' turn.", "chosen",
                        "HH-RLHF rows are '\\n\\nHuman: …\\n\\nAssistant: …' transcripts; check --format.")
    if ASSISTANT not in rejected:
        raise row.error("has no '\\n\\nAssistant:' turn.", "rejected",
                        "HH-RLHF rows are '\\n\\nHuman: …\\n\\nAssistant: …' transcripts; check --format.")
    p_chosen, c = split_last_turn(chosen)
    p_rejected, a = split_last_turn(rejected)
    if p_chosen.strip() != p_rejected.strip():
        raise row.error("the conversation before the last assistant turn differs from 'chosen'.", "rejected",
                        "only pairs that differ in the last assistant turn convert; pass --lenient to skip them.")
    if not c:
        raise row.error("the last assistant turn is empty.", "chosen", "pass --lenient to skip such rows.")
    if not a:
        raise row.error("the last assistant turn is empty.", "rejected", "pass --lenient to skip such rows.")
    question = format_question(p_chosen)
    if not question.strip():
        raise row.error("there is no human turn before the last assistant turn.", "chosen",
                        "pass --lenient to skip such rows.")
    row.check_text(question, "chosen")
    row.check_text(a, "rejected")
    row.check_text(c, "chosen")
    n_turns = sum(1 for who, _ in turns(p_chosen) if who == "Human")
    return QAC(question, a, c, source=row.source, row=row.row, meta={"turns": n_turns})
