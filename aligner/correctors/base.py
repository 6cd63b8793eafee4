"""The corrector contract: render the template, generate, parse, guard — batch, stream and async once.

A backend implements two primitives over *rendered prompts*: ``generate`` (a batch, in order) and
``stream_prompt`` (one prompt, raw text pieces). It may also implement ``generate_rows``, which
takes one :class:`~aligner.rows.RowControl` per prompt (cancel handle, per-row cap, guard,
streaming sink) — local models do, so a cancelled or runaway row stops within a decoding step.
Everything a user calls — ``correct``, ``correct_batch``, ``stream`` and their async twins — is
built here, so every backend parses, truncates, guards (:mod:`aligner.guard`) and streams
identically (and the sync/async/stream parity tests hold for all of them).
"""
from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from ..correction import AsyncCorrectionStream, CorrectionStream, correction_of
from ..decoding import DecodingConfig

from ..rows import RowControl, iterate_row
from ..rows import notify_end as _end  # one "row finished" notice for every backend
from ..errors import require_text
from ..edit_checks import edit_check_for
from ..guard import Guard, new_token_cap
from ..templates import STOP_MARKERS, Template, cut_at_stop, get_template
from ..transport.streaming import StreamParser, iterate_in_thread

log = logging.getLogger("aligner")


