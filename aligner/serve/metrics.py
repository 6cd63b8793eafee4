"""Prometheus metrics of ``aligner serve`` at ``/metrics`` (prometheus-client).

What an operator running replicas needs to see, in the names ``docs/production.md`` lists:
requests by route and status, what happened to each answer (changed, unchanged, fallback by
reason, skipped by reason), the gate's verdicts, batch sizes and the corrector's queue, latency
of the upstream, the corrector and whole requests, time to a stream's first piece, tokens, the
upstream's retries and errors by kind, and the corrections log's rows written and lost.

With several uvicorn workers (``aligner serve --workers N``) every process writes its values to
``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any worker sums them all (prometheus-client's
multi-process mode); otherwise each app keeps its own registry, so several apps in one process
(tests, notebooks) never share counters. ``/metrics`` follows ``/health``'s key rule: with keys
set, only a key holder gets numbers (anyone else a 401 and none).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from fastapi import Request
from starlette.responses import Response

from .auth import key_error

#: routes counted by name; any other path is counted as ``other`` (a scanner's random paths must
#: not grow a label per path)
ROUTES = ("/v1/chat/completions", "/v1/models", "/v1/feedback", "/health", "/metrics")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
#: seconds between two syncs of the batcher's and the log's counters into the metrics
SYNC_EVERY = 1.0


def multiprocess_dir() -> str | None:
    """The folder prometheus-client's multi-process mode writes to, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def error_kind(err: Any) -> str:
    """An upstream failure's kind, as the ``kind`` label: ``timeout``, ``rate_limited``,
    ``connection``, ``server_error``, ``auth`` or ``client_error``."""
    from ..contracts.errors import UpstreamTimeout

    status = getattr(err, "status", None)
    if isinstance(err, UpstreamTimeout) or status in (408, 504):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status is None:
        return "connection"
    if status >= 500:
        return "server_error"
    return "auth" if status in (401, 403) else "client_error"


