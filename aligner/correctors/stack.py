"""Stacked correctors: several Aligners applied in order, each correcting the one before it.

The paper stacks Aligners of different sizes (a small one's correction corrected again by a
larger one). A :class:`StackedCorrector` is a :class:`~aligner.correctors.base.Corrector` like any
other, so everything that corrects — the Aligner, the wrapped client, ``aligner serve`` (which
batches each stage on its own), ``aligner generate``, the demo — takes a stack as it takes one
corrector: ``Aligner(upstream, corrector=[small, large])``, ``--corrector A --corrector B``.

Every stage sees the question and the text the stage before it made (the first stage the
answer), with the same objectives and decoding overrides; each stage's own template, question
budget and guard apply. Each step is recorded (:class:`~aligner.contracts.correction.CorrectionStep`: its
text, its time, its fallback) on the :class:`~aligner.contracts.correction.Correction` and in ``meta()``. A
step that falls back hands its input on unchanged, so the stack's correction falls back to the
original answer only when every step did. Streamed, the stages before the last run whole and the
last one streams.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..contracts.correction import Asked, AsyncCorrectionStream, CorrectionStep, CorrectionStream, correction_of
from ..contracts.correction import CorrectorResult
from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError, CorrectorError
from ..contracts.templates import Template
from .base import Corrector

Pairs = Sequence[tuple[str, str]]


class StackedCorrector(Corrector):
    """Correctors applied in order (see the module docstring); nested stacks are flattened."""

    def __init__(self, stages: Sequence[Corrector]):
        flat: list[Corrector] = []
        for stage in stages:
            flat.extend(stage.stages if isinstance(stage, StackedCorrector) else [stage])
        if not flat:
            raise ConfigError("is an empty list of correctors.", field="corrector",
                              fix="pass one corrector or more, applied in order: corrector=[small, large] "
                                  "(--corrector SMALL --corrector LARGE).")
        for stage in flat:
            if not isinstance(stage, Corrector):
                raise ConfigError(f"a stack's stages must be correctors, got {type(stage).__name__}.",
                                  field="corrector", fix="pass specs to Aligner(corrector=[...]), which loads them.")
        self.stages = flat
        last = flat[-1]
        self.name = " > ".join(stage.name for stage in flat)
        #: names the stack ("aligner-v1.0 > qac"); each stage renders with its own template
        self.template = Template(" > ".join(stage.template.name for stage in flat), last.template.text,
                                 response_marker=last.template.response_marker,
                                 description="stacked correctors: each stage's own template",
                                 decoding=last.template.decoding)
        self.decoding = flat[0].decoding

    def each(self, wrap: Callable[[Corrector], Corrector]) -> "StackedCorrector":
        """The same stack with every stage wrapped (a server's batcher around each stage)."""
        return StackedCorrector([wrap(stage) for stage in self.stages])

    @property
    def is_demo(self) -> bool:
        return any(getattr(stage, "is_demo", False) for stage in self.stages)

    # -- a stack decodes through its stages, never itself --------------------------------------
    def generate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        raise CorrectorError("a stack of correctors has no prompt of its own: each stage renders its own.",
                             field="corrector", fix="correct through the stack (correct_results, stream).")

    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        return iter(self.generate([prompt], decoding))

    def prepare(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | None" = None) -> Any:
        return self.generate([question], decoding or self.decoding)

    def fit(self, question: str, answer: str, *, aspects: str | None = None) -> tuple[str, str]:
        """What the first stage makes of the pair, once every stage has checked it (a question too
        long for any stage is refused here)."""
        fitted = [stage.fit(question, answer, aspects=aspects) for stage in self.stages]
        return fitted[0]

    def fits(self, question: str, answer: str, *, aspects: str | None = None) -> bool:
        return all(stage.fits(question, answer, aspects=aspects) for stage in self.stages)

    def answer_tokens(self, answer: str) -> int:
        return self.stages[0].answer_tokens(answer)

    # -- correcting ----------------------------------------------------------------------------
    def correct_results(self, pairs: Pairs, *, aspects: str | None = None,
                        decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[CorrectorResult]:
        steps: list[list[CorrectionStep]] = [[] for _ in pairs]
        texts = [a for _, a in pairs]
        last: list[CorrectorResult] = []
        for stage in self.stages:
            t0 = time.perf_counter()
            last = stage.correct_results([(q, t) for (q, _), t in zip(pairs, texts)], aspects=aspects,
                                         decoding=decoding)
            texts = _advance(stage, last, steps, time.perf_counter() - t0)
        return [combined(s, r) for s, r in zip(steps, last)]

    async def acorrect_results(self, pairs: Pairs, *, aspects: str | None = None,
                               decoding: "DecodingConfig | Mapping[str, Any] | None" = None
                               ) -> list[CorrectorResult]:
        steps: list[list[CorrectionStep]] = [[] for _ in pairs]
        texts = [a for _, a in pairs]
        last: list[CorrectorResult] = []
        for stage in self.stages:
            t0 = time.perf_counter()
            last = await stage.acorrect_results([(q, t) for (q, _), t in zip(pairs, texts)], aspects=aspects,
                                                decoding=decoding)
            texts = _advance(stage, last, steps, time.perf_counter() - t0)
        return [combined(s, r) for s, r in zip(steps, last)]

    def stream(self, question: str, answer: str, *, aspects: str | None = None,
               decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
               asked: Asked | None = None) -> CorrectionStream:
        """The stages before the last run whole; the last one's correction streams. Once
        exhausted, ``result`` and ``correction`` hold every step (``asked``: who answered, as
        for one corrector's stream)."""

        def run(stream: CorrectionStream) -> Iterator[str]:
            t0 = time.perf_counter()
            before = self._before_last()
            earlier = before.correct_results([(question, answer)], aspects=aspects, decoding=decoding) if before else []
            steps, text = _handed_on(earlier, answer)
            t1 = time.perf_counter()
            inner = self.stages[-1].stream(question, text, aspects=aspects, decoding=decoding)
            try:
                yield from inner
            finally:
                inner.close()
            self._ended(stream, question, answer, steps, inner.result, t0, t1, asked)

        return CorrectionStream(run)

    def astream(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
                asked: Asked | None = None) -> AsyncCorrectionStream:

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            t0 = time.perf_counter()
            before = self._before_last()
            earlier = await before.acorrect_results([(question, answer)], aspects=aspects, decoding=decoding) \
                if before else []
            steps, text = _handed_on(earlier, answer)
            t1 = time.perf_counter()
            inner = self.stages[-1].astream(question, text, aspects=aspects, decoding=decoding)
            try:
                async for piece in inner:
                    yield piece
            finally:
                await inner.aclose()
            self._ended(stream, question, answer, steps, inner.result, t0, t1, asked)

        return AsyncCorrectionStream(run)

    def _before_last(self) -> "StackedCorrector | None":
        """The stages before the last, as a stack of their own (streamed, they run whole); None
        when there is only one stage."""
        return StackedCorrector(self.stages[:-1]) if len(self.stages) > 1 else None

    def _ended(self, stream: Any, question: str, answer: str, steps: list[CorrectionStep],
               result: CorrectorResult | None, t0: float, t1: float, asked: Asked | None) -> None:
        """The stack's verdict and Correction on ``stream``, once its last stage has streamed."""
        if result is None:  # closed before its end: no correction
            return
        steps.append(step_of(self.stages[-1], result, time.perf_counter() - t1))
        stream.result = combined(steps, result)
        stream.correction = correction_of(question, answer, stream.result, corrector=self, asked=asked,
                                          corrector_s=time.perf_counter() - t0)

    def __repr__(self) -> str:
        return f"StackedCorrector({self.stages!r})"


def step_of(stage: Corrector, result: CorrectorResult, seconds: float) -> CorrectionStep:
    """One stage's step: its text, its time (and the stage times its corrector measured), its fallback."""
    return CorrectionStep(corrector=stage.name, template=stage.template.name, text=result.text,
                          timings={"corrector": seconds, **result.timings}, fallback_reason=result.fallback_reason,
                          usage=result.usage)


def _handed_on(earlier: list[CorrectorResult], answer: str) -> tuple[list[CorrectionStep], str]:
    """What the stages before the last hand it when streaming: their steps, and the text it
    corrects (the answer itself when there were none)."""
    return (list(earlier[0].steps), earlier[0].text) if earlier else ([], answer)


def _advance(stage: Corrector, results: list[CorrectorResult], steps: list[list[CorrectionStep]],
             seconds: float) -> list[str]:
    """Record one stage's results as steps (each its share of the stage's time); the texts the
    next stage corrects."""
    each = seconds / max(1, len(results))
    for mine, result in zip(steps, results):
        mine.append(step_of(stage, result, each))
    return [r.text for r in results]


def combined(steps: list[CorrectionStep], last: CorrectorResult) -> CorrectorResult:
    """The stack's result: the last step's text; a fallback only when every step fell back (the
    text is then the original answer); the stages' token counts added up."""
    reason = steps[-1].fallback_reason if all(s.fallback for s in steps) else None
    usage: dict[str, int] | None = None
    for step in steps:
        if step.usage:
            usage = usage or {}
            for key, value in step.usage.items():
                usage[key] = usage.get(key, 0) + value
    return CorrectorResult(steps[-1].text, reason, last.raw, last.stop_reason, usage=usage, steps=steps)


def stacked(corrector: Corrector, wrap: Callable[[Corrector], Corrector]) -> Corrector:
    """``wrap`` applied to ``corrector``, or to each stage of a stack."""
    return corrector.each(wrap) if isinstance(corrector, StackedCorrector) else wrap(corrector)


def step_edits(correction: Any) -> list[tuple[CorrectionStep, str, str]]:
    """Each step of a stacked correction with the text it was given and the text it made (the
    first step was given the answer): what the CLI's ``--diff`` and the demo show per step."""
    before = [correction.answer] + [step.text for step in correction.steps]
    return [(step, given, step.text) for step, given in zip(correction.steps, before)]
