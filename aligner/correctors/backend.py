"""The decoding backend contract: the few methods that turn rendered prompts into raw text.

Two layers, so that what wraps a backend (the server's :class:`~aligner.serve.batching.DynamicBatcher`)
wraps only what it changes:

- :class:`RowDecoder` runs rows: ``generate_rows`` (a batch of rendered prompts, each with its
  :class:`~aligner.contracts.rows.RowControl` — cancel handle, per-row cap, guard, streaming sink; blocking)
  and ``stream_row`` (one row's raw pieces), with async twins. Only ``generate_rows`` is required.
- :class:`Backend` is a row decoder that also knows its prompts' limits: ``fit`` (make a prompt
  fit the context), ``prompt_fits`` (whether a rendered prompt fits whole), ``answer_tokens``
  (count an answer's tokens for the new-token cap), ``usage``
  (count a prompt's and a correction's tokens) and ``eos_token``. Each has a default for a
  backend without a tokenizer.

A backend implements ``generate_rows`` — local models do, so a cancelled or runaway row stops
within a decoding step — or, more simply, the two plain primitives ``generate`` (a batch, in
order) and ``stream_prompt`` (one prompt's pieces), from which the rows are built here (a streaming
row is checked after every piece, the others are judged when done). The prompt, parsing and
guard pipeline on top (:class:`~aligner.correctors.base.Corrector`) is the same for every backend.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC
from dataclasses import replace
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError
from ..contracts.rows import RowControl, iterate_row
from ..contracts.rows import notify_end as _end  # one "row finished" notice for every backend
from ..contracts.streaming import iterate_in_thread
from ..contracts.templates import STOP_MARKERS
from ..runtime.guard import Guard

log = logging.getLogger("aligner")


class RowDecoder(ABC):
    """Runs rows of rendered prompts: what a backend decodes, and what a batcher schedules."""

    #: whether results decoded here carry the corrector's token ``usage`` (a server's batcher
    #: turns it on: its clients read ``aligner.usage``).
    reports_usage: bool = False

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """Raw text per prompt, in order, honouring each row as well as the backend can
        (blocking): a cancelled row stops, a row stops at its cap (``max_new_tokens``) and when
        its guard trips, a row with ``on_text`` streams its text; ``stop_reason`` says why it
        ended and ``on_end`` is called once it has."""
        raise NotImplementedError

    def stream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> Iterator[str]:
        """Raw pieces of one guarded row (generated in a worker thread); leaving early cancels it."""
        return iterate_row(row, lambda: self.generate_rows([prompt], decoding, [row]))

    async def agenerate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                             rows: Sequence[RowControl]) -> list[str]:
        """``generate_rows`` for async callers; by default in a worker thread, so the loop stays free."""
        return await asyncio.to_thread(self.generate_rows, list(prompts), decoding, list(rows))

    async def astream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> AsyncIterator[str]:
        """Raw pieces of one guarded row for async callers: this default drives ``stream_row`` in
        a worker thread and cancels the row when the consumer stops early."""
        finished = False
        try:
            async for piece in iterate_in_thread(lambda: self.stream_row(prompt, decoding, row)):
                yield piece
            finished = True
        finally:
            if not finished:
                row.cancel()


class Backend(RowDecoder):
    """A decoding backend: rows (:class:`RowDecoder`) and its prompts' limits. Implement
    ``generate_rows``, or ``generate`` and ``stream_prompt``; the rest have defaults."""

    #: a short id shown in logs, the server's ``aligner`` object and the CLI (a path or hub id).
    name: str = "corrector"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Backend":
        rows = cls.generate_rows is not Backend.generate_rows
        plain = cls.generate is not Backend.generate and cls.stream_prompt is not Backend.stream_prompt
        if not (rows or plain):
            raise TypeError(f"Can't instantiate {cls.__name__}: a corrector backend implements "
                            "generate_rows(prompts, decoding, rows), or generate(prompts, decoding) and "
                            "stream_prompt(prompt, decoding).")
        return super().__new__(cls)

    # -- the plain primitives (a simple backend implements these two instead of generate_rows) ----
    def generate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        """Raw generated text for each rendered prompt, in input order."""
        return self.generate_rows(prompts, decoding, [RowControl() for _ in prompts])

    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        """Raw generated text pieces for one rendered prompt."""
        return self.stream_row(prompt, decoding, RowControl())

    async def agenerate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        """Async batch; local models run in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.generate, list(prompts), decoding)

    async def astream_prompt(self, prompt: str, decoding: DecodingConfig) -> AsyncIterator[str]:
        async for piece in iterate_in_thread(lambda: self.stream_prompt(prompt, decoding)):
            yield piece

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """Raw text per prompt, honouring each row as well as the backend can (blocking).

        This default runs on the two plain primitives: a streaming row (``on_text``) streams and
        is checked after every piece (cancel, guard); the others go in one ``generate`` call
        capped at the largest row cap and are judged when done. Backends that decode step by step
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

    # -- the prompts' limits -----------------------------------------------------------------
    @property
    def eos_token(self) -> str | None:
        return None

    @property
    def stop_markers(self) -> tuple[str, ...]:
        """Where a generation has gone past the correction: EOS written out, or a new turn."""
        return (*STOP_MARKERS, *((self.eos_token,) if self.eos_token else ()))

    def fit(self, question: str, answer: str, *, aspects: str | None = None) -> tuple[str, str]:
        """Make the prompt (with its ``aspects`` text, when the template has one) fit the
        corrector's context; the default backend has no limit."""
        return question, answer

    def prompt_fits(self, prompt: str) -> bool:
        """Whether a rendered prompt fits the corrector's input budget (how a conversation is cut
        to it, :mod:`aligner.contracts.conversation`); the default backend has no limit."""
        return True

    def answer_tokens(self, answer: str) -> int:
        """The answer's length in the corrector's tokens, for the new-token cap. Without a
        tokenizer its UTF-8 byte count stands in: never fewer than a byte-level tokenizer's
        tokens, so the cap errs long."""
        return len(answer.encode("utf-8", "replace"))

    def usage(self, prompt: str, completion: str) -> dict[str, int] | None:
        """The corrector's own tokens — the prompt it was given (after ``fit``) and the
        correction — for a backend with a local tokenizer; None for one without (a remote one)."""
        return None


