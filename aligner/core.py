"""``Aligner``: upstream → corrector, in one object with sync, async, batched and streamed calls.

The upstream (what answers) and the corrector (what rewrites) are separate contracts, so any of
one composes with any of the other. Either may be given as a spec and is resolved lazily here.
"""
from __future__ import annotations

import copy
import time
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from .correction import (Asked, AsyncCorrectionStream, Correction, CorrectionStream, CorrectorResult,
                         correction_of)
from .correctors import Corrector, load_corrector
from .decoding import DecodingConfig
from .errors import ConfigError, require_text

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
    embedded demo corrector.
    """

    def __init__(self, upstream: Any = None, corrector: "Corrector | str | None" = None, *,
                 template: Any = None, upstream_model: str | None = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None, device: str | None = None,
                 batch_size: int = 8, **upstream_kwargs: Any):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive int, got {batch_size!r}.", field="batch_size",
                              fix="e.g. batch_size=8.")
        self.corrector = load_corrector(corrector, template=template, decoding=decoding, device=device)
        self.upstream = None
        if upstream is not None:
            from .adapters.resolve import resolve_upstream

            self.upstream = resolve_upstream(upstream, model=upstream_model, **upstream_kwargs)
        self.batch_size = batch_size

    def with_corrector(self, corrector: Corrector) -> "Aligner":
        """This Aligner (same upstream, batch size) correcting with ``corrector`` instead — e.g.
        the server's: this Aligner's own corrector, its rows batched (``corrector.through(batcher)``)."""
        other = copy.copy(self)
        other.corrector = corrector
        return other

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

    def answer(self, question: str, **params: Any) -> str:
        """The upstream's uncorrected answer."""
        return self._need_upstream().answer(require_text(question, "question"), **params)

    async def aanswer(self, question: str, **params: Any) -> str:
        return await self._need_upstream().aanswer(require_text(question, "question"), **params)

    def _ask(self, question: str, answer: str | None, asked: Asked | None) -> tuple[str, Asked]:
        """The answer to correct and who gave it: ``answer`` as given (with the caller's
        ``asked``), or, when it is None, the upstream's, timed."""
        if answer is not None:
            return answer, self._asked(asked=asked)
        t0 = time.perf_counter()
        text = self.answer(question)
        return text, self._asked(time.perf_counter() - t0)

    async def _aask(self, question: str, answer: str | None, asked: Asked | None) -> tuple[str, Asked]:
        if answer is not None:
            return answer, self._asked(asked=asked)
        t0 = time.perf_counter()
        text = await self.aanswer(question)
        return text, self._asked(time.perf_counter() - t0)

    # -- one ------------------------------------------------------------------------------
    def correct(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                decoding: Any = None, asked: Asked | None = None) -> Correction:
        """Correct ``answer`` (asking the upstream first when it is None). An answer with no text
        (``""``, blank, an upstream's ``content: null``) is not corrected: it comes back as it was,
        with ``skipped="empty"``. ``asked``: the upstream call you made yourself for ``answer``
        (who answered, its seconds), so the Correction's ``upstream`` and timings count it."""
        answer, asked = self._ask(require_text(question, "question"), answer, asked)
        if is_blank(answer):
            return self._not_corrected(question, answer, asked)
        t1 = time.perf_counter()
        result = self.corrector.correct_results([(question, answer)], aspects=aspects, decoding=decoding)[0]
        return self._record(question, answer, result, asked, time.perf_counter() - t1)

    async def acorrect(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                       decoding: Any = None, asked: Asked | None = None) -> Correction:
        answer, asked = await self._aask(require_text(question, "question"), answer, asked)
        if is_blank(answer):
            return self._not_corrected(question, answer, asked)
        t1 = time.perf_counter()
        result = (await self.corrector.acorrect_results([(question, answer)], aspects=aspects,
                                                        decoding=decoding))[0]
        return self._record(question, answer, result, asked, time.perf_counter() - t1)

    # -- many -----------------------------------------------------------------------------
    def correct_batch(self, questions: Sequence[str], answers: Sequence[str | None] | None = None, *,
                      aspects: str | None = None, decoding: Any = None, progress: bool = True,
                      asked: "Sequence[Asked | None] | None" = None) -> list[Correction]:
        """Corrections in input order. Upstream calls run concurrently (the upstream's limit);
        the corrector sees batches of ``batch_size`` so a local model pads and decodes together.
        Each asked answer's ``upstream`` time is its share of the concurrent calls (a given
        answer's is 0.0, or its ``asked`` item's when you asked the upstream yourself); each
        correction's ``corrector`` time its share of its batch. Empty answers are not corrected
        (``skipped="empty"``, as in :meth:`correct`)."""
        from tqdm.auto import tqdm

        questions, answers = _check_batch(questions, answers)
        missing = [i for i, a in enumerate(answers) if a is None]
        t0 = time.perf_counter()
        if missing:
            _fill(answers, missing, self._need_upstream().answer_batch([questions[i] for i in missing]))
        t_up = _shares(missing, len(questions), time.perf_counter() - t0)
        asked = [self._asked(t, given) for t, given in zip(t_up, _per_row(asked, questions))]
        out, todo = self._empty_ones(questions, answers, asked)
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc="correcting", unit="answer",
                  disable=not progress) as bar:
            for batch in _batches(todo, answers, questions, self.batch_size):
                pairs = [(questions[i], answers[i]) for i in batch]
                t1 = time.perf_counter()
                fixed = self.corrector.correct_results(pairs, aspects=aspects, decoding=decoding)
                self._place(out, batch, pairs, fixed, asked, time.perf_counter() - t1)
                bar.update(len(pairs))
        return out  # type: ignore[return-value]

    async def acorrect_batch(self, questions: Sequence[str], answers: Sequence[str | None] | None = None,
                             *, aspects: str | None = None, decoding: Any = None,
                             asked: "Sequence[Asked | None] | None" = None) -> list[Correction]:
        questions, answers = _check_batch(questions, answers)
        missing = [i for i, a in enumerate(answers) if a is None]
        t0 = time.perf_counter()
        if missing:
            _fill(answers, missing, await self._need_upstream().aanswer_batch([questions[i] for i in missing]))
        t_up = _shares(missing, len(questions), time.perf_counter() - t0)
        asked = [self._asked(t, given) for t, given in zip(t_up, _per_row(asked, questions))]
        out, todo = self._empty_ones(questions, answers, asked)
        for batch in _batches(todo, answers, questions, self.batch_size):
            pairs = [(questions[i], answers[i]) for i in batch]
            t1 = time.perf_counter()
            fixed = await self.corrector.acorrect_results(pairs, aspects=aspects, decoding=decoding)
            self._place(out, batch, pairs, fixed, asked, time.perf_counter() - t1)
        return out  # type: ignore[return-value]

    def _empty_ones(self, questions: list[str], answers: list, asked: list[Asked]) -> tuple[list, list[int]]:
        """The batch's output list with the empty answers' Corrections in place, and the positions
        left to correct."""
        out: list[Correction | None] = [None] * len(questions)
        todo = []
        for i, (q, a) in enumerate(zip(questions, answers)):
            if is_blank(a):
                out[i] = self._not_corrected(q, a, asked[i])
            else:
                todo.append(i)
        return out, todo

    def _place(self, out: list, batch: list[int], pairs: list[tuple[str, str]], results: list[CorrectorResult],
               asked: list[Asked], seconds: float) -> None:
        """One batch's corrections into their input positions, each with its share of the batch's
        corrector time."""
        each = seconds / len(pairs)
        for i, (q, a), r in zip(batch, pairs, results):
            out[i] = self._record(q, a, r, asked[i], each)

    # -- streamed ------------------------------------------------------------------------
    def stream(self, question: str, answer: str | None = None, *, aspects: str | None = None,
               decoding: Any = None, asked: Asked | None = None) -> CorrectionStream:
        """The correction, piece by piece as the corrector generates it (the upstream answer is
        awaited in full first: a correction needs the whole answer). Iterate it for the pieces,
        then read its ``correction`` (the :class:`Correction`, as ``correct()`` returns it)."""
        require_text(question, "question")

        def run(stream: CorrectionStream) -> Iterator[str]:
            text, up = self._ask(question, answer, asked)
            if self._skipped(stream, question, text, up):
                return
            inner = self.corrector.stream(question, text, aspects=aspects, decoding=decoding, asked=up)
            try:
                yield from inner
            finally:
                inner.close()
            stream.result, stream.correction = inner.result, inner.correction  # the one Correction

        return CorrectionStream(run)

    def astream(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                decoding: Any = None, asked: Asked | None = None) -> AsyncCorrectionStream:
        require_text(question, "question")

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            text, up = await self._aask(question, answer, asked)
            if self._skipped(stream, question, text, up):
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

    def __repr__(self) -> str:
        return f"Aligner(upstream={self.upstream!r}, corrector={self.corrector!r})"


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


