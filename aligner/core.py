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

from .conversation import check_question, format_of, is_conversation, question_for
from .correction import AsyncCorrectionStream, Correction, CorrectionStream, correction_of, passed_by_gate
from .correctors import Corrector, load_corrector
from .correctors.base import CorrectorResult
from .decoding import DecodingConfig
from .errors import ConfigError
from .gates.routing import GateRoute, to_correct
from .objectives import aspects_for, check_takes, resolve

#: ``Correction.skipped`` of an answer with no text: the corrector is not run, the answer comes back
#: as it was (a corrector given an empty answer writes one from the question alone).
EMPTY_ANSWER = "empty"


def is_blank(answer: Any) -> bool:
    """An answer with no text to correct: ``""`` or whitespace (an upstream's ``content: null``
    arrives as ``""``)."""
    return isinstance(answer, str) and not answer.strip()


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
    ``objectives`` (``["harmless", "helpful"]``, see :mod:`aligner.objectives`) are the default
    objectives of a corrector whose template takes them; a call's ``objectives=`` replaces them.
    A question may be a chat's ``messages``: it is rendered as the corrector was trained (the last
    user message, or the conversation, see :mod:`aligner.conversation`); ``context`` (``"last"`` or
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
        from .gates import load_gate

        found = load_gate(gate, threshold=gate_threshold, min_severity=gate_min_severity, device=device)
        #: the gate and its on-error policy (None: every answer is corrected)
        self.gate_route = GateRoute(found, gate_on_error) if found is not None else None
        self.corrector = load_corrector(corrector, template=template, decoding=decoding, device=device)
        #: the default objectives (None: none); refused at start-up by a template that takes none
        self.objectives = resolve(objectives)
        check_takes(self.corrector, self.objectives)
        #: how a chat's messages become the corrector's question (aligner.conversation)
        self.question_format = format_of(self.corrector, context)
        self.upstream = None
        if upstream is not None:
            from .adapters.resolve import resolve_upstream

            self.upstream = resolve_upstream(upstream, model=upstream_model, **upstream_kwargs)
        self.batch_size = batch_size

    def with_corrector(self, corrector: Corrector) -> "Aligner":
        """This Aligner (same upstream, batch size) correcting with ``corrector`` instead — e.g. the
        server's batching wrapper around this Aligner's own corrector."""
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

    def _record(self, question: str, answer: str, result: CorrectorResult, t_up: float,
                t_corr: float, verdict: Any = None) -> Correction:
        return correction_of(question, answer, result, corrector=self.corrector, upstream=self.upstream,
                             upstream_s=t_up, corrector_s=t_corr, gate=verdict)

    # -- the gate: verdicts (None without a gate) and the answers it passes ----------------
    def _verdicts(self, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        return self.gate_route.verdicts(pairs) if self.gate_route is not None else [None] * len(pairs)

    async def _averdicts(self, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        return await self.gate_route.averdicts(pairs) if self.gate_route is not None else [None] * len(pairs)

    def _passed(self, question: str, answer: str, verdict: Any, t_up: float) -> Correction | None:
        """The unchanged answer when the gate did not flag it; None when the corrector must see it."""
        if verdict is None or verdict.flagged:
            return None
        return passed_by_gate(question, answer, verdict, corrector=self.corrector, upstream=self.upstream,
                              upstream_s=t_up)

    def _not_corrected(self, question: str, answer: str, t_up: float) -> Correction:
        """The Correction of an empty answer: the answer as it came, ``skipped="empty"``."""
        c = self._record(question, answer, CorrectorResult(answer), t_up, 0.0)
        c.skipped = EMPTY_ANSWER
        return c

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

    # -- one ------------------------------------------------------------------------------
    def correct(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                objectives: Any = None, decoding: Any = None) -> Correction:
        """Correct ``answer`` to ``question`` (a string, or a chat's messages), asking the upstream
        first when it is None. An answer with no text (``""``, blank, an upstream's ``content:
        null``) is not corrected: it comes back as it was, with ``skipped="empty"``."""
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        t_up = 0.0
        if answer is None:
            t0 = time.perf_counter()
            answer = self.answer(question)
            t_up = time.perf_counter() - t0
        question = self.question_for(question, answer, aspects=aspects)
        if is_blank(answer):
            return self._not_corrected(question, answer, t_up)
        verdict = self._verdicts([(question, answer)])[0]
        passed = self._passed(question, answer, verdict, t_up)
        if passed is not None:
            return passed
        t1 = time.perf_counter()
        result = self.corrector.correct_results([(question, answer)], aspects=aspects, decoding=decoding)[0]
        return self._record(question, answer, result, t_up, time.perf_counter() - t1, verdict)

    async def acorrect(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                       objectives: Any = None, decoding: Any = None) -> Correction:
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        t_up = 0.0
        if answer is None:
            t0 = time.perf_counter()
            answer = await self.aanswer(question)
            t_up = time.perf_counter() - t0
        question = await self.aquestion_for(question, answer, aspects=aspects)
        if is_blank(answer):
            return self._not_corrected(question, answer, t_up)
        verdict = (await self._averdicts([(question, answer)]))[0]
        passed = self._passed(question, answer, verdict, t_up)
        if passed is not None:
            return passed
        t1 = time.perf_counter()
        result = (await self.corrector.acorrect_results([(question, answer)], aspects=aspects,
                                                        decoding=decoding))[0]
        return self._record(question, answer, result, t_up, time.perf_counter() - t1, verdict)

    # -- many -----------------------------------------------------------------------------
    def correct_batch(self, questions: Sequence[Any], answers: Sequence[str | None] | None = None, *,
                      aspects: str | None = None, objectives: Any = None, decoding: Any = None,
                      progress: bool = True) -> list[Correction]:
        """Corrections in input order. Upstream calls run concurrently (the upstream's limit);
        the gate, when there is one, judges every answer and only the flagged ones go on; the
        corrector sees batches of ``batch_size`` so a local model pads and decodes together.
        Each asked answer's ``upstream`` time is its share of the concurrent calls (a given
        answer's is 0.0); each correction's ``corrector`` time its share of its batch. Empty
        answers are not corrected (``skipped="empty"``, as in :meth:`correct`)."""
        from tqdm.auto import tqdm

        questions, answers = _check_batch(questions, answers)
        aspects = self.aspects(aspects, objectives)
        missing = [i for i, a in enumerate(answers) if a is None]
        t0 = time.perf_counter()
        if missing:
            _fill(answers, missing, self._need_upstream().answer_batch([questions[i] for i in missing]))
        t_up = _shares(missing, len(questions), time.perf_counter() - t0)
        questions = [self.question_for(q, a, aspects=aspects) for q, a in zip(questions, answers)]
        every: list[tuple[str, str]] = list(zip(questions, answers))
        out, todo = self._empty_ones(questions, answers, t_up)
        verdicts = _spread(todo, self._verdicts([every[i] for i in todo]), len(every))
        todo = self._gated(out, todo, every, verdicts, t_up)
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc="correcting", unit="answer",
                  disable=not progress) as bar:
            for batch in _batches(todo, answers, questions, self.batch_size):
                pairs = [every[i] for i in batch]
                t1 = time.perf_counter()
                fixed = self.corrector.correct_results(pairs, aspects=aspects, decoding=decoding)
                self._place(out, batch, pairs, fixed, t_up, time.perf_counter() - t1, verdicts)
                bar.update(len(pairs))
        return out  # type: ignore[return-value]

    async def acorrect_batch(self, questions: Sequence[Any], answers: Sequence[str | None] | None = None,
                             *, aspects: str | None = None, objectives: Any = None,
                             decoding: Any = None) -> list[Correction]:
        questions, answers = _check_batch(questions, answers)
        aspects = self.aspects(aspects, objectives)
        missing = [i for i, a in enumerate(answers) if a is None]
        t0 = time.perf_counter()
        if missing:
            _fill(answers, missing, await self._need_upstream().aanswer_batch([questions[i] for i in missing]))
        t_up = _shares(missing, len(questions), time.perf_counter() - t0)
        questions = [await self.aquestion_for(q, a, aspects=aspects) for q, a in zip(questions, answers)]
        every: list[tuple[str, str]] = list(zip(questions, answers))
        out, todo = self._empty_ones(questions, answers, t_up)
        verdicts = _spread(todo, await self._averdicts([every[i] for i in todo]), len(every))
        todo = self._gated(out, todo, every, verdicts, t_up)
        for batch in _batches(todo, answers, questions, self.batch_size):
            pairs = [every[i] for i in batch]
            t1 = time.perf_counter()
            fixed = await self.corrector.acorrect_results(pairs, aspects=aspects, decoding=decoding)
            self._place(out, batch, pairs, fixed, t_up, time.perf_counter() - t1, verdicts)
        return out  # type: ignore[return-value]

    def _empty_ones(self, questions: list[str], answers: list, t_up: list[float]) -> tuple[list, list[int]]:
        """The batch's output list with the empty answers' Corrections in place, and the positions
        left to correct."""
        out: list[Correction | None] = [None] * len(questions)
        todo = []
        for i, (q, a) in enumerate(zip(questions, answers)):
            if is_blank(a):
                out[i] = self._not_corrected(q, a, t_up[i])
            else:
                todo.append(i)
        return out, todo

    def _gated(self, out: list, todo: list[int], every: list[tuple[str, str]], verdicts: list[Any],
               t_up: list[float]) -> list[int]:
        """The gate's unflagged answers into ``out`` unchanged; the positions left for the corrector."""
        left = []
        for i in todo:
            out[i] = self._passed(*every[i], verdicts[i], t_up[i])
            if out[i] is None:
                left.append(i)
        return left

    def _place(self, out: list, batch: list[int], pairs: list[tuple[str, str]], results: list[CorrectorResult],
               t_up: list[float], seconds: float, verdicts: Sequence[Any]) -> None:
        """One batch's corrections into their input positions, each with its share of the batch's
        corrector time (and its gate verdict)."""
        each = seconds / len(pairs)
        for i, (q, a), r in zip(batch, pairs, results):
            out[i] = self._record(q, a, r, t_up[i], each, verdicts[i])

    # -- streamed ------------------------------------------------------------------------
    def stream(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
               objectives: Any = None, decoding: Any = None) -> CorrectionStream:
        """The correction, piece by piece as the corrector generates it (the upstream answer is
        awaited in full first: a correction needs the whole answer). Iterate it for the pieces,
        then read its ``correction`` (the :class:`Correction`, as ``correct()`` returns it)."""
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        asked = question

        def run(stream: CorrectionStream) -> Iterator[str]:
            t0 = time.perf_counter()
            text = answer if answer is not None else self.answer(asked)
            t_up = time.perf_counter() - t0 if answer is None else 0.0
            question = self.question_for(asked, text, aspects=aspects)
            if is_blank(text):
                stream.result = CorrectorResult(text)
                stream.correction = self._not_corrected(question, text, t_up)
                return
            verdict = self._verdicts([(question, text)])[0]
            stream.correction = self._passed(question, text, verdict, t_up)
            if stream.correction is not None:  # not flagged: the answer, unchanged, as one piece
                yield text
                return
            t1 = time.perf_counter()
            inner = self.corrector.stream(question, text, aspects=aspects, decoding=decoding)
            try:
                yield from inner
            finally:
                inner.close()
            self._streamed(stream, question, text, inner.result, t_up, t1, verdict)

        return CorrectionStream(run)

    def astream(self, question: Any, answer: str | None = None, *, aspects: str | None = None,
                objectives: Any = None, decoding: Any = None) -> AsyncCorrectionStream:
        check_question(question)
        aspects = self.aspects(aspects, objectives)
        asked = question

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            t0 = time.perf_counter()
            text = answer if answer is not None else await self.aanswer(asked)
            t_up = time.perf_counter() - t0 if answer is None else 0.0
            question = await self.aquestion_for(asked, text, aspects=aspects)
            if is_blank(text):
                stream.result = CorrectorResult(text)
                stream.correction = self._not_corrected(question, text, t_up)
                return
            verdict = (await self._averdicts([(question, text)]))[0]
            stream.correction = self._passed(question, text, verdict, t_up)
            if stream.correction is not None:  # not flagged: the answer, unchanged, as one piece
                yield text
                return
            t1 = time.perf_counter()
            inner = self.corrector.astream(question, text, aspects=aspects, decoding=decoding)
            try:
                async for piece in inner:
                    yield piece
            finally:
                await inner.aclose()
            self._streamed(stream, question, text, inner.result, t_up, t1, verdict)

        return AsyncCorrectionStream(run)

    def _streamed(self, stream: Any, question: str, answer: str, result: CorrectorResult | None,
                  t_up: float, t1: float, verdict: Any = None) -> None:
        """A stream's verdict and its Correction, once its corrector stream has ended."""
        stream.result = result
        if result is not None:
            stream.correction = self._record(question, answer, result, t_up, time.perf_counter() - t1, verdict)

    def __repr__(self) -> str:
        gate = f", gate={self.gate!r}" if self.gate is not None else ""
        return f"Aligner(upstream={self.upstream!r}, corrector={self.corrector!r}{gate})"


def length_buckets(pairs: Sequence[tuple[str, str]], size: int) -> list[list[int]]:
    """Positions of ``pairs`` in batches of ``size``, shortest question + answer first.

    A batch pads every prompt to its longest and (in transformers' ``generate``) decodes until its
    longest correction ends; a correction is about as long as its answer, so batching rows of
    similar length wastes the least work on padding and on rows that have finished. Characters
    stand in for tokens: the order only needs to be roughly right, and counting tokens would cost
    a tokenizer pass per row. The sort is stable, so equal lengths keep their input order.
    """
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    return [order[start:start + size] for start in range(0, len(order), size)]


def _batches(todo: list[int], answers: list, questions: list[str], size: int) -> list[list[int]]:
    """The positions ``todo`` in corrector batches (see :func:`length_buckets`)."""
    pairs = [(questions[i], answers[i]) for i in todo]
    return [[todo[j] for j in batch] for batch in length_buckets(pairs, size)]


def _spread(positions: list[int], values: Sequence[Any], n: int) -> list[Any]:
    """``values`` placed at ``positions`` in a list of ``n`` (None elsewhere)."""
    out: list[Any] = [None] * n
    for i, v in zip(positions, values):
        out[i] = v
    return out


def _fill(answers: list, missing: list[int], got: Sequence[str]) -> None:
    for i, a in zip(missing, got):
        answers[i] = a


def _shares(missing: list[int], n: int, seconds: float) -> list[float]:
    """Each row's upstream time: an asked row's share of the concurrent calls, a given one 0.0."""
    share = seconds / len(missing) if missing else 0.0
    asked = set(missing)
    return [share if i in asked else 0.0 for i in range(n)]


def _check_batch(questions: Sequence[str], answers: Sequence[str | None] | None) -> tuple[list[str], list]:
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

