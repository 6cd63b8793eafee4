"""The result of one correction: what was asked, what the upstream said, what the Aligner made of it."""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass
class Correction:
    question: str
    answer: str
    correction: str
    #: seconds spent in each stage: ``upstream`` (0 when the answer was given) and ``corrector``.
    timings: dict[str, float] = field(default_factory=dict)
    corrector: str = ""
    template: str = ""
    upstream: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the corrector edited the answer (whitespace at the ends is not an edit)."""
        return self.answer.strip() != self.correction.strip()

    def diff(self) -> list[tuple[str, str]]:
        """Word-level edit script as ``(op, text)`` pairs, op in ``" "`` (kept), ``"-"``, ``"+"``.

        Words, not characters: a human reads what changed in words, and the demo highlights these.
        """
        a, b = _TOKEN.findall(self.answer), _TOKEN.findall(self.correction)
        out: list[tuple[str, str]] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if tag == "equal":
                out.append((" ", "".join(a[i1:i2])))
            else:
                if i2 > i1:
                    out.append(("-", "".join(a[i1:i2])))
                if j2 > j1:
                    out.append(("+", "".join(b[j1:j2])))
        return out

    def unified_diff(self) -> str:
        """Line-level unified diff, for terminals."""
        return "".join(difflib.unified_diff(self.answer.splitlines(True), self.correction.splitlines(True),
                                            "answer", "correction"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        return d
