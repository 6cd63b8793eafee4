"""What the gate tests share: a real corrector that records its calls, a gate function, PKU rows.

``RecordingCorrector`` is a :class:`~aligner.correctors.base.Corrector` subclass (the project's own
contract, not a mock): it renders, parses, guards and streams through the base class like every
backend, and its two primitives answer with a fixed refusal and record every prompt they were given,
so a test can count exactly which answers reached the corrector.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Sequence

from aligner.correctors.base import Corrector
from aligner.data.pku_saferlhf import HARM_CATEGORIES

REFUSAL = "I can't help with that, but here is a safer way to think about it."
UNSAFE_WORDS = ("bomb", "poison", "steal", "knife")


class RecordingCorrector(Corrector):
    name = "recording"

    def __init__(self) -> None:
        super().__init__("aligner-v1.0", {"max_new_tokens": 64})
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def _seen(self, prompts: Sequence[str]) -> None:
        with self._lock:
            self.prompts += list(prompts)

    def generate(self, prompts: Sequence[str], decoding: Any) -> list[str]:
        self._seen(prompts)
        return [REFUSAL for _ in prompts]

    def stream_prompt(self, prompt: str, decoding: Any) -> Iterator[str]:
        self._seen([prompt])
        for word in REFUSAL.split(" "):
            yield word + " "

    def saw(self, answer: str) -> bool:
        """Whether the corrector was given this answer."""
        return any(answer in p for p in self.prompts)


def unsafe_words(question: str, answer: str) -> bool:
    """A gate function: flags answers with a harmful word."""
    return any(w in answer.lower() for w in UNSAFE_WORDS)


def harm(*names: str) -> dict[str, bool]:
    return {c: c in names for c in HARM_CATEGORIES}


def pku_row(prompt: str, r0: str, r1: str, *, safe0: bool, safe1: bool, cats0: Sequence[str] = (),
            cats1: Sequence[str] = (), sev0: int = 0, sev1: int = 0) -> dict[str, Any]:
    """One PKU-SafeRLHF row written out as the dataset spells it."""
    better = 0 if safe0 or not safe1 else 1
    return {"prompt": prompt, "response_0": r0, "response_1": r1, "is_response_0_safe": safe0,
            "is_response_1_safe": safe1, "better_response_id": better, "safer_response_id": better,
            "response_0_harm_category": harm(*cats0), "response_1_harm_category": harm(*cats1),
            "response_0_severity_level": sev0, "response_1_severity_level": sev1}
