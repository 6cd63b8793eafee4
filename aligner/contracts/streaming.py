"""Streams both contracts share: the stop-aware stream parser and the one sync<->async bridge.

Correctors and upstreams both stream, from blocking code (a transformers ``generate`` loop, a
generator function, an HTTP response read with ``httpx``) and from coroutines (an ``async def``
upstream function, ``openai.AsyncOpenAI``). Whichever side blocks, the bridge is the same: a daemon
worker thread runs the producer and posts each item to the consumer, a :class:`queue.Queue` for a
sync consumer or the event loop for an async one, then posts the end (or the error, re-raised in
the consumer). :func:`iterate_in_thread` (blocking iterator -> ``async for``), :func:`drive_async`
(coroutine / async iterator -> ``for``) and :func:`items_from_thread` (a producer pushing to a
callback -> ``for``) are that one bridge seen from each side.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

from aligner.contracts.templates import cut_at_stop

__all__ = ["StreamParser", "iterate_in_thread", "drive_async", "items_from_thread", "END"]

#: a producer: called in the worker thread with ``emit``, it calls ``emit(item)`` per item and
#: returns when done (or raises, and the consumer sees the error).
Producer = Callable[[Callable[[Any], None]], Any]

_DONE = object()
#: emit this to end an :func:`items_from_thread` stream before the producer returns.
END = object()


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

    def _emit(self, safe: str) -> str:
        if not safe.startswith(self.emitted) or len(safe) <= len(self.emitted):
            return ""
        new = safe[len(self.emitted):]
        self.emitted = safe
        return new


# -- the bridge -------------------------------------------------------------------------------
def _start(produce: Producer, post: Callable[[tuple[Any, BaseException | None]], None], name: str) -> threading.Thread:
    """Run ``produce`` in a daemon thread; every item, then the end or the error, goes to ``post``."""

    def run() -> None:
        try:
            produce(lambda item: post((item, None)))
        except BaseException as exc:  # re-raised in the consumer
            post((_DONE, exc))
            return
        post((_DONE, None))

    worker = threading.Thread(target=run, daemon=True, name=name)
    worker.start()
    return worker


def items_from_thread(produce: Producer, *, on_abandon: Callable[[], None] | None = None,
                      name: str = "aligner-stream") -> Iterator[Any]:
    """The items ``produce(emit)`` emits from a worker thread, for a blocking consumer.

    A producer may also end the stream early by emitting :data:`END` (a row's "finished" notice
    comes before its batch returns); the worker is still joined, so its error is never lost. A
    consumer that leaves before the end calls ``on_abandon`` (e.g. cancels the generation) first.
    """
    box: "queue.Queue[tuple[Any, BaseException | None]]" = queue.Queue()
    errors: list[BaseException] = []

    def post(entry: tuple[Any, BaseException | None]) -> None:
        if entry[0] is _DONE and entry[1] is not None:
            errors.append(entry[1])
        box.put(entry)

    worker = _start(produce, post, name)
    finished = False
    try:
        while True:
            item, exc = box.get()
            if item is _DONE or item is END:
                break
            yield item
        finished = True
    finally:
        if not finished and on_abandon is not None:
            on_abandon()
    worker.join()
    if errors:
        raise errors[0]


async def iterate_in_thread(make_iter: Callable[[], Iterable[Any]]) -> AsyncIterator[Any]:
    """Drive a blocking iterator in a thread and yield its items on the event loop."""
    loop = asyncio.get_running_loop()
    box: asyncio.Queue = asyncio.Queue()

    def post(entry: tuple[Any, BaseException | None]) -> None:
        try:
            loop.call_soon_threadsafe(box.put_nowait, entry)
        except RuntimeError:  # the loop has closed: its consumer is gone, nothing to tell
            pass

    def produce(emit: Callable[[Any], None]) -> None:
        for item in make_iter():
            emit(item)

    _start(produce, post, "aligner-async-bridge")
    while True:
        item, exc = await box.get()
        if item is _DONE:
            if exc is not None:
                raise exc
            return
        yield item


def drive_async(result: Any) -> Iterator[Any]:
    """Consume a coroutine (its one value) or an async iterator (its items) from sync code, on a
    fresh event loop in a worker thread: works even where the caller's thread already runs a loop
    (Jupyter), which ``asyncio.run`` in the caller's thread would refuse."""

    async def consume(emit: Callable[[Any], None]) -> None:
        if hasattr(result, "__aiter__"):
            async for item in result:
                emit(item)
        else:
            emit(await result)

    return items_from_thread(lambda emit: asyncio.run(consume(emit)), name="aligner-callable")
