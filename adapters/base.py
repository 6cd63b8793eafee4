"""The upstream contract: what an answering model is, with retries, timeouts and concurrency once.

A provider module implements ``_stream`` (streaming is the base case) and, where the provider has
a cheaper non-streamed call, ``_complete``; async twins default to running the sync ones in a
thread. It also maps its library's exceptions onto :class:`UpstreamError` in ``_to_error`` so the
one retry loop (:mod:`aligner.transport.retry`) can tell a 429 from a 400.
"""
from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Iterator, Sequence

from aligner.contracts.errors import ConfigError, UpstreamError, require_text
from aligner.transport.retry import (RateLimiter, RetryPolicy, UpstreamStats, aretry_call, aretry_stream,
                                     bare_message, generic_error, retry_call, retry_stream)
from aligner.contracts.streaming import iterate_in_thread

# The retry machinery lives in aligner.transport.retry; these names stay importable from here.
__all__ = ["Upstream", "OpenAIProtocolUpstream", "UpstreamReply", "Messages", "RetryPolicy", "RateLimiter",
           "UpstreamStats", "bare_message"]

Messages = list[dict[str, str]]


@dataclass
class UpstreamReply:
    """A whole upstream answer, not just its text: what a proxy needs to pass an answer on.

    Only upstreams that speak the OpenAI protocol fill ``tool_calls`` (OpenAI's list of
    ``{"id", "type", "function": {"name", "arguments"}}``) and ``usage`` (the upstream's own token
    counts); other upstreams give the text alone, with ``usage`` None.
    """

    text: str
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    #: the upstream sent ``content: null`` (a refusal, a content filter, a tool-call turn); ``text``
    #: is then ``""``, and a proxy passing the answer on sends null back, as it came.
    null_content: bool = False
    #: OpenAI's ``message.refusal``: the model's reason for declining, when it gives one.
    refusal: str | None = None

    @classmethod
    def from_openai(cls, reply: Any) -> "UpstreamReply":
        """From a chat completion: its JSON (a dict) or an SDK object with ``model_dump``
        (the ``openai`` SDK's ``ChatCompletion``, LiteLLM's ``ModelResponse``)."""
        data = reply if isinstance(reply, dict) else reply.model_dump()
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError(f"message.content is {type(content).__name__}, not text")
        calls = [_tool_call(c) for c in message.get("tool_calls") or []] or None
        usage = data.get("usage")
        usage = {k: v for k, v in usage.items() if v is not None} if isinstance(usage, dict) else None
        refusal = message.get("refusal")
        return cls(content or "", calls, choice.get("finish_reason"), usage or None, null_content=content is None,
                   refusal=refusal if isinstance(refusal, str) else None)


