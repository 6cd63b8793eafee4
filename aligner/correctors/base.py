"""The corrector: render the template, decode, parse, guard — batch, stream and async once.

A :class:`Corrector` is a decoding :class:`~aligner.correctors.backend.Backend` (the few methods
that turn rendered prompts into raw text: see that module for the contract) with the prompt and
guard pipeline on top. Everything a user calls — ``correct``, ``correct_batch``, ``stream`` and
their async twins — is built here, so every backend parses, truncates, guards
(:mod:`aligner.runtime.guard`) and streams identically (and the sync/async/stream parity tests hold for
all of them). The pipeline decodes its rows through :attr:`Corrector.decoder` — the corrector
itself, or what :meth:`Corrector.through` puts in its place (the server's batcher, which wraps
this corrector's own rows and nothing else).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from ..contracts.correction import Asked, AsyncCorrectionStream, CorrectionStream, CorrectorResult, correction_of
from ..contracts.decoding import DecodingConfig
from ..contracts.errors import require_text
from ..contracts.rows import RowControl
from ..contracts.streaming import StreamParser
from ..contracts.templates import Template, cut_at_stop, get_template
from ..runtime.edit_checks import edit_check_for, resolve_mode
from ..runtime.guard import Guard
from .backend import Backend, RowDecoder, TokenBudget, capped, feed_pieces, fit_answer, fits_budget, must_stop

__all__ = ["Corrector", "CorrectorResult", "ShownRow", "Backend", "RowDecoder", "capped", "feed_pieces",
           "must_stop"]

log = logging.getLogger("aligner")


class _Job:
    """One correction in flight: its prompt, the answer to fall back to, and its row."""

    def __init__(self, prompt: str, answer: str, row: RowControl):
        self.prompt, self.answer, self.row = prompt, answer, row


class Corrector(Backend):
    """Rewrites an answer given its question: a backend (``generate_rows``, or ``generate`` and
    ``stream_prompt``; see :mod:`aligner.correctors.backend`) under the prompt/guard pipeline."""

    #: what decodes this corrector's rows when not the corrector itself (see :meth:`through`).
    _decoder: RowDecoder | None = None

    def __init__(self, template: "str | Template | None" = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None):
        self.template = get_template(template)
        self.decoding = DecodingConfig.from_any(decoding, self.template.decoding)

    @property
    def decoder(self) -> RowDecoder:
        """What the pipeline hands its rows to: this corrector, or the decoder given to :meth:`through`."""
        return self._decoder if self._decoder is not None else self

    def through(self, decoder: RowDecoder) -> "Corrector":
        """This corrector — its template, decoding, guard, ``fit`` and tokens — with its rows
        decoded by ``decoder``: the server's batcher, which wraps this corrector's own rows."""
        other = copy.copy(self)
        other._decoder = decoder
        return other

    # -- the prompt's limits: a corrector with its own tokenizer gives its token budget -------
    #: answers cut by ``fit`` to make their prompt fit (on this object; ``through`` copies it)
    truncations: int = 0

    def token_budget(self) -> TokenBudget | None:
        """What fitting a prompt needs to know of this corrector's tokenizer and context (a local or
        GGUF model gives one); None, the default, for one whose limit is not known here (a remote
        server's): its prompts are sent whole."""
        return None

    def fit(self, question: str, answer: str, *, aspects: str | None = None) -> tuple[str, str]:
        """Truncate an over-long answer (head kept) so prompt and correction fit the context
        (:func:`~aligner.correctors.backend.fit_answer`; counted in ``self.truncations``); kept
        whole without a :meth:`token_budget`."""
        limits = self.token_budget()
        if limits is not None:
            answer, cut = fit_answer(self.template, question, answer, limits, aspects=aspects)
            self.truncations += cut
        return question, answer

    def prompt_fits(self, prompt: str) -> bool:
        limits = self.token_budget()
        return limits is None or fits_budget(prompt, limits)

    def fits(self, question: str, answer: str, *, aspects: str | None = None) -> bool:
        """Whether the prompt of ``question`` and ``answer`` fits whole (no answer truncated): how a
        conversation is cut to the corrector's budget (:mod:`aligner.contracts.conversation`)."""
        return self.prompt_fits(self.template.render(question, answer, aspects=aspects or "x"))

    # -- built once ------------------------------------------------------------------------
    def render(self, question: str, answer: str, *, aspects: str | None = None) -> str:
        require_text(question, "question")
        if not isinstance(answer, str):
            require_text(answer, "answer")
        question, answer = self.fit(question, answer, aspects=aspects)
        return self.template.render(question, answer, aspects=aspects)

    def guard(self, question: str, answer: str, decoding: DecodingConfig) -> Guard:
        """The guard for one correction of ``answer`` (as the corrector sees it, after ``fit``).

        Strict edit checks (the demo corrector's default) also show a whole refusal only when the
        embedded demo gate flags the answer: the small corrector refuses some harmless how-tos."""
        cap = decoding.row_cap(self.answer_tokens(answer)) if decoding.cap_to_answer else None
        demo = bool(getattr(self, "is_demo", False))
        confirm = None
        if resolve_mode(decoding.edit_checks, demo=demo) == "strict":
            from ..gates import demo_gate_flags  # a sibling provider, loaded only when strict checks run
            confirm = demo_gate_flags
        return Guard(self.template, question, answer, eos_token=self.eos_token, cap=cap, enabled=decoding.fallback,
                     edit_check=edit_check_for(decoding.edit_checks, demo=demo), confirm_refusal=confirm)

    def prepare(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | None" = None) -> tuple[str, RowControl]:
        """The rendered prompt and a fresh row (its guard and cap) for one correction.

        Tokenises the answer (to fit and to cap it), so a server calls it in a worker thread.
        """
        decoding = decoding or self.decoding
        require_text(question, "question")
        if not isinstance(answer, str):
            require_text(answer, "answer")
        q, a = self.fit(question, answer, aspects=aspects)
        guard = self.guard(q, a, decoding)
        return self.template.render(q, a, aspects=aspects), RowControl(max_new_tokens=guard.cap, guard=guard)

    def _decoding(self, overrides: "DecodingConfig | Mapping[str, Any] | None") -> DecodingConfig:
        if overrides is None:
            return self.decoding
        return DecodingConfig.from_any(overrides, self.decoding.to_dict())

    def parse(self, raw: str) -> str:
        return self.template.parse(raw, eos_token=self.eos_token)

    def finish(self, raw: str, answer: str, row: RowControl) -> CorrectorResult:
        """Parse a raw generation and judge it: the correction, or ``answer`` when degenerate."""
        guard: Guard | None = row.guard
        text = self.parse(raw)
        if guard is not None and guard.markers:
            text = cut_at_stop(text, guard.markers).strip()
        reason = guard.verdict(raw, text, row.stop_reason) if guard is not None else None
        if reason is not None:
            log.info("corrector output is degenerate (%s): returning the original answer", reason)
            text = answer
        return CorrectorResult(text, reason, raw, row.stop_reason, timings=dict(row.timings))

    def _jobs(self, pairs: Sequence[tuple[str, str]], aspects: str | None,
              decoding: DecodingConfig) -> list[_Job]:
        jobs = []
        for q, a in pairs:
            prompt, row = self.prepare(q, a, aspects=aspects, decoding=decoding)
            jobs.append(_Job(prompt, a, row))
        return jobs

    def correct(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> str:
        return self.correct_batch([(question, answer)], aspects=aspects, decoding=decoding)[0]

    def correct_batch(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                      decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[str]:
        return [r.text for r in self.correct_results(pairs, aspects=aspects, decoding=decoding)]

    def correct_results(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                        decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[CorrectorResult]:
        """Like ``correct_batch``, with each correction's fallback reason."""
        dec = self._decoding(decoding)
        jobs = self._jobs(pairs, aspects, dec)
        raws = self.decoder.generate_rows([j.prompt for j in jobs], dec, [j.row for j in jobs])
        return self._finished(raws, jobs)

    async def acorrect(self, question: str, answer: str, *, aspects: str | None = None,
                       decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> str:
        return (await self.acorrect_batch([(question, answer)], aspects=aspects, decoding=decoding))[0]

    async def acorrect_batch(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                             decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[str]:
        return [r.text for r in await self.acorrect_results(pairs, aspects=aspects, decoding=decoding)]

    async def acorrect_results(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                               decoding: "DecodingConfig | Mapping[str, Any] | None" = None
                               ) -> list[CorrectorResult]:
        """``correct_results`` for async callers: rendering (which tokenises the answer) and
        judging run in worker threads, the rows on the decoder's own async path (a server's
        batcher gathers them with other requests' rows)."""
        dec = self._decoding(decoding)
        jobs = await asyncio.to_thread(self._jobs, pairs, aspects, dec)
        raws = await self.decoder.agenerate_rows([j.prompt for j in jobs], dec, [j.row for j in jobs])
        return await asyncio.to_thread(self._finished, raws, jobs)

    def _finished(self, raws: Sequence[str], jobs: Sequence[_Job]) -> list[CorrectorResult]:
        results = [self.finish(raw, j.answer, j.row) for raw, j in zip(raws, jobs)]
        if self.decoder.reports_usage:
            for r, j in zip(results, jobs):
                r.usage = self.usage(j.prompt, r.text)
        return results

    def stream(self, question: str, answer: str, *, aspects: str | None = None,
               decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
               asked: Asked | None = None) -> CorrectionStream:
        """The correction piece by piece; once exhausted, its ``result`` and ``correction`` (see
        :class:`~aligner.contracts.correction.CorrectionStream` for what a fallback does). ``asked``: who
        answered and how long it took, for the Correction (an Aligner passes its upstream's)."""
        shown = self._shown(question, answer, aspects, self._decoding(decoding), asked)
        return CorrectionStream(lambda stream: shown.run(stream, self.decoder.stream_row(shown.prompt, shown.decoding,
                                                                                         shown.row)))

    def astream(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
                asked: Asked | None = None) -> AsyncCorrectionStream:
        """The async twin of :meth:`stream`; the prompt is rendered in a worker thread when
        iteration starts (rendering tokenises the answer, never on the event loop)."""
        dec = self._decoding(decoding)

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            shown = await asyncio.to_thread(self._shown, question, answer, aspects, dec, asked)
            pieces = shown.arun(stream, self.decoder.astream_row(shown.prompt, dec, shown.row))
            try:
                async for out in pieces:
                    yield out
            finally:
                await pieces.aclose()  # left early: the row is cancelled now, not when collected

        return AsyncCorrectionStream(run)

    def _shown(self, question: str, answer: str, aspects: str | None, decoding: DecodingConfig,
               asked: Asked | None) -> "ShownRow":
        prompt, row = self.prepare(question, answer, aspects=aspects, decoding=decoding)
        return ShownRow(self, question, answer, prompt, decoding, row, asked)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, template={self.template.name!r})"


class ShownRow:
    """One streamed correction's row and what it has shown: raw pieces go through the parser,
    the safe text comes out, and at the end the verdict (the original answer streamed instead when
    the correction was degenerate and nothing had been shown yet). ``run`` and ``arun`` are the
    one loop, iterated sync or async."""

    def __init__(self, corrector: Corrector, question: str, answer: str, prompt: str,
                 decoding: DecodingConfig, row: RowControl, asked: Asked | None = None):
        self.corrector, self.question, self.answer, self.asked = corrector, question, answer, asked
        self.prompt, self.decoding, self.row = prompt, decoding, row
        guard = row.guard
        self.parser = StreamParser(guard.cut_markers if guard is not None else corrector.stop_markers)
        self.text = ""
        #: a replacement character the answer does not have was seen: nothing more is shown.
        self.held = False
        self.t0 = time.perf_counter()

    @property
    def stopped(self) -> bool:
        """A stop marker (or a leaked one) has been seen: nothing more of the row is shown."""
        return self.parser.stopped

    def take(self, piece: str) -> list[str]:
        """The text of a raw piece that is safe to show now (none, or one piece). Nothing from a
        replacement character the answer does not have on: the verdict will be a fallback
        (``replacement_char``), and what is shown cannot be taken back."""
        out = self.parser.feed(piece)
        guard = self.row.guard
        if self.held or not out:
            return []
        cut = guard.replacement_at(self.text + out) if guard is not None else None
        if cut is not None:
            out, self.held = out[:max(0, cut - len(self.text))], True
        self.text += out
        return [out] if out else []

    def end(self, stream: Any) -> list[str]:
        """The last piece to show, with the verdict and the Correction put on ``stream``.
        Degenerate with nothing shown yet: the original answer is the last (only) piece.
        Degenerate after text was shown: nothing more."""
        tail = self.parser.finish()
        result = self.corrector.finish(self.parser.raw, self.answer, self.row)
        if result.fallback:
            tail = "" if self.text else self.answer
        self.text += tail
        stream.result = result
        stream.correction = correction_of(self.question, self.answer, result, corrector=self.corrector,
                                          asked=self.asked, corrector_s=time.perf_counter() - self.t0)
        return [tail] if tail else []

    def run(self, stream: Any, pieces: Iterator[str]) -> Iterator[str]:
        self.t0 = time.perf_counter()
        try:
            for piece in pieces:
                yield from self.take(piece)
                if self.stopped:
                    break
        finally:
            pieces.close()  # type: ignore[attr-defined]  # cancels the row when left early
        yield from self.end(stream)

    async def arun(self, stream: Any, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        self.t0 = time.perf_counter()
        try:
            async for piece in pieces:
                for out in self.take(piece):
                    yield out
                if self.stopped:
                    break
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]
        for out in self.end(stream):
            yield out
