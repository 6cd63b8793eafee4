"""``Aligner``: upstream → gate → corrector, in one object with sync, async, batched and streamed calls.

The upstream (what answers) and the corrector (what rewrites) are separate contracts, so any of
one composes with any of the other. Either may be given as a spec and is resolved lazily here.
An optional gate (:mod:`aligner.gates`) is asked first: an answer it does not flag comes back
unchanged at once, without a corrector call.
"""
from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from ..contracts.conversation import check_question, format_of, is_conversation, question_for
from ..contracts.correction import (EMPTY_ANSWER, Asked, AsyncCorrectionStream, Correction, CorrectionStream,
                         CorrectorResult, correction_of, is_blank)
from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError
from ..contracts.objectives import aspects_for, check_takes, resolve
from ..correctors import Corrector, load_corrector
from ..gates.routing import GateRoute
from ..runtime.pipeline import Pipeline, Row, length_buckets, run_sync

__all__ = ["Aligner", "Asked", "EMPTY_ANSWER", "is_blank", "length_buckets"]


class Aligner:
    """Ask an upstream model, then correct its answer with an Aligner.

    ``upstream`` may be a LiteLLM model string (``"openai/gpt-4o-mini"``), an ``openai.OpenAI`` /
    ``AsyncOpenAI`` client (with ``upstream_model``), a base URL of an OpenAI-compatible server, an
    ``hf:PATH`` spec or a transformers model, a Python callable ``str -> str``, an ``Upstream``, or
    None when you will always pass the answer yourself. ``corrector`` is a hub id or path (causal or
    encoder-decoder), an ``http(s)://…/v1`` completions endpoint, a ``Corrector``, or None for the
    embedded demo corrector. ``gate`` (see :func:`aligner.gates.load_gate`: ``"demo"``, a trained
    gate, ``"cost:PATH"``, ``"moderation:URL"``, a function, a ``Gate``) is asked first, with
    ``gate_threshold`` / ``gate_min_severity`` overriding its own; ``gate_on_error`` says what an
    answer the gate cannot judge gets (``"correct"``, ``"pass"`` or ``"raise"``).

    ``corrector`` may be a list: correctors stacked in order (:mod:`aligner.correctors.stack`).
    ``objectives`` (``["harmless", "helpful"]``, see :mod:`aligner.contracts.objectives`) are the default
    objectives of a corrector whose template takes them; a call's ``objectives=`` replaces them.
    A question may be a chat's ``messages``: it is rendered as the corrector was trained (the last
    user message, or the conversation, see :mod:`aligner.contracts.conversation`); ``context`` (``"last"`` or
    ``"conversation"``) overrides what the corrector records.
    """

    def __init__(self, upstream: Any = None, corrector: "Corrector | str | None" = None, *,
                 template: Any = None, upstream_model: str | None = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None, device: str | None = None,
                 batch_size: int = 8, gate: Any = None, gate_threshold: float | None = None,
                 gate_min_severity: str | None = None, gate_on_error: str = "correct", objectives: Any = None,
                 context: str | None = None, **upstream_kwargs: Any):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive int, got {batch_size!r}.", field="batch_size",
                              fix="e.g. batch_size=8.")
        from ..gates import load_gate

        found = load_gate(gate, threshold=gate_threshold, min_severity=gate_min_severity, device=device)
        #: the gate and its on-error policy (None: every answer is corrected)
        self.gate_route = GateRoute(found, gate_on_error) if found is not None else None
        self.corrector = load_corrector(corrector, template=template, decoding=decoding, device=device)
        #: the default objectives (None: none); refused at start-up by a template that takes none
        self.objectives = resolve(objectives)
        check_takes(self.corrector, self.objectives)
        #: how a chat's messages become the corrector's question (aligner.contracts.conversation)
        self.question_format = format_of(self.corrector, context)
        self.upstream = None
        if upstream is not None:
            from ..adapters.resolve import resolve_upstream

            self.upstream = resolve_upstream(upstream, model=upstream_model, **upstream_kwargs)
        self.batch_size = batch_size

    def with_corrector(self, corrector: Corrector) -> "Aligner":
        """This Aligner (same upstream, batch size) correcting with ``corrector`` instead — e.g.
        the server's: this Aligner's own corrector, its rows batched (``corrector.through(batcher)``)."""
        other = copy.copy(self)
        other.corrector = corrector
        return other

    def with_gate(self, gate: Any) -> "Aligner":
        """This Aligner asking ``gate`` (a Gate, or None for none) with the same on-error policy —
        e.g. the server's batching wrapper around this Aligner's own gate."""
        other = copy.copy(self)
        policy = self.gate_route.on_error if self.gate_route is not None else "correct"
        other.gate_route = GateRoute(gate, policy) if gate is not None else None
        return other

    @property
    def gate(self) -> Any:
        """The :class:`~aligner.gates.Gate` asked before the corrector, or None."""
        return self.gate_route.gate if self.gate_route is not None else None

    @property
    def is_demo(self) -> bool:
        """True when the embedded demo corrector is in use (its output is a toy, not a real Aligner)."""
        return bool(getattr(self.corrector, "is_demo", False))

    # -- helpers ---------------------------------------------------------------------------
    def _need_upstream(self) -> Any:
        if self.upstream is None:
            raise ConfigError("no upstream model to ask, and no answer was given.", field="answer",
                              fix="pass answer=..., or create Aligner(upstream=...) (a LiteLLM model "
                                  "string, an OpenAI client, a base URL, 'hf:PATH' or a function).")
        return self.upstream

    def _asked(self, seconds: float = 0.0, asked: Asked | None = None) -> Asked:
        """Who answered and how long it took: the caller's ``asked`` when it asked the upstream
        itself (a server, a wrapped client), else this Aligner's upstream and ``seconds``."""
        name = getattr(self.upstream, "name", "") if self.upstream is not None else ""
        if asked is None:
            return Asked(seconds, name)
        return asked if asked.upstream else Asked(asked.seconds, name)

    def _record(self, question: str, answer: str, result: CorrectorResult, asked: Asked,
                t_corr: float) -> Correction:
        return correction_of(question, answer, result, corrector=self.corrector, asked=asked, corrector_s=t_corr)

    def _not_corrected(self, question: str, answer: str, asked: Asked) -> Correction:
        """The Correction of an empty answer: the answer as it came, ``skipped="empty"``."""
        return Correction.uncorrected(question, answer, skipped=EMPTY_ANSWER, corrector=self.corrector, asked=asked)

    # -- the gate: asked before the corrector; what it does not flag is passed on as it came ----
    def _judged(self, question: str, answer: str, asked: Asked) -> Asked:
        if self.gate_route is None:
            return asked
        return asked.judged(self.gate_route.verdicts([(question, answer)])[0])

    async def _ajudged(self, question: str, answer: str, asked: Asked) -> Asked:
        if self.gate_route is None:
            return asked
        return asked.judged((await self.gate_route.averdicts([(question, answer)]))[0])

    def _passed(self, question: str, answer: str, asked: Asked) -> Correction | None:
        """The unchanged answer when the gate did not flag it; None when the corrector must see it."""
        if asked.gate is None or asked.gate.flagged:
            return None
        return Correction.uncorrected(question, answer, skipped=None, corrector=self.corrector, asked=asked)

    def answer(self, question: Any, **params: Any) -> str:
        """The upstream's uncorrected answer (to a question, or to a chat's messages)."""
        return self._need_upstream().answer(check_question(question), **params)

    async def aanswer(self, question: Any, **params: Any) -> str:
        return await self._need_upstream().aanswer(check_question(question), **params)

    # -- objectives and conversations -----------------------------------------------------
    def aspects(self, aspects: str | None = None, objectives: Any = None) -> str | None:
        """The ``{aspects}`` text of a call: its ``objectives`` or ``aspects``, else the defaults."""
        return aspects_for(self.corrector, aspects=aspects, objectives=objectives, default=self.objectives)

    def question_for(self, question: Any, answer: str = "", *, aspects: str | None = None) -> str:
        """The question the corrector gets: a string as it is; chat messages rendered in the
        corrector's question format, a conversation cut to fit its budget with ``answer``."""
        if not is_conversation(question):
            return question
        return question_for(question, self.question_format,
                            lambda q: self.corrector.fits(q, answer, aspects=aspects))

    async def aquestion_for(self, question: Any, answer: str = "", *, aspects: str | None = None) -> str:
        """:meth:`question_for` off the event loop (fitting a conversation tokenises it)."""
        if not is_conversation(question) or self.question_format.kind != "conversation":
            return self.question_for(question, answer, aspects=aspects)
        return await asyncio.to_thread(self.question_for, question, answer, aspects=aspects)

    def _ask(self, question: Any, answer: str | None, asked: Asked | None) -> tuple[str, Asked]:
        """The answer to correct and who gave it: ``answer`` as given (with the caller's
        ``asked``), or, when it is None, the upstream's, timed."""
        if answer is not None:
            return answer, self._asked(asked=asked)
        t0 = time.perf_counter()
        text = self.answer(question)
        return text, self._asked(time.perf_counter() - t0)

    async def _aask(self, question: Any, answer: str | None, asked: Asked | None) -> tuple[str, Asked]:
        if answer is not None:
            return answer, self._asked(asked=asked)
        t0 = time.perf_counter()
        text = await self.aanswer(question)
        return text, self._asked(time.perf_counter() - t0)

    # -- one ------------------------------------------------------------------------------
    def correct(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                objectives: Any = None, decoding: Any = None, asked: Asked | None = None) -> Correction:
        """Correct ``answer`` to ``question`` (a string, or a chat's messages), asking the upstream
        first when it is None. An answer with no text (``""``, blank, an upstream's ``content:
        null``) is not corrected: it comes back as it was, with ``skipped="empty"``. ``asked``: the
        upstream call you made yourself for ``answer`` (who answered, its seconds), so the
        Correction's ``upstream`` and timings count it."""
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        answer, asked = self._ask(question, answer, asked)
        question = self.question_for(question, answer, aspects=aspects)
        if is_blank(answer):
            return self._not_corrected(question, answer, asked)
        asked = self._judged(question, answer, asked)
        if (passed := self._passed(question, answer, asked)) is not None:
            return passed
        t1 = time.perf_counter()
        result = self.corrector.correct_results([(question, answer)], aspects=aspects, decoding=decoding)[0]
        return self._record(question, answer, result, asked, time.perf_counter() - t1)

    async def acorrect(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                       objectives: Any = None, decoding: Any = None, asked: Asked | None = None) -> Correction:
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        answer, asked = await self._aask(question, answer, asked)
        question = await self.aquestion_for(question, answer, aspects=aspects)
        if is_blank(answer):
            return self._not_corrected(question, answer, asked)
        asked = await self._ajudged(question, answer, asked)
        if (passed := self._passed(question, answer, asked)) is not None:
            return passed
        t1 = time.perf_counter()
        result = (await self.corrector.acorrect_results([(question, answer)], aspects=aspects,
                                                        decoding=decoding))[0]
        return self._record(question, answer, result, asked, time.perf_counter() - t1)

    # -- many -----------------------------------------------------------------------------
    def correct_batch(self, questions: Sequence[Any], answers: Sequence[str | None] | None = None, *,
                      aspects: str | None = None, objectives: Any = None, decoding: Any = None, progress: bool = True,
                      asked: "Sequence[Asked | None] | None" = None) -> list[Correction]:
        """Corrections in input order. Upstream calls run concurrently (the upstream's limit);
        the gate, when there is one, judges every answer and only the flagged ones go on; the
        corrector sees batches of ``batch_size`` so a local model pads and decodes together.
        Each asked answer's ``upstream`` time is its share of the concurrent calls (a given
        answer's is 0.0, or its ``asked`` item's when you asked the upstream yourself); each
        correction's ``corrector`` time its share of its batch. Empty answers are not corrected
        (``skipped="empty"``, as in :meth:`correct`). A question may be a chat's messages (see
        :meth:`correct`). The stages are :mod:`aligner.runtime.pipeline`'s."""
        from tqdm.auto import tqdm

        aspects = self.aspects(aspects, objectives)
        rows, out = self._rows(questions, answers, asked)
        with tqdm(total=len(rows), desc="correcting", unit="answer", disable=not progress) as bar:
            pipeline = self._pipeline(out, bar.update, aspects, decoding, blocking=True)
            run_sync(lambda: pipeline.run(rows), threads=pipeline.concurrency)
        return out  # type: ignore[return-value]

    async def acorrect_batch(self, questions: Sequence[Any], answers: Sequence[str | None] | None = None,
                             *, aspects: str | None = None, objectives: Any = None, decoding: Any = None,
                             asked: "Sequence[Asked | None] | None" = None) -> list[Correction]:
        aspects = self.aspects(aspects, objectives)
        rows, out = self._rows(questions, answers, asked)
        await self._pipeline(out, None, aspects, decoding, blocking=False).run(rows)
        return out  # type: ignore[return-value]

    def _rows(self, questions: Sequence[Any], answers: Sequence[str | None] | None,
              asked: "Sequence[Asked | None] | None") -> tuple[list[Row], list[Correction | None]]:
        """The checked input as pipeline rows (tagged with their position), and the output list."""
        questions, answers = _check_batch(questions, answers)
        given = [self._asked(asked=a) if a is not None else None for a in _per_row(asked, questions)]
        if any(a is None for a in answers):
            self._need_upstream()
        rows = [Row(q, a, tag=i, asked=g) for i, (q, a, g) in enumerate(zip(questions, answers, given))]
        return rows, [None] * len(rows)

    def _pipeline(self, out: list, advance: Any, aspects: str | None, decoding: Any, *,
                  blocking: bool) -> Pipeline:
        """Every answer first, then the corrector's batches shortest first (see
        :class:`~aligner.runtime.pipeline.Pipeline`); each Correction put in its input position."""
        def place(done: list, failed: list) -> None:
            for row, c in done:
                out[row.tag] = c
            if advance is not None:
                advance(len(done))

        concurrency = getattr(self.upstream, "max_concurrency", 1) if self.upstream is not None else 1
        return Pipeline(self, place, batch_size=self.batch_size, concurrency=concurrency, gather=True,
                        blocking=blocking, aspects=aspects, decoding=decoding)

    # -- streamed ------------------------------------------------------------------------
    def stream(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
               objectives: Any = None, decoding: Any = None, asked: Asked | None = None) -> CorrectionStream:
        """The correction, piece by piece as the corrector generates it (the upstream answer is
        awaited in full first: a correction needs the whole answer). Iterate it for the pieces,
        then read its ``correction`` (the :class:`Correction`, as ``correct()`` returns it)."""
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        given = question

        def run(stream: CorrectionStream) -> Iterator[str]:
            text, up = self._ask(given, answer, asked)
            question = self.question_for(given, text, aspects=aspects)
            if self._skipped(stream, question, text, up):
                return
            up = self._judged(question, text, up)
            if self._gated(stream, question, text, up):
                yield text  # not flagged: the answer, unchanged, as one piece
                return
            inner = self.corrector.stream(question, text, aspects=aspects, decoding=decoding, asked=up)
            try:
                yield from inner
            finally:
                inner.close()
            stream.result, stream.correction = inner.result, inner.correction  # the one Correction

        return CorrectionStream(run)

    def astream(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                objectives: Any = None, decoding: Any = None, asked: Asked | None = None) -> AsyncCorrectionStream:
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        given = question

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            text, up = await self._aask(given, answer, asked)
            question = await self.aquestion_for(given, text, aspects=aspects)
            if self._skipped(stream, question, text, up):
                return
            up = await self._ajudged(question, text, up)
            if self._gated(stream, question, text, up):
                yield text
                return
            inner = self.corrector.astream(question, text, aspects=aspects, decoding=decoding, asked=up)
            try:
                async for piece in inner:
                    yield piece
            finally:
                await inner.aclose()
            stream.result, stream.correction = inner.result, inner.correction

        return AsyncCorrectionStream(run)

    def _skipped(self, stream: Any, question: str, answer: str, asked: Asked) -> bool:
        """An empty answer ends its stream at once, uncorrected (``skipped="empty"``)."""
        if not is_blank(answer):
            return False
        stream.result, stream.correction = CorrectorResult(answer), self._not_corrected(question, answer, asked)
        return True

    def _gated(self, stream: Any, question: str, answer: str, asked: Asked) -> bool:
        """An answer the gate did not flag ends its stream as it came (the caller shows it whole)."""
        passed = self._passed(question, answer, asked)
        if passed is None:
            return False
        stream.correction = passed  # no corrector ran: no verdict of one (``result`` stays None)
        return True

    def __repr__(self) -> str:
        gate = f", gate={self.gate!r}" if self.gate is not None else ""
        return f"Aligner(upstream={self.upstream!r}, corrector={self.corrector!r}{gate})"


def _per_row(asked: "Sequence[Asked | None] | None", questions: list[Any]) -> list:
    if asked is None:
        return [None] * len(questions)
    if isinstance(asked, Asked) or len(asked) != len(questions):
        raise ConfigError(f"must hold one item (an Asked or None) per question, got {asked!r:.60}.", field="asked",
                          fix="pass asked=[Asked(seconds, upstream) or None, ...] beside the answers.")
    return list(asked)


def _check_batch(questions: Sequence[Any], answers: Sequence[str | None] | None) -> tuple[list[Any], list]:
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        raise ConfigError("must be a list of strings.", field="questions",
                          fix="pass a list, e.g. correct_batch(['q1', 'q2']); use correct() for one.")
    questions = [check_question(q, f"questions[{i}]") for i, q in enumerate(questions)]
    if answers is None:
        answers = [None] * len(questions)
    elif len(answers) != len(questions):
        raise ConfigError(f"has {len(answers)} items but questions has {len(questions)}.", field="answers",
                          fix="pass one answer (or None) per question.")
    return questions, list(answers)

