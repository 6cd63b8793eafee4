"""The upstream contract: what an answering model is, with retries, timeouts and concurrency once.

A provider module implements ``_stream`` (streaming is the base case) and, where the provider has
a cheaper non-streamed call, ``_complete``; async twins default to running the sync ones in a
thread. It also maps its library's exceptions onto :class:`UpstreamError` in ``_to_error`` so the
one retry loop here can tell a 429 from a 400. Nothing else about retries lives anywhere else.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Iterator, Protocol, Sequence, TypeVar

from aligner.errors import AlignerError, ConfigError, UpstreamError, UpstreamTimeout, hide_cause, require_text
from aligner.transport.streaming import iterate_in_thread

log = logging.getLogger("aligner.upstream")
T = TypeVar("T")
Messages = list[dict[str, str]]


@dataclass
class RetryPolicy:
    """Exponential back-off on rate limits, server errors, connection errors and timeouts."""

    max_retries: int = 4
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.1
    #: seconds one attempt may take before it counts as a timeout (None: wait for ever).
    timeout: float | None = 120.0
    retry_on_status: tuple[int, ...] = (408, 409, 429, 500, 502, 503, 504)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (1-based); honours Retry-After."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        if retry_after is not None:
            base = min(self.max_backoff, max(base, retry_after))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class RateLimiter:
    """At most ``per_minute`` request starts in any 60 s window, spread evenly (one every
    ``60/per_minute`` s), shared by threads and event loops alike: a provider's requests-per-minute
    quota is one number for the whole process, whichever way the calls are made."""

    def __init__(self, per_minute: float):
        if isinstance(per_minute, bool) or not isinstance(per_minute, (int, float)) or not per_minute > 0 \
                or per_minute == float("inf"):
            raise ConfigError(f"must be a positive number, got {per_minute!r}.", field="requests_per_minute",
                              fix="e.g. requests_per_minute=600 (or leave it out for no limit).")
        self.per_minute = float(per_minute)
        self.interval = 60.0 / self.per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Book the next free start time; returns the seconds to wait for it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            return start - now

    def wait(self) -> None:
        delay = self._reserve()
        if delay > 0:
            time.sleep(delay)

    async def await_turn(self) -> None:
        delay = self._reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def _throttle(host: Any) -> None:
    limiter = getattr(host, "rate_limiter", None)
    if limiter is not None:
        limiter.wait()


async def _athrottle(host: Any) -> None:
    limiter = getattr(host, "rate_limiter", None)
    if limiter is not None:
        await limiter.await_turn()


@dataclass
class UpstreamStats:
    """Counters a user (or a test) can read to see what the retry loop did.

    ``retry_log`` keeps only the latest ``RETRY_LOG_SIZE`` retries: a server runs for weeks, and a
    list that grows by one line per retry would grow for ever.
    """

    RETRY_LOG_SIZE: ClassVar[int] = 100

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    retry_log: "deque[str]" = field(default_factory=lambda: deque(maxlen=UpstreamStats.RETRY_LOG_SIZE))


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

    @classmethod
    def from_openai(cls, reply: Any) -> "UpstreamReply":
        """From a chat completion: its JSON (a dict) or an SDK object with ``model_dump``
        (the ``openai`` SDK's ``ChatCompletion``, LiteLLM's ``ModelResponse``)."""
        data = reply if isinstance(reply, dict) else reply.model_dump()
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message.content is {type(text).__name__}, not text")
        calls = [_tool_call(c) for c in message.get("tool_calls") or []] or None
        usage = data.get("usage")
        usage = {k: v for k, v in usage.items() if v is not None} if isinstance(usage, dict) else None
        return cls(text, calls, choice.get("finish_reason"), usage or None)


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
        return _generic_error(exc, self.retry)

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

    def answer(self, question: "str | Messages", **params: Any) -> str:
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return retry_call(self, lambda: self._complete(msgs, **merged))

    async def aanswer(self, question: "str | Messages", **params: Any) -> str:
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return await aretry_call(self, lambda: self._acomplete(msgs, **merged))

    def complete(self, question: "str | Messages", **params: Any) -> UpstreamReply:
        """Like ``answer``, with tool calls, finish reason and usage beside the text."""
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return retry_call(self, lambda: self._complete_reply(msgs, **merged))

    async def acomplete(self, question: "str | Messages", **params: Any) -> UpstreamReply:
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return await aretry_call(self, lambda: self._acomplete_reply(msgs, **merged))

    def stream(self, question: "str | Messages", **params: Any) -> Iterator[str]:
        """Answer pieces; a failure before the first piece is retried, after it is raised."""
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
        return retry_stream(self, lambda: self._stream(msgs, **merged))

    def astream(self, question: "str | Messages", **params: Any) -> AsyncIterator[str]:
        msgs, merged = self.messages(question), self._params(params)
        self.stats.calls += 1
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


class RetryHost(Protocol):
    """What the retry loop needs from its owner: an Upstream, or a remote corrector."""

    name: str
    retry: RetryPolicy
    stats: UpstreamStats
    on_retry: Callable[[int, UpstreamError, float], None] | None

    def _to_error(self, exc: BaseException) -> UpstreamError: ...


def bare_message(err: AlignerError) -> str:
    """An error's message without its ``field:`` prefix and ``Fix:`` suffix, to wrap it in another."""
    text = str(err)
    if err.field:
        text = text.removeprefix(f"{err.field}: ")
    if err.fix:
        text = text.removesuffix(f" Fix: {err.fix}")
    return text


