"""Retries, back-off and rate limits: the one loop every remote call runs in.

An upstream (``aligner.adapters``) and a remote corrector (``aligner.correctors.remote``) are both
a :class:`RetryHost`: they carry a :class:`RetryPolicy`, :class:`UpstreamStats` and a
``_to_error`` that maps their library's exceptions onto :class:`~aligner.contracts.errors.UpstreamError`, so
this loop can tell a 429 (wait, honouring ``Retry-After``, and retry) from a 400 (raise now).
Nothing else about retries lives anywhere else.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Iterator, Protocol, TypeVar

from aligner.contracts.errors import AlignerError, ConfigError, UpstreamError, UpstreamTimeout, hide_cause

log = logging.getLogger("aligner.upstream")
T = TypeVar("T")


@dataclass
class RetryPolicy:
    """Exponential back-off on rate limits, server errors, connection errors and timeouts."""

    #: retries after the first attempt (so at most ``max_retries + 1`` attempts).
    max_retries: int = 4
    #: seconds before the first retry; each later one waits ``multiplier`` times longer...
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    #: ...up to this many seconds (a server's longer ``Retry-After`` is cut here too).
    max_backoff: float = 30.0
    #: each wait is moved by up to this fraction either way, so clients that failed together
    #: do not all retry at the same instant.
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


class _Attempts:
    """The attempt count of one retried call: each loop below starts an attempt (counted, and
    throttled by the host's rate limit) and hands a failure here to learn how long to wait."""

    def __init__(self, host: RetryHost):
        self.host, self.n = host, 0

    def _count(self) -> None:
        self.n += 1
        self.host.stats.attempts += 1

    def start(self) -> None:
        self._count()
        _throttle(self.host)

    async def astart(self) -> None:
        self._count()
        await _athrottle(self.host)

    def failed(self, exc: Exception, started: bool = False) -> float:
        """The back-off before the next attempt; raises the final error instead when the call
        cannot be retried (or a stream had already given items: they cannot be taken back)."""
        if started:
            self.host.stats.failures += 1
            err = exc if isinstance(exc, UpstreamError) else self.host._to_error(exc)
            raise hide_cause(err, exc)
        return retry_fail(self.host, self.n, exc)


def retry_call(host: RetryHost, fn: Callable[[], T]) -> T:
    """``fn()`` under the host's retry policy (the sync timeout is the provider's request timeout)."""
    tries = _Attempts(host)
    while True:
        tries.start()
        try:
            return fn()
        except Exception as exc:  # classified by retry_fail
            time.sleep(tries.failed(exc))


async def aretry_call(host: RetryHost, fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()`` under the retry policy; each attempt is bounded by ``retry.timeout``."""
    tries = _Attempts(host)
    while True:
        await tries.astart()
        try:
            if host.retry.timeout is not None:
                return await asyncio.wait_for(fn(), host.retry.timeout)
            return await fn()
        except Exception as exc:
            await asyncio.sleep(tries.failed(exc))


def retry_stream(host: RetryHost, make_iter: Callable[[], Iterator[T]]) -> Iterator[T]:
    """Items of ``make_iter()``; a failure before the first item is retried, after it is raised."""
    tries = _Attempts(host)
    while True:
        tries.start()
        started = False
        try:
            for piece in make_iter():
                started = True
                yield piece
            return
        except Exception as exc:
            time.sleep(tries.failed(exc, started))


async def aretry_stream(host: RetryHost, make_iter: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
    tries = _Attempts(host)
    while True:
        await tries.astart()
        started = False
        try:
            async for piece in make_iter():
                started = True
                yield piece
            return
        except Exception as exc:
            await asyncio.sleep(tries.failed(exc, started))


def generic_error(exc: BaseException, policy: RetryPolicy) -> UpstreamError:
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