def _fill(answers: list, missing: list[int], got: Sequence[str]) -> None:
    for i, a in zip(missing, got):
        answers[i] = a


def _shares(missing: list[int], n: int, seconds: float) -> list[float]:
    """Each row's upstream time: an asked row's share of the concurrent calls, a given one 0.0."""
    share = seconds / len(missing) if missing else 0.0
    asked = set(missing)
    return [share if i in asked else 0.0 for i in range(n)]


def _per_row(asked: "Sequence[Asked | None] | None", questions: list[str]) -> list:
    if asked is None:
        return [None] * len(questions)
    if isinstance(asked, Asked) or len(asked) != len(questions):
        raise ConfigError(f"must hold one item (an Asked or None) per question, got {asked!r:.60}.", field="asked",
                          fix="pass asked=[Asked(seconds, upstream) or None, ...] beside the answers.")
    return list(asked)


def _check_batch(questions: Sequence[str], answers: Sequence[str | None] | None) -> tuple[list[str], list]:
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        raise ConfigError("must be a list of strings.", field="questions",
                          fix="pass a list, e.g. correct_batch(['q1', 'q2']); use correct() for one.")
    questions = [require_text(q, f"questions[{i}]") for i, q in enumerate(questions)]
    if answers is None:
        answers = [None] * len(questions)
    elif len(answers) != len(questions):
        raise ConfigError(f"has {len(answers)} items but questions has {len(questions)}.", field="answers",
                          fix="pass one answer (or None) per question.")
    return questions, list(answers)

