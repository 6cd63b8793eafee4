"""The result of one correction: what was asked, what the upstream said, what the Aligner made of it."""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator

if TYPE_CHECKING:
    from ..gates.base import GateVerdict

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
_WORD = re.compile(r"\w+")


#: ``Correction.skipped`` of an answer with no text: the corrector is not run, the answer comes back
#: as it was (a corrector given an empty answer writes one from the question alone).
EMPTY_ANSWER = "empty"


def is_blank(answer: Any) -> bool:
    """An answer with no text to correct: ``""`` or whitespace (an upstream's ``content: null``
    arrives as ``""``)."""
    return isinstance(answer, str) and not answer.strip()


#: kept words between two edits that still read as part of one replaced span (see ``Correction.diff``)
MERGE_ISLAND_WORDS = 2


def is_edit(answer: str, correction: str) -> bool:
    """Whether ``correction`` edits ``answer``: the one rule for "changed" everywhere (a correction,
    a Q-A-C row, an eval item), so whitespace at the ends is never counted as an edit by one part
    and as a change by another."""
    return answer.strip() != correction.strip()


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
class CorrectionStep:
    """One corrector of a stack (see :mod:`aligner.correctors.stack`): what it made of the text before it."""

    corrector: str
    template: str
    #: the text after this step (the text before it when the step fell back)
    text: str
    #: seconds this step took (``corrector``), and the stage times its corrector measured itself
    timings: dict[str, float] = field(default_factory=dict)
    fallback_reason: str | None = None
    #: this step's corrector tokens, from a corrector that counts them
    usage: dict[str, int] | None = None

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


@dataclass
class CorrectorResult:
    """One correction as the corrector made it, before the Aligner names and times it (a
    :class:`Correction`).

    ``text`` is what to show: the correction, or — when the raw output was degenerate — the
    original answer, with ``fallback_reason`` saying why (see :mod:`aligner.runtime.guard`).
    """

    text: str
    fallback_reason: str | None = None
    #: the generated text before parsing (for debugging a fallback).
    raw: str = ""
    #: how generation ended: eos, length, cap, stop, marker, repetition, cancelled (None: unknown).
    stop_reason: str | None = None
    #: stage times the corrector measured itself, which ``Correction.timings`` then shows (a
    #: batching server's ``queue``, ``corrector`` and ``batch_size``); empty for most backends.
    timings: dict[str, float] = field(default_factory=dict)
    #: the corrector's own tokens (``prompt_tokens`` of the prompt it was given, after ``fit``;
    #: ``completion_tokens``; ``total_tokens``), from a corrector that counts them; else None.
    usage: dict[str, int] | None = None
    #: a stack's steps, one per corrector (see :mod:`aligner.correctors.stack`); empty otherwise.
    steps: list[CorrectionStep] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


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
    #: why it was: ``repetition``, ``template_marker``, ``too_long`` or ``empty`` (see ``aligner.runtime.guard``).
    fallback_reason: str | None = None
    #: why the corrector was not run at all, ``correction`` being the answer as it came: ``"empty"``
    #: (no answer text to correct; a corrector given none would invent one from the question). A
    #: server also skips tool calls and requested JSON. None: the answer was corrected.
    skipped: str | None = None
    #: the gate's verdict when a gate was asked first (see :mod:`aligner.gates`); an answer it did
    #: not flag comes back unchanged without a corrector call (``corrected`` is then False).
    gate: "GateVerdict | None" = None
    #: stacked correctors: each one's step, in order (empty for a single corrector)
    steps: list[CorrectionStep] = field(default_factory=list)

    @property
    def corrected(self) -> bool:
        """Whether the corrector was called: not for a skipped answer, and with a gate only on a
        flagged one."""
        return self.skipped is None and (self.gate is None or self.gate.flagged)

    @property
    def changed(self) -> bool:
        """Whether the corrector edited the answer (see :func:`is_edit`)."""
        return is_edit(self.answer, self.correction)

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
        if self.gate is None:
            del d["gate"]  # rows written without a gate keep the keys they always had
        else:
            d["gate"] = self.gate.to_dict()
        if not self.steps:
            del d["steps"]  # likewise without a stack
        return d

    def meta(self, **fields: Any) -> dict[str, Any]:
        """The ``aligner`` object served beside a corrected chat answer — by the proxy (its JSON)
        and by ``aligner.wrap`` (``response.aligner``) — so both carry the same keys. ``fields``
        add to it or replace a key in place (the proxy shows its upstream without its address)."""
        out = {"original": self.answer, "corrector": self.corrector, "template": self.template,
               "upstream": self.upstream, "changed": self.changed, "demo": bool(self.metadata.get("demo")),
               "fallback": self.fallback, "fallback_reason": self.fallback_reason, "skipped": self.skipped,
               "timings": {k: round(v, 6) for k, v in self.timings.items()}}
        if self.gate is not None:
            out["gate"] = self.gate.to_dict()
        if self.steps:
            out["steps"] = [step_meta(step) for step in self.steps]
        out.update(fields)
        return out

    @classmethod
    def uncorrected(cls, question: str, answer: str, *, skipped: str | None, corrector: Any = None,
                    asked: "Asked | None" = None) -> "Correction":
        """The Correction of an answer passed on as it came, the corrector not run: ``skipped``
        says why (``"empty"``, and a server's ``"tool_calls"`` and ``"response_format"``), None
        for a reply its client asked to bypass or one the gate did not flag (``asked.gate``).
        Names and timings read as a corrected one's do, with ``corrector`` 0.0."""
        asked = asked or Asked()
        return cls(question, answer, answer, timings=_timings(asked, {}, 0.0),
                   corrector=getattr(corrector, "name", ""), template=_template_name(corrector),
                   upstream=asked.upstream, metadata=_metadata(corrector), skipped=skipped, gate=asked.gate)


