"""``Aligner``: upstream → corrector, in one object with sync, async, batched and streamed calls.

The upstream (what answers) and the corrector (what rewrites) are separate contracts, so any of
one composes with any of the other. Either may be given as a spec and is resolved lazily here.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from .correction import Correction
from .correctors import Corrector, load_corrector
from .correctors.base import AsyncCorrectionStream, CorrectionStream, CorrectorResult
from .decoding import DecodingConfig
from .errors import ConfigError, require_text


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
                t_corr: float) -> Correction:
        return Correction(question=question, answer=answer, correction=result.text,
                          timings={"upstream": t_up, "corrector": t_corr, "total": t_up + t_corr},
                          corrector=self.corrector.name, template=self.corrector.template.name,
                          upstream=getattr(self.upstream, "name", "") if self.upstream else "",
                          metadata={"demo": True} if self.is_demo else {},
                          fallback=result.fallback, fallback_reason=result.fallback_reason)

    def answer(self, question: str, **params: Any) -> str:
        """The upstream's uncorrected answer."""
        return self._need_upstream().answer(require_text(question, "question"), **params)

    async def aanswer(self, question: str, **params: Any) -> str:
        return await self._need_upstream().aanswer(require_text(question, "question"), **params)

    # -- one ------------------------------------------------------------------------------
    def correct(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                decoding: Any = None) -> Correction:
        """Correct ``answer`` (asking the upstream first when it is None)."""
        require_text(question, "question")
        t0 = time.perf_counter()
        if answer is None:
            answer = self.answer(question)
        t1 = time.perf_counter()
        result = self.corrector.correct_results([(question, answer)], aspects=aspects, decoding=decoding)[0]
        return self._record(question, answer, result, t1 - t0, time.perf_counter() - t1)

    async def acorrect(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                       decoding: Any = None) -> Correction:
        require_text(question, "question")
        t0 = time.perf_counter()
        if answer is None:
            answer = await self.aanswer(question)
        t1 = time.perf_counter()
        result = (await self.corrector.acorrect_results([(question, answer)], aspects=aspects,
                                                        decoding=decoding))[0]
        return self._record(question, answer, result, t1 - t0, time.perf_counter() - t1)

    # -- many -----------------------------------------------------------------------------
    def correct_batch(self, questions: Sequence[str], answers: Sequence[str | None] | None = None, *,
                      aspects: str | None = None, decoding: Any = None,
                      progress: bool = True) -> list[Correction]:
        """Corrections in input order. Upstream calls run concurrently (the upstream's limit);
        the corrector sees batches of ``batch_size`` so a local model pads and decodes together."""
        from tqdm.auto import tqdm

        questions, answers = _check_batch(questions, answers)
        t0 = time.perf_counter()
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:
            got = self._need_upstream().answer_batch([questions[i] for i in missing])
            for i, a in zip(missing, got):
                answers[i] = a
        t_up = (time.perf_counter() - t0) / max(1, len(missing)) if missing else 0.0
        out: list[Correction] = []
        with tqdm(total=len(questions), desc="correcting", unit="answer", disable=not progress) as bar:
            for start in range(0, len(questions), self.batch_size):
                qs, ans = questions[start:start + self.batch_size], answers[start:start + self.batch_size]
                t1 = time.perf_counter()
                fixed = self.corrector.correct_results(list(zip(qs, ans)), aspects=aspects, decoding=decoding)
                each = (time.perf_counter() - t1) / len(qs)
                for j, (q, a, c) in enumerate(zip(qs, ans, fixed)):
                    out.append(self._record(q, a, c, t_up if start + j in missing else 0.0, each))
                bar.update(len(qs))
        return out

    async def acorrect_batch(self, questions: Sequence[str], answers: Sequence[str | None] | None = None,
                             *, aspects: str | None = None, decoding: Any = None) -> list[Correction]:
        questions, answers = _check_batch(questions, answers)
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:
            got = await self._need_upstream().aanswer_batch([questions[i] for i in missing])
            for i, a in zip(missing, got):
                answers[i] = a
        out: list[Correction] = []
        for start in range(0, len(questions), self.batch_size):
            qs, ans = questions[start:start + self.batch_size], answers[start:start + self.batch_size]
            t1 = time.perf_counter()
            fixed = await self.corrector.acorrect_results(list(zip(qs, ans)), aspects=aspects, decoding=decoding)
            each = (time.perf_counter() - t1) / len(qs)
            out += [self._record(q, a, c, 0.0, each) for q, a, c in zip(qs, ans, fixed)]
        return out

    # -- streamed ------------------------------------------------------------------------
    def stream(self, question: str, answer: str | None = None, *, aspects: str | None = None,
               decoding: Any = None) -> CorrectionStream:
        """The correction, piece by piece as the corrector generates it (the upstream answer is
        awaited in full first: a correction needs the whole answer). Once exhausted, the stream's
        ``result`` says whether the correction fell back to the answer (see ``CorrectionStream``)."""
        require_text(question, "question")

        def run(stream: CorrectionStream) -> Iterator[str]:
            text = answer if answer is not None else self.answer(question)
            inner = self.corrector.stream(question, text, aspects=aspects, decoding=decoding)
            try:
                yield from inner
            finally:
                inner.close()
                stream.result = inner.result

        return CorrectionStream(run)

    def astream(self, question: str, answer: str | None = None, *, aspects: str | None = None,
                decoding: Any = None) -> AsyncCorrectionStream:
        require_text(question, "question")

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            text = answer if answer is not None else await self.aanswer(question)
            inner = self.corrector.astream(question, text, aspects=aspects, decoding=decoding)
            try:
                async for piece in inner:
                    yield piece
            finally:
                await inner.aclose()
                stream.result = inner.result

        return AsyncCorrectionStream(run)

    def __repr__(self) -> str:
        return f"Aligner(upstream={self.upstream!r}, corrector={self.corrector!r})"


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