def _tool_call(call: Any) -> dict[str, Any]:
    """One tool call in OpenAI's shape, whatever extra keys a provider library adds."""
    if not isinstance(call, dict):
        raise TypeError(f"a tool call is {type(call).__name__}, not an object")
    fn = call.get("function") or {}
    return {"id": call.get("id"), "type": call.get("type") or "function",
            "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}


class Upstream(ABC):
    """An answering model. ``answer``/``stream``/``answer_batch`` and async twins are built here."""

    #: provider/model id, shown in logs and the server's ``aligner`` object.
    name: str = "upstream"
    #: True when the upstream speaks the OpenAI chat protocol: a proxy may pass a client's request
    #: fields (``tools``, ``response_format``, ``seed``, ...) straight to it.
    takes_openai_params: ClassVar[bool] = False
    #: True when the provider yields pieces as the model writes them (not one whole answer):
    #: a capability callers can read off the class, like ``takes_openai_params``.
    streams_natively: ClassVar[bool] = False
    #: a string spec starting with this names the provider (``"hf:"``, ``"myprovider:"``); the
    #: default ``matches``/``from_spec`` use it, so a plug-in often needs nothing else.
    spec_prefix: ClassVar[str | None] = None
    #: the order specs are tried in (see :mod:`aligner.contracts.registry`): higher first; catch-alls low.
    spec_priority: ClassVar[int] = 0
    #: whether retry warnings quote the upstream's error text (which may repeat the prompt); the
    #: server turns it off unless ``--log-prompts``.
    log_error_text: bool = True

    def __init__(self, *, retry: RetryPolicy | None = None, max_concurrency: int = 8,
                 system_prompt: str | None = None, params: dict[str, Any] | None = None,
                 on_retry: Callable[[int, UpstreamError, float], None] | None = None,
                 requests_per_minute: float | None = None):
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"must be a positive int, got {max_concurrency!r}.",
                              field="max_concurrency", fix="e.g. max_concurrency=8.")
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        #: every attempt (retries too) waits its turn here: the one requests-per-minute limit
        self.rate_limiter = RateLimiter(requests_per_minute) if requests_per_minute else None
        self.system_prompt = system_prompt
        self.params = dict(params or {})
        self.on_retry = on_retry
        self.stats = UpstreamStats()

    # -- how a spec names this provider (aligner.contracts.registry) -----------------------------------
    @classmethod
    def matches(cls, spec: Any) -> bool:
        """Whether ``spec`` (what a user passed as ``upstream``) names this provider."""
        return bool(cls.spec_prefix) and isinstance(spec, str) and spec.startswith(cls.spec_prefix)  # type: ignore[arg-type]

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "Upstream":
        """The upstream ``spec`` names; ``kw`` are Upstream options plus provider options. By
        default: the text after ``spec_prefix`` is the first argument, ``model`` the second."""
        if cls.spec_prefix and isinstance(spec, str):
            spec = spec[len(cls.spec_prefix):].strip()
            if not spec:
                raise ConfigError(f"{cls.spec_prefix!r} needs a name after it.", field="upstream",
                                  fix=f"e.g. upstream='{cls.spec_prefix}NAME'.")
        return cls(spec, **kw) if model is None else cls(spec, model, **kw)

    # -- provider primitives ---------------------------------------------------------------
    @abstractmethod
    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        """Text pieces of the answer to ``messages``."""

    def _complete(self, messages: Messages, **params: Any) -> str:
        return "".join(self._stream(messages, **params))

    async def _astream(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        async for piece in iterate_in_thread(lambda: self._stream(messages, **params)):
            yield piece

    async def _acomplete(self, messages: Messages, **params: Any) -> str:
        return await asyncio.to_thread(self._complete, messages, **params)

    def _complete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        """The whole reply; OpenAI-protocol upstreams override it to keep tool calls and usage."""
        return UpstreamReply(self._complete(messages, **params))

    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        return UpstreamReply(await self._acomplete(messages, **params))

    def _to_error(self, exc: BaseException) -> UpstreamError:
        """Map a provider exception onto an UpstreamError (status, retryable). Extend per provider."""
        return generic_error(exc, self.retry)

    # -- built once ------------------------------------------------------------------------
    def messages(self, question: "str | Messages") -> Messages:
        """Chat messages for a question (a list of messages is passed through)."""
        if isinstance(question, list):
            if not question or not all(isinstance(m, dict) and "content" in m for m in question):
                raise ConfigError("a message list must be non-empty dicts with 'role' and 'content'.",
                                  field="question", fix="pass a string or [{'role': 'user', 'content': ...}].")
            return question
        require_text(question, "question")
        msgs: Messages = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        msgs.append({"role": "user", "content": question})
        return msgs

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {**self.params, **overrides}

    def _begin_call(self, question: "str | Messages", params: dict[str, Any]) -> tuple[Messages, dict[str, Any]]:
        """The messages and merged parameters of one call, counted in ``stats.calls``."""
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return msgs, merged

    def _retried(self, question: "str | Messages", params: dict[str, Any], primitive: Callable[..., Any]) -> Any:
        """``primitive(messages, **params)`` under the retry policy."""
        msgs, merged = self._begin_call(question, params)
        return retry_call(self, lambda: primitive(msgs, **merged))

    async def _aretried(self, question: "str | Messages", params: dict[str, Any],
                        primitive: Callable[..., Awaitable[Any]]) -> Any:
        msgs, merged = self._begin_call(question, params)
        return await aretry_call(self, lambda: primitive(msgs, **merged))

    def answer(self, question: "str | Messages", **params: Any) -> str:
        return self._retried(question, params, self._complete)

    async def aanswer(self, question: "str | Messages", **params: Any) -> str:
        return await self._aretried(question, params, self._acomplete)

    def complete(self, question: "str | Messages", **params: Any) -> UpstreamReply:
        """Like ``answer``, with tool calls, finish reason and usage beside the text."""
        return self._retried(question, params, self._complete_reply)

    async def acomplete(self, question: "str | Messages", **params: Any) -> UpstreamReply:
        return await self._aretried(question, params, self._acomplete_reply)

    def stream(self, question: "str | Messages", **params: Any) -> Iterator[str]:
        """Answer pieces; a failure before the first piece is retried, after it is raised."""
        msgs, merged = self._begin_call(question, params)
        return retry_stream(self, lambda: self._stream(msgs, **merged))

    def astream(self, question: "str | Messages", **params: Any) -> AsyncIterator[str]:
        msgs, merged = self._begin_call(question, params)
        return aretry_stream(self, lambda: self._astream(msgs, **merged))

    def answer_batch(self, questions: Sequence["str | Messages"], **params: Any) -> list[str]:
        """Answers in input order, at most ``max_concurrency`` requests in flight."""
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(questions)))) as pool:
            return list(pool.map(lambda q: self.answer(q, **params), questions))

    async def aanswer_batch(self, questions: Sequence["str | Messages"], **params: Any) -> list[str]:
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(q: "str | Messages") -> str:
            async with gate:
                return await self.aanswer(q, **params)

        return list(await asyncio.gather(*(one(q) for q in questions)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class OpenAIProtocolUpstream(Upstream):
    """An upstream that speaks the OpenAI chat protocol (the official SDK, LiteLLM, any compatible
    server): a client's request fields pass straight to it, it streams as the model writes, and its
    whole reply is the base case — ``_complete_reply`` and ``_acomplete_reply`` keep tool calls and
    usage, and the plain answers are their text."""

    takes_openai_params = True
    streams_natively = True

    @abstractmethod
    def _complete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        """The provider's non-streamed chat completion."""

    @abstractmethod
    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        """The provider's non-streamed chat completion, awaited."""

    def _complete(self, messages: Messages, **params: Any) -> str:
        return self._complete_reply(messages, **params).text

    async def _acomplete(self, messages: Messages, **params: Any) -> str:
        return (await self._acomplete_reply(messages, **params)).text
