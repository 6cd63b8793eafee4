"""Text shaping every part of the generator shares: normalising, sentence splitting, joining and splicing."""
from __future__ import annotations

import re
from typing import Sequence

_NORMALISE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-",
                            "\u2013": "-", "\u2026": "...", "\u00a0": " "})

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def normalise_text(text: str) -> str:
    """ASCII quotes/dashes and single spaces: what a small tokenizer and exact-match scoring want."""
    return re.sub(r"\s+", " ", text.translate(_NORMALISE)).strip()


def split_into_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences at ``.``/``!``/``?`` followed by a capitalised word."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(normalise_text(text)) if s.strip()]


def _join(parts: Sequence[str]) -> str:
    return " ".join(p for p in parts if p)


def _splice(sentence: str, clause: str, cut: int) -> str:
    """``clause`` inserted after word ``cut`` of ``sentence`` (a comma there is absorbed)."""
    words = sentence.split(" ")
    head, tail = " ".join(words[:cut]), " ".join(words[cut:])
    return f"{head.rstrip(',')}{clause} {tail}".replace(", ,", ",").replace("  ", " ")
