"""The result of one correction: what was asked, what the upstream said, what the Aligner made of it."""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
#: kept words between two edits that still read as part of one replaced span (see ``Correction.diff``)
MERGE_ISLAND_WORDS = 2


def edit_size(answer: str, correction: str) -> int:
    """Words removed from the answer plus words added by the correction (a word-level edit distance).

    Words only (``\\w+``): a correction that only touches spaces or punctuation has size 0, so a
    size threshold (``aligner export --min-edit``) drops cosmetic edits. Unlike :meth:`Correction.diff`
    nothing is merged: the count is what changed, not how it reads best.
    """
    a, b = _WORD.findall(answer), _WORD.findall(correction)
    size = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            size += (i2 - i1) + (j2 - j1)
    return size


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
    #: True when the corrector's output was degenerate and ``correction`` is the original answer.
    fallback: bool = False
    #: why it was: ``repetition``, ``template_marker``, ``too_long`` or ``empty`` (see ``aligner.guard``).
    fallback_reason: str | None = None

    @property
    def changed(self) -> bool:
        """Whether the corrector edited the answer (whitespace at the ends is not an edit)."""
        return self.answer.strip() != self.correction.strip()

    @property
    def edit_size(self) -> int:
        """Words removed plus words added (see :func:`edit_size`)."""
        return edit_size(self.answer, self.correction)

    def diff(self) -> list[tuple[str, str]]:
        """Word-level edit script as ``(op, text)`` pairs, op in ``" "`` (kept), ``"-"``, ``"+"``.

        Words, not characters: a human reads what changed in words, and the demo highlights these.
        A kept island of at most :data:`MERGE_ISLAND_WORDS` words (or only spaces and punctuation)
        between two edits of words joins them into one replaced span: otherwise a full rewrite
        shows as a scatter of chips around the ``a``, ``to`` and ``.`` the two texts happen to
        share. An edit of punctuation alone (a dropped full stop) is exact as it is and pulls no
        words in. Kept + removed text is always the answer, kept + added text the correction.
        """
        a, b = _TOKEN.findall(self.answer), _TOKEN.findall(self.correction)
        # [kept?, answer text, correction text]; difflib alternates equal and changed runs
        runs: list[list[Any]] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            runs.append([tag == "equal", "".join(a[i1:i2]), "".join(b[j1:j2])])
        def has_words(run: list[Any]) -> bool:
            return bool(_WORD.search(run[1]) or _WORD.search(run[2]))

        small = [runs[i][0] and len(_WORD.findall(runs[i][1])) <= MERGE_ISLAND_WORDS
                 and has_words(runs[i - 1]) and has_words(runs[i + 1]) for i in range(1, len(runs) - 1)]
        for i, merge in enumerate(small, start=1):
            if merge:
                runs[i][0] = False
        out: list[tuple[str, str]] = []
        removed = added = ""
        for kept, old, new in runs + [[True, "", ""]]:
            if not kept:
                removed, added = removed + old, added + new
                continue
            out += [(op, text) for op, text in (("-", removed), ("+", added)) if text]
            removed = added = ""
            if old:
                out.append((" ", old))
        return out

    def unified_diff(self) -> str:
        """Line-level unified diff, for terminals."""
        return "".join(difflib.unified_diff(self.answer.splitlines(True), self.correction.splitlines(True),
                                            "answer", "correction"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        return d
