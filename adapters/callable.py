"""A plain Python function as the upstream: sync, async, generator or async generator.

The function receives the question text (the last user message) and returns the answer, or yields
it in pieces (then it streams). Whatever kind it is, every call style works: a sync ``answer`` of
an ``async def`` runs it on a fresh event loop in a worker thread (so it also works inside Jupyter's
running loop), and an async call of a blocking function runs it in a thread so the loop stays free.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, AsyncIterator, Callable, Iterator

from aligner.adapters.base import Messages, Upstream
from aligner.contracts.errors import ConfigError, UpstreamError
from aligner.contracts.registry import register_upstream
from aligner.contracts.streaming import drive_async, iterate_in_thread


def _is_async(fn: Any) -> bool:
    call = getattr(fn, "__call__", None)
    return any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (fn, call) if f)


def question_text(messages: Messages) -> str:
    """The last user message's text: what a ``str -> str`` function is asked."""
    for m in reversed(messages):
        if m.get("role", "user") == "user":
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return str(messages[-1].get("content", ""))


@register_upstream
class CallableUpstream(Upstream):
    """Wraps ``fn(question) -> str`` (or an awaitable / iterator / async iterator of pieces)."""

    #: any callable no other provider claims (a transformers model is callable too): tried last.
    spec_priority = -100

    @classmethod
    def matches(cls, spec: Any) -> bool:
        return callable(spec)

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "CallableUpstream":
        return cls(spec, **kw)

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, **kw: Any):
        if not callable(fn):
            raise ConfigError(f"expected a function, got {type(fn).__name__}.", field="upstream",
                              fix="pass a function taking the question string and returning the answer.")
        super().__init__(**kw)
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__

    def _bad(self, value: Any) -> UpstreamError:
        return UpstreamError(f"the upstream function {self.name} returned {type(value).__name__}, not text.",
                             fix="return a str, or yield str pieces.")

    # -- sync -----------------------------------------------------------------------------
    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        result = self.fn(question_text(messages), **params)
        if inspect.isawaitable(result) or hasattr(result, "__aiter__"):
            yield from _drive_async(result)
            return
        yield from self._pieces(result)

    def _pieces(self, result: Any) -> Iterator[str]:
        if isinstance(result, str):
            yield result
            return
        if isinstance(result, Iterator) or inspect.isgenerator(result):
            for piece in result:
                if not isinstance(piece, str):
                    raise self._bad(piece)
                yield piece
            return
        raise self._bad(result)

    # -- async ----------------------------------------------------------------------------
    async def _astream(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        q = question_text(messages)
        if _is_async(self.fn):
            result = self.fn(q, **params)
        else:  # a blocking function must not stall the event loop
            result = await asyncio.to_thread(self.fn, q, **params)
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            async for piece in result:
                if not isinstance(piece, str):
                    raise self._bad(piece)
                yield piece
            return
        if isinstance(result, str):
            yield result
            return
        async for piece in iterate_in_thread(lambda: self._pieces(result)):
            yield piece

    async def _acomplete(self, messages: Messages, **params: Any) -> str:
        return "".join([p async for p in self._astream(messages, **params)])


def _drive_async(result: Any) -> Iterator[str]:
    """The text pieces of a coroutine or async iterator, consumed from sync code (the bridge)."""
    for item in drive_async(result):
        if not isinstance(item, str):
            raise UpstreamError(f"the upstream function returned {type(item).__name__}, not text.",
                                fix="return a str, or yield str pieces.")
        yield item
