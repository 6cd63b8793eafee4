"""The gate contract: a cheap check, asked before the corrector, that says whether an answer needs it.

Most answers in production need no correction, yet each one pays the corrector's full latency. A gate
reads (question, answer) and returns a :class:`GateVerdict`; :class:`~aligner.core.aligner.Aligner` corrects
only the answers it flags and hands the others back unchanged, at once.

A kind implements one primitive over a batch, :meth:`Gate.judge` (and, where it has a cheaper async
path, :meth:`Gate.ajudge`): a :class:`Judgement` per pair — a score, the harm categories, a severity.
Everything a caller uses — one verdict or a batch, sync or async, the flag rule (threshold and
minimum severity), the time each verdict took — is built here, once, so every kind decides alike.
Kinds register with :data:`aligner.contracts.registry.GATES` (``@register_gate``) the way upstreams and
correctors do; a third-party package adds one through the ``aligner.gates`` entry point group.
"""
from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

from ..contracts.errors import ConfigError, require_text
from ..data.pku_saferlhf import HARM_CATEGORIES, SEVERITY_LEVELS

#: the severities a gate may require (``gate_min_severity``); "safe" is no requirement
MIN_SEVERITIES = SEVERITY_LEVELS[1:]
#: what happens when the gate cannot answer (a moderation endpoint down, a broken gate function)
ON_ERROR = ("correct", "pass", "raise")

Pair = tuple[str, str]


@dataclass
class GateVerdict:
    """What a gate decided about one answer.

    ``score`` is how unsafe the gate finds the answer: a probability in [0, 1] for the classifier,
    moderation and callable kinds, the model's raw cost for the ``cost`` kind. ``severity`` is one of
    ``minor``/``moderate``/``severe`` (``safe`` for an answer judged harmless), or None from a kind
    that does not predict one. ``time`` is the seconds the gate spent on it (its share of a batch).
    ``error`` is set when the gate could not answer and the on-error policy decided instead (``score``
    is then None).
    """

    flagged: bool
    score: float | None
    categories: list[str] = field(default_factory=list)
    severity: str | None = None
    time: float = 0.0
    kind: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time"] = round(self.time, 6)
        return d

    def summary(self) -> str:
        """One line for a terminal or a page: what was decided and why."""
        if self.error:
            return (f"gate ({self.kind}) could not judge the answer ({self.error[:120]}); "
                    + ("corrected" if self.flagged else "returned unchanged"))
        why = [f"score {self.score:.2f}"] if self.score is not None else []
        if self.severity and self.severity != "safe":
            why.append(self.severity)
        why += self.categories
        verdict = "flagged → corrected" if self.flagged else "not flagged → returned unchanged, not corrected"
        return f"gate ({self.kind}): {verdict} ({', '.join(why)})"


@dataclass
class Judgement:
    """A kind's raw reading of one answer, before the flag rule: its score, categories, severity.

    ``severity_scores`` (optional) gives, per level ``minor``/``moderate``/``severe``, the probability
    that the answer is *at least* that severe, so a minimum severity has a score of its own to compare
    with its own threshold (the classifier calibrates one per level)."""

    score: float
    categories: list[str] = field(default_factory=list)
    severity: str | None = None
    severity_scores: dict[str, float] | None = None
    #: the kind's own decision when no threshold is set (a moderation endpoint's ``flagged``)
    flagged: bool | None = None


def check_threshold(value: Any, *, probability: bool = True, field: str = "gate_threshold") -> float | None:
    """A flag threshold: a number, in [0, 1] when the gate's score is a probability."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"must be a number, got {value!r}.", field=field, fix="e.g. gate_threshold=0.5.")
    if probability and not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"must be in [0, 1] (the gate's score is a probability), got {value!r}.", field=field,
                          fix="e.g. --gate-threshold 0.3 (lower flags more answers), or leave it out to use the "
                              "threshold the gate was calibrated with.")
    return float(value)


def check_min_severity(value: Any, field: str = "gate_min_severity") -> str | None:
    """``minor``/``moderate``/``severe`` (or 1-3), or None for "any unsafe answer"."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < len(SEVERITY_LEVELS):
        return SEVERITY_LEVELS[value]
    if isinstance(value, str) and value.strip().lower() in MIN_SEVERITIES:
        return value.strip().lower()
    raise ConfigError(f"unknown severity {value!r}.", field=field,
                      fix=f"use one of {', '.join(MIN_SEVERITIES)} (or leave it out to flag any unsafe answer).")


def check_on_error(value: Any) -> str:
    if value not in ON_ERROR:
        raise ConfigError(f"unknown policy {value!r}.", field="gate_on_error",
                          fix="use 'correct' (correct when the gate cannot answer; the default), 'pass' (return "
                              "the answer unchanged) or 'raise'.")
    return value


def check_categories(names: Sequence[str], field: str = "categories") -> list[str]:
    """Category names a gate predicts must be PKU-SafeRLHF's (their order is the model's label order)."""
    unknown = [n for n in names if n not in HARM_CATEGORIES]
    if unknown:
        raise ConfigError(f"unknown harm category {unknown[0]!r}.", field=field,
                          fix=f"use the PKU-SafeRLHF names: {', '.join(HARM_CATEGORIES)}.")
    return list(names)