@dataclass
class CorrectorResult:
    """One correction as the corrector made it.

    ``text`` is what to show: the correction, or — when the raw output was degenerate — the
    original answer, with ``fallback_reason`` saying why (see :mod:`aligner.guard`).
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
    #: a stack's steps, one per corrector (see :mod:`aligner.stacking`); empty otherwise.
    steps: list[Any] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


class _Job:
    """One correction in flight: its prompt, the answer to fall back to, and its row."""

    def __init__(self, prompt: str, answer: str, row: RowControl):
        self.prompt, self.answer, self.row = prompt, answer, row


class Corrector(ABC):
    """Rewrites an answer given its question. Subclasses provide ``generate`` and ``stream_prompt``."""

    #: a short id shown in logs, the server's ``aligner`` object and the CLI (a path or hub id).
    name: str = "corrector"

    def __init__(self, template: "str | Template | None" = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None):
        self.template = get_template(template)
        self.decoding = DecodingConfig.from_any(decoding, self.template.decoding)

    # -- primitives -------------------------------------------------------------------------
    @abstractmethod
    def generate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        """Raw generated text for each rendered prompt, in input order."""

    @abstractmethod
    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        """Raw generated text pieces for one rendered prompt."""

    async def agenerate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        """Async batch; local models run in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.generate, list(prompts), decoding)

    async def astream_prompt(self, prompt: str, decoding: DecodingConfig) -> AsyncIterator[str]:
        async for piece in iterate_in_thread(lambda: self.stream_prompt(prompt, decoding)):
            yield piece

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """Raw text per prompt, honouring each row as well as the backend can (blocking).

        This default runs on the two primitives: a streaming row (``on_text``) streams and is
        checked after every piece (cancel, guard); the others go in one ``generate`` call capped
        at the largest row cap and are judged when done. Backends that decode step by step
        override it to stop each row within a step.
        """
        out = [""] * len(prompts)
        plain = []
        for i, (prompt, row) in enumerate(zip(prompts, rows)):
            if row.cancelled:
                row.stop_reason = "cancelled"
                _end(row)
            elif row.on_text is not None:
                out[i] = feed_pieces(row, self.stream_prompt(prompt, capped(decoding, [row])))
            else:
                plain.append(i)
        if plain:
            texts = self.generate([prompts[i] for i in plain], capped(decoding, [rows[i] for i in plain]))
            for i, text in zip(plain, texts):
                out[i] = text
                _end(rows[i])
        return out

    async def agenerate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                             rows: Sequence[RowControl]) -> list[str]:
        return await asyncio.to_thread(self.generate_rows, list(prompts), decoding, list(rows))

    async def astream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> AsyncIterator[str]:
        """Raw pieces of one guarded row, for ``astream``: this default drives ``stream_row`` in a
        worker thread and cancels the row when the consumer stops early."""
        finished = False
        try:
            async for piece in iterate_in_thread(lambda: self.stream_row(prompt, decoding, row)):
                yield piece
            finished = True
        finally:
            if not finished:
                row.cancel()

    def stream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> Iterator[str]:
        """Raw pieces of one guarded row, for ``stream`` (generated in a worker thread)."""
        return iterate_row(row, lambda: self.generate_rows([prompt], decoding, [row]))

    @property
    def eos_token(self) -> str | None:
        return None

    @property
    def stop_markers(self) -> tuple[str, ...]:
        """Where a generation has gone past the correction: EOS written out, or a new turn."""
        return (*STOP_MARKERS, *((self.eos_token,) if self.eos_token else ()))

    def fit(self, question: str, answer: str, *, aspects: str | None = None) -> tuple[str, str]:
        """Make the prompt (with its ``aspects`` text, when the template has one) fit the corrector's
        context; the default backend has no limit."""
        return question, answer

    def prompt_fits(self, prompt: str) -> bool:
        """Whether a rendered prompt fits the corrector's input budget; a backend without one has
        no limit."""
        return True

    def fits(self, question: str, answer: str, *, aspects: str | None = None) -> bool:
        """Whether the prompt of ``question`` and ``answer`` fits whole (no answer truncated): how a
        conversation is cut to the corrector's budget (:mod:`aligner.conversation`)."""
        return self.prompt_fits(self.template.render(question, answer, aspects=aspects or "x"))

    def answer_tokens(self, answer: str) -> int:
        """The answer's length in the corrector's tokens, for the new-token cap. Without a
        tokenizer its UTF-8 byte count stands in: never fewer than a byte-level tokenizer's
        tokens, so the cap errs long."""
        return len(answer.encode("utf-8", "replace"))

    # -- built once ------------------------------------------------------------------------
    def render(self, question: str, answer: str, *, aspects: str | None = None) -> str:
        require_text(question, "question")
        if not isinstance(answer, str):
            require_text(answer, "answer")
        question, answer = self.fit(question, answer, aspects=aspects)
        return self.template.render(question, answer, aspects=aspects)

    def guard(self, question: str, answer: str, decoding: DecodingConfig) -> Guard:
        """The guard for one correction of ``answer`` (as the corrector sees it, after ``fit``)."""
        cap = None
        if decoding.cap_to_answer:
            cap = new_token_cap(self.answer_tokens(answer))
            cap = cap if cap < decoding.max_new_tokens else None
        return Guard(self.template, question, answer, eos_token=self.eos_token, cap=cap, enabled=decoding.fallback,
                     edit_check=edit_check_for(decoding.edit_checks, demo=bool(getattr(self, "is_demo", False))))

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
        return CorrectorResult(text, reason, raw, row.stop_reason)

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
        raws = self.generate_rows([j.prompt for j in jobs], dec, [j.row for j in jobs])
        return [self.finish(raw, j.answer, j.row) for raw, j in zip(raws, jobs)]

    async def acorrect(self, question: str, answer: str, *, aspects: str | None = None,
                       decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> str:
        return (await self.acorrect_batch([(question, answer)], aspects=aspects, decoding=decoding))[0]

    async def acorrect_batch(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                             decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[str]:
        return [r.text for r in await self.acorrect_results(pairs, aspects=aspects, decoding=decoding)]

    async def acorrect_results(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                               decoding: "DecodingConfig | Mapping[str, Any] | None" = None
                               ) -> list[CorrectorResult]:
        dec = self._decoding(decoding)
        jobs = self._jobs(pairs, aspects, dec)
        raws = await self.agenerate_rows([j.prompt for j in jobs], dec, [j.row for j in jobs])
        return [self.finish(raw, j.answer, j.row) for raw, j in zip(raws, jobs)]

    def stream(self, question: str, answer: str, *, aspects: str | None = None,
               decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> CorrectionStream:
        """The correction piece by piece; once exhausted, its ``result`` and ``correction`` (see
        :class:`~aligner.correction.CorrectionStream` for what a fallback does)."""
        shown = self._shown(question, answer, aspects, decoding)
        return CorrectionStream(lambda stream: shown.run(stream, self.stream_row(shown.prompt, shown.decoding,
                                                                                 shown.row)))

    def astream(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> AsyncCorrectionStream:
        shown = self._shown(question, answer, aspects, decoding)
        return AsyncCorrectionStream(lambda stream: shown.arun(stream, self.astream_row(shown.prompt, shown.decoding,
                                                                                        shown.row)))

    def _shown(self, question: str, answer: str, aspects: str | None,
               decoding: "DecodingConfig | Mapping[str, Any] | None") -> "ShownRow":
        dec = self._decoding(decoding)
        prompt, row = self.prepare(question, answer, aspects=aspects, decoding=dec)
        return ShownRow(self, question, answer, prompt, dec, row)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, template={self.template.name!r})"


class ShownRow:
    """One streamed correction's row and what it has shown: raw pieces go through the parser,
    the safe text comes out, and at the end the verdict (the original answer streamed instead when
    the correction was degenerate and nothing had been shown yet). ``run`` and ``arun`` are the
    one loop, iterated sync or async."""

    def __init__(self, corrector: Corrector, question: str, answer: str, prompt: str,
                 decoding: DecodingConfig, row: RowControl):
        self.corrector, self.question, self.answer = corrector, question, answer
        self.prompt, self.decoding, self.row = prompt, decoding, row
        guard = row.guard
        self.parser = StreamParser(guard.cut_markers if guard is not None else corrector.stop_markers)
        self.text = ""
        #: a replacement character the answer does not have was seen: nothing more is shown.
        self.held = False
        #: stage times measured outside the row (a batching server's ``queue``, ``batch_size``).
        self.timings: dict[str, float] = {}
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
        result.timings.update(self.timings)
        stream.result = result
        stream.correction = correction_of(self.question, self.answer, result, corrector=self.corrector,
                                          corrector_s=time.perf_counter() - self.t0)
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


def capped(decoding: DecodingConfig, rows: Sequence[RowControl]) -> DecodingConfig:
    """``decoding`` with ``max_new_tokens`` lowered to the rows' largest cap (when all have one)."""
    caps = [r.max_new_tokens for r in rows]
    if not caps or any(c is None for c in caps):
        return decoding
    top = max(caps)  # type: ignore[type-var]
    return replace(decoding, max_new_tokens=top) if top < decoding.max_new_tokens else decoding


def feed_pieces(row: RowControl, pieces: Iterator[str]) -> str:
    """Run a piece-by-piece generation for ``row``: deliver pieces to ``on_text``, stop (closing
    the source, e.g. an HTTP stream) on cancel or when the guard trips; the raw text."""
    raw = ""
    try:
        for piece in pieces:
            raw += piece
            row.steps += 1
            if row.on_text is not None:
                row.on_text(piece)
            if must_stop(row, raw):
                break
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
        _end(row)
    return raw


def must_stop(row: RowControl, raw: str) -> bool:
    """Whether a row streamed piece by piece stops after its text so far, ``raw`` (cancelled, or
    its guard tripped; ``stop_reason`` then says which): one verdict for every streaming backend."""
    guard: Guard | None = row.guard
    reason = "cancelled" if row.cancelled else (guard.check(raw[-guard.tail_chars:]) if guard is not None else None)
    if reason is None:
        return False
    row.stop_reason = reason
    return True