def step_meta(step: CorrectionStep) -> dict[str, Any]:
    """One stack step as ``meta()`` serves it."""
    return {"corrector": step.corrector, "template": step.template, "text": step.text, "fallback": step.fallback,
            "fallback_reason": step.fallback_reason, "timings": {k: round(v, 6) for k, v in step.timings.items()},
            **({"usage": step.usage} if step.usage is not None else {})}


@dataclass(frozen=True)
class Asked:
    """What is known of one correction before the corrector runs: who answered (shown as
    ``Correction.upstream``), the seconds the answer took (0.0: the answer was given) and, when a
    gate was asked, its verdict. A caller that asked the upstream itself (a server, a wrapped
    client) passes it in, so the Correction is made once, with its timings whole."""

    seconds: float = 0.0
    upstream: str = ""
    #: the gate's verdict (:mod:`aligner.gates`), None when no gate was asked.
    gate: "GateVerdict | None" = None

    def judged(self, verdict: "GateVerdict | None") -> "Asked":
        """This with the gate's verdict."""
        return Asked(self.seconds, self.upstream, verdict)


def _timings(asked: "Asked", measured: dict[str, float], corrector_s: float) -> dict[str, float]:
    """A Correction's timings: the upstream's, the gate's (when asked), the stages the corrector
    measured itself, the corrector's and the total, in that order."""
    gate_s = asked.gate.time if asked.gate is not None else 0.0
    timings: dict[str, float] = {"upstream": asked.seconds, **({"gate": gate_s} if asked.gate is not None else {}),
                                 **measured}
    timings.setdefault("corrector", corrector_s)
    timings["total"] = asked.seconds + gate_s + corrector_s
    return timings


def _template_name(corrector: Any) -> str:
    template = getattr(corrector, "template", None)
    return getattr(template, "name", "") if template is not None else ""


def _metadata(corrector: Any) -> dict[str, Any]:
    return {"demo": True} if getattr(corrector, "is_demo", False) else {}


def correction_of(question: str, answer: str, result: CorrectorResult, *, corrector: Any,
                  asked: Asked | None = None, corrector_s: float = 0.0) -> Correction:
    """The one way a :class:`Correction` is made from a corrector's verdict: timings (``upstream``
    from ``asked``, 0.0 when the answer was given; stage times the corrector measured itself, such
    as a batching server's ``queue`` and ``batch_size``, join them), names, the demo flag and the
    fallback; the gate's verdict and time when a gate was asked (``asked.gate``). Nothing is added
    to a Correction after it is made."""
    asked = asked or Asked()
    timings = _timings(asked, result.timings, corrector_s)
    metadata = _metadata(corrector)
    if result.usage is not None:
        metadata["usage"] = result.usage
    return Correction(question=question, answer=answer, correction=result.text, timings=timings,
                      corrector=corrector.name, template=_template_name(corrector), upstream=asked.upstream,
                      metadata=metadata, fallback=result.fallback, fallback_reason=result.fallback_reason,
                      gate=asked.gate, steps=list(result.steps))


class _Streamed:
    """What the two stream twins share: the text shown so far and, once the stream is exhausted,
    the corrector's verdict (``result``) and the :class:`Correction` (``correction``)."""

    def __init__(self) -> None:
        #: the pieces shown so far, joined. When the guard found the correction degenerate after
        #: text was shown, this is that text and ``correction.correction`` the original answer.
        self.text = ""
        #: the corrector's verdict (``CorrectorResult``), once the stream is exhausted.
        self.result: CorrectorResult | None = None
        #: the whole :class:`Correction` — timings, names, ``changed``, fallback — once exhausted.
        self.correction: Correction | None = None

    def _collected(self) -> Correction:
        if self.correction is None:
            from .errors import AlignerError

            raise AlignerError("the stream was closed before its end, so there is no correction.",
                               field="stream", fix="iterate it to the end (or call collect() instead).")
        return self.correction


class CorrectionStream(_Streamed):
    """One streamed correction, the way simonw/llm's ``Response`` is one streamed answer: iterate
    it for the pieces as they are generated, then read ``correction``. ``collect()`` reads what is
    left and returns the :class:`Correction`.

    Pieces already shown cannot be taken back: a correction found degenerate *after* text was
    streamed stops there (``correction.fallback`` says so, and ``correction.correction`` is the
    original answer); one found degenerate before anything was shown streams the original answer
    instead, so a stream and ``correct()`` then agree. Closing it early cancels the generation.
    """

    def __init__(self, run: Callable[["CorrectionStream"], Iterator[str]]):
        super().__init__()
        self._it = run(self)

    def __iter__(self) -> "CorrectionStream":
        return self

    def __next__(self) -> str:
        piece = next(self._it)
        self.text += piece
        return piece

    def close(self) -> None:
        self._it.close()  # type: ignore[attr-defined]

    def collect(self) -> Correction:
        for _ in self:
            pass
        return self._collected()


class AsyncCorrectionStream(_Streamed):
    """The async twin of :class:`CorrectionStream`: ``async for`` the pieces, then ``correction``;
    ``await collect()``."""

    def __init__(self, run: Callable[["AsyncCorrectionStream"], AsyncIterator[str]]):
        super().__init__()
        self._it = run(self)

    def __aiter__(self) -> "AsyncCorrectionStream":
        return self

    async def __anext__(self) -> str:
        piece = await self._it.__anext__()
        self.text += piece
        return piece

    async def aclose(self) -> None:
        await self._it.aclose()  # type: ignore[attr-defined]

    async def collect(self) -> Correction:
        async for _ in self:
            pass
        return self._collected()