class TokenBudget:
    """What a backend with a tokenizer knows to fit a prompt in its context (:func:`fit_answer`):
    ``budget`` tokens the prompt may take, the whole ``context`` (for the message), the most
    characters one token can stand for, and three tokenizer calls."""

    def __init__(self, *, budget: int, context: int, max_token_chars: int, prompt_tokens: Callable[[str], int],
                 answer_ids: Callable[[str], list[int]], text_of: Callable[[list[int]], str]):
        self.budget, self.context, self.max_token_chars = budget, context, max(1, max_token_chars)
        self.prompt_tokens, self.answer_ids, self.text_of = prompt_tokens, answer_ids, text_of


def fit_answer(template: Any, question: str, answer: str, limits: TokenBudget, *,
               aspects: str | None = None) -> tuple[str, bool]:
    """The answer, its head kept, so that the rendered prompt (with its ``aspects`` text, when the
    template has one) takes at most ``limits.budget`` tokens; and whether it was cut (logged once
    as a warning, logger ``aligner``: Python prints it on stderr even where logging is not
    configured). Only a head of the answer that surely holds more tokens than fit is tokenised, so
    a 5 MB answer costs what a context-sized one does."""
    budget = limits.budget
    limit = (budget + 64) * limits.max_token_chars  # chars that hold more than budget + 64 tokens
    head = answer if len(answer) <= limit else answer[:limit]
    prompt_tokens = limits.prompt_tokens(template.render(question, head, aspects=aspects or "x"))
    if head is answer and prompt_tokens <= budget:
        return answer, False
    answer_ids = limits.answer_ids(head)
    overhead = prompt_tokens - len(answer_ids)
    keep = budget - overhead
    if keep < 1:
        raise ConfigError(f"the question alone takes {overhead} tokens, more than the corrector's "
                          f"input budget of {budget} tokens.", field="question",
                          fix="shorten the question or use a corrector with a longer context.")
    was = f"{len(answer_ids)}" if head is answer else f"more than {len(answer_ids)} ({len(answer):,} characters)"
    log.warning("answer truncated from %s to %d tokens to fit the corrector's context (%d tokens); only the "
                "kept part is corrected.", was, keep, limits.context)
    return limits.text_of(answer_ids[:keep]), True


def fits_budget(prompt: str, limits: TokenBudget) -> bool:
    """Whether a rendered prompt takes at most ``limits.budget`` tokens (``prompt_fits`` of a
    backend with a tokenizer); one surely over by its length is not tokenised."""
    if len(prompt) > (limits.budget + 64) * limits.max_token_chars:
        return False
    return limits.prompt_tokens(prompt) <= limits.budget


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