class Gate(ABC):
    """Decides which answers the corrector must see. Subclasses implement :meth:`judge`."""

    #: the kind's name, recorded in every verdict (``classifier``, ``cost``, ``moderation``, ``callable``)
    kind: ClassVar[str] = "gate"
    #: a string spec starting with this names the kind (``"cost:PATH"``)
    spec_prefix: ClassVar[str | None] = None
    #: the order specs are tried in (see :mod:`aligner.contracts.registry`): higher first
    spec_priority: ClassVar[int] = 0
    #: whether ``score`` is a probability (then a threshold must lie in [0, 1])
    score_is_probability: ClassVar[bool] = True
    #: whether the kind predicts a severity (else ``min_severity`` cannot be honoured)
    predicts_severity: ClassVar[bool] = False
    #: pairs judged per call of :meth:`judge` when a caller passes more
    batch_size: int = 32
    #: a short id for logs, the ``aligner`` object and the CLI
    name: str = "gate"

    def __init__(self, *, threshold: float | None = None, min_severity: str | None = None,
                 default_threshold: float = 0.5):
        #: the score at or above which an answer is flagged (None: the kind's own default)
        self.threshold = check_threshold(threshold, probability=self.score_is_probability)
        self.default_threshold = default_threshold
        self.min_severity = check_min_severity(min_severity)
        if self.min_severity and not self.predicts_severity:
            raise ConfigError(f"a {self.kind} gate predicts no severity, so it cannot flag by one.",
                              field="gate_min_severity",
                              fix="drop gate_min_severity, or use a classifier gate (aligner train-gate).")

    # -- how a spec names this kind (aligner.contracts.registry) ----------------------------------------
    @classmethod
    def matches(cls, spec: Any) -> bool:
        return bool(cls.spec_prefix) and isinstance(spec, str) and spec.startswith(cls.spec_prefix)  # type: ignore[arg-type]

    @classmethod
    def from_spec(cls, spec: Any, **kw: Any) -> "Gate":
        """The gate ``spec`` names; by default the text after ``spec_prefix`` is the first argument
        (a spec matched another way — a directory — is passed as it is)."""
        if cls.spec_prefix and isinstance(spec, str) and spec.startswith(cls.spec_prefix):
            spec = spec[len(cls.spec_prefix):].strip()
            if not spec:
                raise ConfigError(f"{cls.spec_prefix!r} needs a name after it.", field="gate",
                                  fix=f"e.g. gate='{cls.spec_prefix}PATH_OR_URL'.")
        return cls(spec, **kw)

    # -- the primitive ------------------------------------------------------------------------
    @abstractmethod
    def judge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        """One :class:`Judgement` per (question, answer), in order (at most ``batch_size`` pairs)."""

    async def ajudge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        """Async batch; a local model runs in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.judge, list(pairs))

    # -- the flag rule, once ------------------------------------------------------------------
    def threshold_for(self, min_severity: str | None) -> float:
        """The threshold in force: the one given, else the kind's default (a classifier's calibrated one)."""
        return self.threshold if self.threshold is not None else self.default_threshold

    def decide(self, j: Judgement, seconds: float = 0.0) -> GateVerdict:
        """The verdict on one judgement: flagged when the score reaches the threshold — with a
        minimum severity, when the probability of at least that severity reaches that level's
        threshold (or, from a kind that gives only a severity, when the severity reaches it)."""
        score = j.score
        if self.min_severity and j.severity_scores is not None:
            score = j.severity_scores[self.min_severity]
            flagged = score >= self.threshold_for(self.min_severity)
        elif j.flagged is not None and self.threshold is None:
            flagged = j.flagged
        else:
            flagged = score >= self.threshold_for(None)
        if self.min_severity and j.severity_scores is None and j.severity is not None:
            flagged = flagged and SEVERITY_LEVELS.index(j.severity) >= SEVERITY_LEVELS.index(self.min_severity)
        return GateVerdict(flagged, float(score), list(j.categories), j.severity, seconds, self.kind)

    # -- built once ----------------------------------------------------------------------------
    def _checked(self, pairs: Sequence[Pair]) -> list[Pair]:
        out = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"expected (question, answer), got {pair!r}.", field=f"pairs[{i}]",
                                  fix="pass a list of (question, answer) tuples.")
            q, a = pair
            require_text(q, "question")
            if not isinstance(a, str):
                require_text(a, "answer")
            out.append((q, a))
        return out

    def verdict(self, question: str, answer: str) -> GateVerdict:
        """Whether this answer needs the corrector."""
        return self.verdict_batch([(question, answer)])[0]

    def verdict_batch(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        """Verdicts in input order, ``batch_size`` pairs per :meth:`judge` call; each verdict's
        ``time`` is its share of its batch."""
        pairs = self._checked(pairs)
        out: list[GateVerdict] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            t0 = time.perf_counter()
            judged = self.judge(chunk)
            self._check_count(judged, chunk)
            each = (time.perf_counter() - t0) / len(chunk)
            out += [self.decide(j, each) for j in judged]
        return out

    async def averdict(self, question: str, answer: str) -> GateVerdict:
        return (await self.averdict_batch([(question, answer)]))[0]

    async def averdict_batch(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        pairs = self._checked(pairs)
        out: list[GateVerdict] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            t0 = time.perf_counter()
            judged = await self.ajudge(chunk)
            self._check_count(judged, chunk)
            each = (time.perf_counter() - t0) / len(chunk)
            out += [self.decide(j, each) for j in judged]
        return out

    def _check_count(self, judged: list[Judgement], chunk: list[Pair]) -> None:
        if len(judged) != len(chunk):
            from ..contracts.errors import AlignerError

            raise AlignerError(f"the {self.kind} gate returned {len(judged)} judgements for {len(chunk)} answers.",
                               field="gate", fix="a gate's judge() must return one Judgement per pair, in order.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
