"""The corrector contract: render the template, generate, parse — batch, stream and async once.

A backend implements two primitives over *rendered prompts*: ``generate`` (a batch, in order) and
``stream_prompt`` (one prompt, raw text pieces). Everything a user calls — ``correct``,
``correct_batch``, ``stream`` and their async twins — is built here, so every backend parses,
truncates and streams identically (and the sync/async/stream parity tests hold for all of them).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping, Sequence

from ..decoding import DecodingConfig
from ..errors import require_text
from ..templates import STOP_MARKERS, Template, cut_at_stop, get_template

log = logging.getLogger("aligner")


class StreamParser:
    """Turns raw generated pieces into text that is safe to show as it arrives.

    Cuts at the first stop string and holds back anything that could still turn out to be one (or
    trailing whitespace), so the concatenation of what it emits equals the whole text cut at its
    first stop and stripped. Correctors and local upstreams both stream through it, which is what
    makes streamed and non-streamed output identical.
    """

    def __init__(self, stops: Iterable[str]):
        self.markers = tuple(m for m in stops if m)
        self.raw = ""
        self.emitted = ""
        self.stopped = False

    def _held_back(self, text: str) -> int:
        longest = 0
        for m in self.markers:
            for k in range(min(len(m) - 1, len(text)), 0, -1):
                if text.endswith(m[:k]):
                    longest = max(longest, k)
                    break
        return longest

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.raw += piece
        cut = cut_at_stop(self.raw, self.markers)
        if len(cut) < len(self.raw):
            self.stopped = True
            return self._emit(cut.strip())
        hold = self._held_back(cut)
        return self._emit((cut[: len(cut) - hold] if hold else cut).strip())

    def finish(self) -> str:
        return self._emit(cut_at_stop(self.raw, self.markers).strip())

    def complete(self, text: str) -> str:
        """The whole text at once, through the same rules as a stream."""
        return self.feed(text) + self.finish()

    def parse(self, pieces: Iterable[str]) -> Iterator[str]:
        """Feed ``pieces`` through, yielding the safe text, until a stop marker or the end."""
        for piece in pieces:
            out = self.feed(piece)
            if out:
                yield out
            if self.stopped:
                return
        tail = self.finish()
        if tail:
            yield tail

    async def aparse(self, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        async for piece in pieces:
            out = self.feed(piece)
            if out:
                yield out
            if self.stopped:
                return
        tail = self.finish()
        if tail:
            yield tail

    def _emit(self, safe: str) -> str:
        if not safe.startswith(self.emitted) or len(safe) <= len(self.emitted):
            return ""
        new = safe[len(self.emitted):]
        self.emitted = safe
        return new


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
        async for piece in _iterate_in_thread(lambda: self.stream_prompt(prompt, decoding)):
            yield piece

    @property
    def eos_token(self) -> str | None:
        return None

    @property
    def stop_markers(self) -> tuple[str, ...]:
        """Where a generation has gone past the correction: EOS written out, or a new turn."""
        return (*STOP_MARKERS, *((self.eos_token,) if self.eos_token else ()))

    def fit(self, question: str, answer: str) -> tuple[str, str]:
        """Make the prompt fit the corrector's context; the default backend has no limit."""
        return question, answer

    # -- built once ------------------------------------------------------------------------
    def render(self, question: str, answer: str, *, aspects: str | None = None) -> str:
        require_text(question, "question")
        if not isinstance(answer, str):
            require_text(answer, "answer")
        question, answer = self.fit(question, answer)
        return self.template.render(question, answer, aspects=aspects)

    def _decoding(self, overrides: "DecodingConfig | Mapping[str, Any] | None") -> DecodingConfig:
        if overrides is None:
            return self.decoding
        return DecodingConfig.from_any(overrides, self.decoding.to_dict())

    def parse(self, raw: str) -> str:
        return self.template.parse(raw, eos_token=self.eos_token)

    def correct(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> str:
        return self.correct_batch([(question, answer)], aspects=aspects, decoding=decoding)[0]

    def correct_batch(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                      decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[str]:
        prompts = [self.render(q, a, aspects=aspects) for q, a in pairs]
        return [self.parse(t) for t in self.generate(prompts, self._decoding(decoding))]

    async def acorrect(self, question: str, answer: str, *, aspects: str | None = None,
                       decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> str:
        return (await self.acorrect_batch([(question, answer)], aspects=aspects, decoding=decoding))[0]

    async def acorrect_batch(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                             decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> list[str]:
        prompts = [self.render(q, a, aspects=aspects) for q, a in pairs]
        return [self.parse(t) for t in await self.agenerate(prompts, self._decoding(decoding))]

    def stream(self, question: str, answer: str, *, aspects: str | None = None,
               decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> Iterator[str]:
        yield from StreamParser(self.stop_markers).parse(
            self.stream_prompt(self.render(question, answer, aspects=aspects), self._decoding(decoding)))

    async def astream(self, question: str, answer: str, *, aspects: str | None = None,
                      decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> AsyncIterator[str]:
        pieces = self.astream_prompt(self.render(question, answer, aspects=aspects), self._decoding(decoding))
        async for out in StreamParser(self.stop_markers).aparse(pieces):
            yield out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, template={self.template.name!r})"


_DONE = object()


async def _iterate_in_thread(make_iter: Any) -> AsyncIterator[Any]:
    """Drive a blocking iterator in a thread and yield its items on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def pump() -> None:
        try:
            for item in make_iter():
                loop.call_soon_threadsafe(queue.put_nowait, (item, None))
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, (_DONE, exc))
            return
        loop.call_soon_threadsafe(queue.put_nowait, (_DONE, None))

    threading.Thread(target=pump, daemon=True).start()
    while True:
        item, exc = await queue.get()
        if item is _DONE:
            if exc is not None:
                raise exc
            return
        yield item