def retry_fail(host: RetryHost, attempt: int, exc: BaseException) -> float:
    """Classify a failure; return the back-off before the next try or raise the final error.

    A user error (``ConfigError`` and friends) raised inside an attempt is re-raised as it is: it
    names the argument to fix, and retrying it cannot help.
    """
    if isinstance(exc, AlignerError) and not isinstance(exc, UpstreamError):
        host.stats.failures += 1
        raise exc
    err = exc if isinstance(exc, UpstreamError) else host._to_error(exc)
    if isinstance(err, UpstreamError) and err is not exc:
        hide_cause(err, exc)  # the message says it; httpx's 40-line chain would bury it
    if not err.retryable or attempt > host.retry.max_retries:
        host.stats.failures += 1
        if err.retryable:
            cls = UpstreamTimeout if isinstance(err, UpstreamTimeout) else UpstreamError
            raise hide_cause(cls(f"{host.name} still failing after {attempt} attempts: {bare_message(err)}",
                      status=err.status, field=err.field, retry_after=err.retry_after,
                      fix=err.fix or "check the upstream server, or raise RetryPolicy.max_retries / timeout."), exc)
        raise err
    wait = host.retry.delay(attempt, err.retry_after)
    host.stats.retries += 1
    host.stats.retry_log.append(f"attempt {attempt}: {err.status or type(exc).__name__}; waiting {wait:.2f}s")
    # An upstream's error text may quote the request (a "prompt too long: ..." echo): the server
    # keeps it out of its log unless prompts may be logged.
    detail = str(err) if getattr(host, "log_error_text", True) else \
        f"{type(exc).__name__}, status {err.status}; error text not logged, it may quote the prompt"
    log.warning("%s: attempt %d failed (%s); retrying in %.2fs", host.name, attempt, detail, wait)
    if host.on_retry:
        host.on_retry(attempt, err, wait)
    return wait


def retry_call(host: RetryHost, fn: Callable[[], T]) -> T:
    """``fn()`` under the host's retry policy (the sync timeout is the provider's request timeout)."""
    attempt = 0
    while True:
        attempt += 1
        host.stats.attempts += 1
        _throttle(host)
        try:
            return fn()
        except Exception as exc:  # classified by retry_fail
            time.sleep(retry_fail(host, attempt, exc))


async def aretry_call(host: RetryHost, fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()`` under the retry policy; each attempt is bounded by ``retry.timeout``."""
    attempt = 0
    while True:
        attempt += 1
        host.stats.attempts += 1
        await _athrottle(host)
        try:
            if host.retry.timeout is not None:
                return await asyncio.wait_for(fn(), host.retry.timeout)
            return await fn()
        except Exception as exc:
            await asyncio.sleep(retry_fail(host, attempt, exc))


def _final(host: RetryHost, exc: Exception) -> UpstreamError:
    host.stats.failures += 1
    return exc if isinstance(exc, UpstreamError) else host._to_error(exc)


def retry_stream(host: RetryHost, make_iter: Callable[[], Iterator[T]]) -> Iterator[T]:
    """Items of ``make_iter()``; a failure before the first item is retried, after it is raised."""
    attempt = 0
    while True:
        attempt += 1
        host.stats.attempts += 1
        started = False
        _throttle(host)
        try:
            for piece in make_iter():
                started = True
                yield piece
            return
        except Exception as exc:
            if started:
                raise hide_cause(_final(host, exc), exc)
            time.sleep(retry_fail(host, attempt, exc))


async def aretry_stream(host: RetryHost, make_iter: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
    attempt = 0
    while True:
        attempt += 1
        host.stats.attempts += 1
        started = False
        await _athrottle(host)
        try:
            async for piece in make_iter():
                started = True
                yield piece
            return
        except Exception as exc:
            if started:
                raise hide_cause(_final(host, exc), exc)
            await asyncio.sleep(retry_fail(host, attempt, exc))


def _generic_error(exc: BaseException, policy: RetryPolicy) -> UpstreamError:
    """Classify errors any provider can raise: httpx transport errors, timeouts, HTTP statuses."""
    import httpx

    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return UpstreamTimeout(f"timed out after {policy.timeout}s ({type(exc).__name__}).", status=504,
                               retryable=True, fix="raise RetryPolicy.timeout or check the upstream.")
    if isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
        return UpstreamError(f"cannot reach the upstream ({type(exc).__name__}: {exc}).", status=502,
                             retryable=True, fix="check the URL/host and that the server is running.")
    if isinstance(status, int):
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        return UpstreamError(f"HTTP {status}: {str(exc)[:300]}", status=status,
                             retryable=status in policy.retry_on_status, retry_after=retry_after_of(headers),
                             fix=_STATUS_FIX.get(status, "see the upstream's error message."))
    return UpstreamError(f"{type(exc).__name__}: {exc}", retryable=False)


def retry_after_of(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds form; an HTTP date counts as absent)."""
    try:
        value = float(headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


_STATUS_FIX = {
    400: "the upstream rejected the request; check the model name and parameters.",
    401: "check the API key (env var or api_key=).",
    403: "the API key lacks access to this model.",
    404: "check the model name (upstream_model) and the base URL (it usually ends in /v1).",
    429: "rate limited; lower max_concurrency or raise RetryPolicy.max_retries.",
}