class ServeMetrics:
    """The server's metrics; the server calls the ``count_*`` methods where things happen."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir() is not None
        #: single-process: this app's own registry; multi-process: metrics live in the folder
        self.registry = None if self.multiprocess else CollectorRegistry()
        r = {"registry": self.registry}
        self.requests = Counter("aligner_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], **r)
        self.request_seconds = Histogram("aligner_request_seconds", "Wall time of a request, first byte in "
                                         "to last byte out (total latency)", ["route"], buckets=LATENCY_BUCKETS, **r)
        self.in_flight = Gauge("aligner_in_flight_requests", "Requests being handled", multiprocess_mode="livesum", **r)
        self.corrections = Counter("aligner_corrections", "Answers served, by outcome (changed, unchanged, "
                                   "fallback, skipped) and reason (fallback and skipped only)",
                                   ["outcome", "reason"], **r)
        self.gate = Counter("aligner_gate_verdicts", "Gate verdicts (flagged, passed, error) by gate kind",
                            ["kind", "verdict"], **r)
        self.upstream_seconds = Histogram("aligner_upstream_seconds", "Upstream answer time (retries included)",
                                          buckets=LATENCY_BUCKETS, **r)
        self.corrector_seconds = Histogram("aligner_corrector_seconds", "Corrector time of a corrected answer "
                                           "(its queue wait not included)", buckets=LATENCY_BUCKETS, **r)
        self.correction_seconds = Histogram("aligner_correction_seconds", "Upstream + gate + queue + corrector "
                                            "time of a served answer", buckets=LATENCY_BUCKETS, **r)
        self.first_piece = Histogram("aligner_time_to_first_piece_seconds", "Request start to the first "
                                     "corrected piece of a stream", buckets=LATENCY_BUCKETS, **r)
        self.tokens = Counter("aligner_tokens", "Tokens in and out of the upstream and the corrector "
                              "(as each reports them)", ["model", "direction"], **r)
        self.retries = Counter("aligner_upstream_retries", "Upstream attempts retried, by kind of failure",
                               ["kind"], **r)
        self.errors = Counter("aligner_upstream_errors", "Upstream calls failed after retries, by kind", ["kind"], **r)
        self.batch_size = Histogram("aligner_batch_size", "Answers decoded together per corrector batch",
                                    buckets=BATCH_BUCKETS, **r)
        self.queue_depth = Gauge("aligner_corrector_queue_depth", "Answers waiting for a corrector batch",
                                 multiprocess_mode="livesum", **r)
        self.log_rows = Counter("aligner_log_rows", "Corrections-log rows written and lost", ["result"], **r)
        self.log_pending = Gauge("aligner_log_pending_rows", "Corrections-log rows waiting for the database",
                                 multiprocess_mode="livesum", **r)
        self.feedback = Counter("aligner_feedback", "Feedback stored, by rating", ["rating"], **r)
        self._synced: dict[str, Any] = {"sizes": {}, "written": 0, "lost": 0}
        self._task: asyncio.Task | None = None

    # -- where things happen -------------------------------------------------------------------
    def count_request(self, path: str, status: int, seconds: float) -> None:
        route = path.rstrip("/") if path.rstrip("/") in ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def count_upstream(self, seconds: float, usage: dict[str, Any] | None) -> None:
        self.upstream_seconds.observe(seconds)
        self._count_tokens("upstream", usage)

    def count_upstream_error(self, err: Any) -> None:
        self.errors.labels(error_kind(err)).inc()

    def count_served(self, c: Any, *, skipped: str | None = None, bypassed: bool = False) -> None:
        """One answer served (``c``: its Correction), plain or streamed."""
        gate = getattr(c, "gate", None)
        if gate is not None:
            self.gate.labels(gate.kind or "gate", "error" if gate.error else
                             ("flagged" if gate.flagged else "passed")).inc()
        reason = "bypass" if bypassed else skipped or getattr(c, "skipped", None) or \
            ("gate" if gate is not None and not gate.flagged else None)
        if reason:
            self.corrections.labels("skipped", reason).inc()
        elif c.fallback:
            self.corrections.labels("fallback", c.fallback_reason or "unknown").inc()
        else:
            self.corrections.labels("changed" if c.changed else "unchanged", "").inc()
        if not reason:
            self.corrector_seconds.observe(c.timings.get("corrector", 0.0))
            self._count_tokens("corrector", c.metadata.get("usage"))
        if "total" in c.timings:
            self.correction_seconds.observe(c.timings["total"])

    def count_first_piece(self, seconds: float) -> None:
        self.first_piece.observe(seconds)

    def count_feedback(self, rating: int) -> None:
        self.feedback.labels(str(rating)).inc()

    def _count_tokens(self, model: str, usage: dict[str, Any] | None) -> None:
        if not isinstance(usage, dict):
            return
        for key, direction in (("prompt_tokens", "in"), ("completion_tokens", "out")):
            n = usage.get(key)
            if isinstance(n, int) and n > 0:
                self.tokens.labels(model, direction).inc(n)

    def hook_retries(self, upstream: Any) -> None:
        """Count the upstream's retries (its ``on_retry`` callback; one already set still runs)."""
        if upstream is None or not hasattr(upstream, "on_retry"):
            return
        hook = upstream.on_retry if isinstance(upstream.on_retry, _RetryHook) else _RetryHook(upstream.on_retry)
        hook.metrics = self  # an upstream served by a later app counts for that app
        upstream.on_retry = hook

    # -- counters kept elsewhere, copied in --------------------------------------------------
    def sync(self, batcher: Any, records: Any) -> None:
        """Bring the batcher's batch sizes and queue, and the log's rows, into the metrics (each
        process its own: deltas since the last sync, so the multi-process sum stays right)."""
        sizes = dict(batcher.stats.sizes)
        seen = self._synced["sizes"]
        for size, n in sizes.items():
            for _ in range(n - seen.get(size, 0)):
                self.batch_size.observe(size)
        self._synced["sizes"] = sizes
        self.queue_depth.set(getattr(batcher, "queued", 0))
        if records is not None:
            for result in ("written", "lost"):
                now = getattr(records, result)
                if now > self._synced[result]:
                    self.log_rows.labels(result).inc(now - self._synced[result])
                self._synced[result] = now
            self.log_pending.set(records.pending)

    def start(self, batcher: Any, records: Any) -> None:
        """Sync every ``SYNC_EVERY`` seconds (a worker that is not scraped still adds up)."""
        async def run() -> None:
            while True:
                self.sync(batcher, records)
                await asyncio.sleep(SYNC_EVERY)

        self._task = asyncio.get_running_loop().create_task(run(), name="aligner-metrics-sync")

    async def stop(self, batcher: Any, records: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sync(batcher, records)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # its live gauges leave the sum

    def exposition(self) -> bytes:
        """The text format a scrape gets: this app's registry, or every worker's values."""
        from prometheus_client import CollectorRegistry, generate_latest

        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


class _RetryHook:
    """An upstream's ``on_retry``: counts the retry, then calls the callback it replaced."""

    def __init__(self, previous: Any):
        self.previous = previous
        self.metrics: ServeMetrics | None = None

    def __call__(self, attempt: int, err: Any, wait: float) -> None:
        if self.metrics is not None:
            self.metrics.retries.labels(error_kind(err)).inc()
        if self.previous is not None:
            self.previous(attempt, err, wait)


class MetricsMiddleware:
    """Counts every request (route, status) and times it to its last byte; outermost, so the
    origin check's 403 and the request limit's 503 count too. Pure ASGI: streams are not buffered."""

    def __init__(self, app: Any, *, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        scope.setdefault("state", {})["t0"] = t0
        status = {"code": 500}

        async def send_counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.count_request(scope.get("path", ""), status["code"], time.perf_counter() - t0)


def add_metrics_route(app: Any, state: Any) -> None:
    """``GET /metrics``: Prometheus' text format; with keys set, a 401 (and no numbers) for a
    request without a valid key, as ``/health`` shows its details to key holders only."""
    @app.get("/metrics")
    @app.get("/metrics/", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        if state.keys is not None:
            error = key_error(request, state)
            if error is not None:
                return error.response()
        state.metrics.sync(state.batcher, state.records)
        body = await asyncio.to_thread(state.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
