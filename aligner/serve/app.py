"""The OpenAI-compatible proxy: ``POST /v1/chat/completions`` answered by upstream → Aligner.

Any OpenAI client (the ``openai`` SDK, LiteLLM, LangChain, curl) points its base URL here and gets
corrected answers with no code change. The corrected text is ``choices[0].message.content``; the
upstream's own answer, the corrector id and timings ride beside it in an extra ``aligner`` object
(on the final chunk when streaming), which OpenAI clients keep as an extra field.

The question the Aligner corrects for is the last user message — or the whole conversation, for a
corrector trained on conversations (:mod:`aligner.contracts.conversation`) —; the whole message list goes to the
upstream, with every request field the proxy does not read itself (``tools``, ``response_format``,
``seed``...) when the upstream speaks the OpenAI protocol. An answer that is not prose is passed on
uncorrected, and the ``aligner`` object says so (``"skipped"``): tool calls, and the JSON a
``response_format`` asked for. ``usage`` is the upstream's own; the corrector's tokens are in
``aligner.usage``. Only the corrector step is batched (``DynamicBatcher``): upstream calls run
concurrently and independently. Errors come back in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with the status an OpenAI client expects, so its
retry logic (429 with ``Retry-After``, 5xx) just works; they never name the upstream's address,
which stays in the server log.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..adapters.base import UpstreamReply, bare_message
from ..contracts.correction import EMPTY_ANSWER, Asked, Correction
from ..contracts.errors import AlignerError, ConfigError, UpstreamError, UpstreamTimeout
from ..contracts.messages import question_of
from ..runtime.records import record_of
from .batching import DynamicBatcher
from .config import ServeConfig
from .feedback import add_feedback_route
from .metrics import MetricsMiddleware, ServeMetrics, add_metrics_route
from .request import (APIError, BodyDecoder, ChatRequest, check_aligner_field, check_content_type, check_fields,
                      check_messages, check_model, form_fields, forwarded, json_mode, parse_body)

if TYPE_CHECKING:
    from ..gates.batching import GateBatcher

log = logging.getLogger("aligner.serve")
access_log = logging.getLogger("aligner.serve.access")

BYPASS_HEADER = "x-aligner-bypass"
#: anything that looks like a URL in an upstream's error text (its address, an endpoint path).
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def upstream_error(exc: UpstreamError) -> APIError:
    """Map an upstream failure onto what the proxy's client should see.

    429 stays 429 with the upstream's ``Retry-After`` (the client should back off); a timeout is
    504; a 400 is the client's request (e.g. too long for the upstream); anything else — 5xx,
    connection errors, and 401/403/404, which mean the *proxy's* upstream settings are wrong — is
    502. The message keeps the upstream's reason but not its address: the upstream is internal.
    """
    status = exc.status
    msg = "upstream: " + _URL.sub("<upstream>", bare_message(exc))
    if isinstance(exc, UpstreamTimeout) or status in (408, 504):
        return APIError(504, msg, code="upstream_timeout")
    if status == 429:
        headers = None
        if exc.retry_after is not None:  # both forms: the OpenAI SDK reads retry-after-ms first
            headers = {"Retry-After": str(math.ceil(exc.retry_after)),
                       "retry-after-ms": str(round(exc.retry_after * 1000))}
        return APIError(429, msg, code="rate_limit_exceeded", headers=headers)
    if status == 400:
        return APIError(400, msg, code="upstream_rejected")
    return APIError(502, msg, code="upstream_error")


class AccessLogMiddleware:
    """One structured JSON line per request, written when the last body byte is sent.

    Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses are timed to their end and not
    buffered. Prompt text appears only with ``log_prompts`` — prompts are user data.
    """

    def __init__(self, app: Any, *, log_prompts: bool = False, enabled: bool = True):
        self.app, self.log_prompts, self.enabled = app, log_prompts, enabled

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}
        scope.setdefault("state", {})

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            info = dict(scope["state"].get("log", {}))
            question = info.pop("question", None)
            record = {"ts": round(time.time(), 3), "method": scope.get("method"), "path": scope.get("path"),
                      "status": status["code"], "ms": round((time.perf_counter() - t0) * 1000, 1),
                      "client": (scope.get("client") or ("", 0))[0], **info}
            if self.log_prompts and question is not None:
                record["question"] = question
            access_log.info(json.dumps(record, ensure_ascii=False))


class RequestLimitMiddleware:
    """At most ``limit`` requests handled at once; one more gets a 503 (OpenAI JSON, ``Retry-After``).

    Requests, not connections, are counted: uvicorn's own ``limit_concurrency`` counted every open
    socket, so a few hundred idle connections turned every real request away (issue 21).
    """

    def __init__(self, app: Any, *, limit: int | None):
        self.app, self.limit, self.in_flight = app, limit, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limit:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            error = APIError(503, f"the server is handling {self.limit} requests, its limit "
                                  "(--limit-concurrency); retry shortly.", code="server_overloaded",
                             headers={"Retry-After": "1"})
            await error.response()(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class OriginMiddleware:
    """Browsers: requests from a web page carry an ``Origin`` header, and only the origins listed
    with ``--cors-origin`` (``"*"``: any) are served; any other gets a 403 before a route runs.

    A page on another site could otherwise spend the upstream's quota and write the corrections
    log through a server with auth off (the default) — ``text/plain`` and form bodies need no
    preflight (those get the chat route's 415 anyway), and a DNS-rebound page is "same-origin" to
    the browser, so no preflight would stop it; its ``Origin`` still names the foreign site. For a
    listed origin, the CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
    answered here with 204, and responses carry ``Access-Control-Allow-Origin``. Clients that are
    not browsers send no ``Origin`` and are not affected.
    """

    METHODS = ("GET", "HEAD", "POST")
    #: response headers a browser script may read: the retry hints of a 429 or 503
    EXPOSED = "Retry-After, retry-after-ms"

    def __init__(self, app: Any, *, origins: list[str] | None):
        self.app = app
        self.origins = set(origins or [])

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"origin", b"access-control-request-method", b"access-control-request-headers")}
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if "*" not in self.origins and origin not in self.origins:
            fix = "add it with --cors-origin" if self.origins else "start the server with --cors-origin ORIGIN"
            await APIError(403, f"requests from web pages at {origin[:100]!r} are not allowed here ({fix}).",
                           code="origin_not_allowed").response()(scope, receive, send)
            return
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        wanted = headers.get("access-control-request-method")
        if scope["method"] == "OPTIONS" and wanted is not None:  # the preflight
            if wanted.upper() not in self.METHODS:
                await APIError(405, f"{wanted[:20]} is not a method this API answers ({', '.join(self.METHODS)}).",
                               code="method_not_allowed", headers=cors).response()(scope, receive, send)
                return
            allow = {**cors, "Access-Control-Allow-Methods": ", ".join(self.METHODS), "Access-Control-Max-Age": "600"}
            if headers.get("access-control-request-headers"):
                allow["Access-Control-Allow-Headers"] = headers["access-control-request-headers"]
            from starlette.responses import Response

            await Response(status_code=204, headers=allow)(scope, receive, send)
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in
                         {**cors, "Access-Control-Expose-Headers": self.EXPOSED}.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


class _State:
    """What the routes share: the aligner, batcher, config, keys and counters."""

    def __init__(self, aligner: Any, config: ServeConfig, records: Any = None):
        self.aligner = aligner
        self.config = config
        self.keys = config.load_api_keys()
        #: the upstream as clients see it: its name without its address (kept for the server log)
        self.upstream_label = None
        if aligner.upstream is not None:
            aligner.upstream.log_error_text = config.log_prompts  # its error text may quote the prompt
            self.upstream_label = _URL.sub("", aligner.upstream.name).rstrip("@") or type(aligner.upstream).__name__
        #: one batcher per corrector (per stage of a stack: each stage batches its own model's rows)
        self.batchers: list[DynamicBatcher] = []

        def batched(corrector: Any) -> Any:
            self.batchers.append(DynamicBatcher(corrector, max_batch_size=config.max_batch_size if config.batching
                                                else 1, max_wait=config.batch_wait_ms / 1000 if config.batching
                                                else 0.0, may_join=lambda: self.in_flight))
            return corrector.through(self.batchers[-1])

        from ..correctors.stack import stacked

        #: the aligner the handlers correct with: the same, its corrector's rows batched (each
        #: stage's, for a stack), and its gate's calls batched like corrections (aligner.gates.batching)
        self.serving = aligner.with_corrector(stacked(aligner.corrector, batched))
        self.batcher = self.batchers[0]
        if aligner.gate is not None:
            from ..gates.batching import GateBatcher

            self.serving = self.serving.with_gate(GateBatcher(aligner.gate, max_batch_size=self.batcher.max_batch_size,
                                                              max_wait=self.batcher.max_wait,
                                                              may_join=lambda: self.in_flight))
        #: the corrections log (``aligner.runtime.records``), opened by ``create_app``
        self.records = records
        self.replica: str | None = None
        if records is not None:
            from ..runtime.records import replica_name

            self.replica = replica_name()
        self.metrics = ServeMetrics()
        self.metrics.hook_retries(aligner.upstream)
        names = list(config.served_model_name or [])
        if not names:
            names = [n for n in (config.upstream_model or getattr(aligner.upstream, "model", None),) if n]
            names.append("aligner")
        self.model_names = list(dict.fromkeys(names))
        self.in_flight = 0
        self.served = 0


def create_app(source: "ServeConfig | Any", config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``source``: a ``ServeConfig`` (the aligner is built from it, model
    loaded now so a bad path fails before the port opens) or a ready ``Aligner`` (with ``config``
    for the server options; defaults otherwise)."""
    if isinstance(source, ServeConfig):
        config, aligner = source, None
    else:
        if not hasattr(source, "corrector"):
            raise ConfigError(f"expected a ServeConfig or an Aligner, got {type(source).__name__}.",
                              field="source", fix="create_app(ServeConfig(...)) or create_app(Aligner(...)).")
        aligner = source
        config = config or ServeConfig()
    records = None
    if config.log_corrections:  # a log out of reach (a database down, a typo) fails before the model loads
        from ..runtime.logs import open_log
        from ..runtime.records import POSTGRES_SCHEMES

        buffer = {"max_pending": config.log_buffer_rows} if config.log_corrections.startswith(POSTGRES_SCHEMES) else {}
        records = open_log(config.log_corrections, **buffer)
    try:
        aligner = aligner if aligner is not None else config.build()
        from ..contracts.objectives import takes_objectives

        if takes_objectives(aligner.corrector) and not aligner.objectives:
            raise ConfigError(f"template {aligner.corrector.template.name!r} needs objectives ({{aspects}}), and none "
                              "were given: every request without its own would fail.", field="objectives",
                              fix="give the server's objectives, e.g. --objective harmless --objective helpful "
                                  "(a request may choose others with {\"aligner\": {\"objectives\": [...]}}), or "
                                  "serve with a template without {aspects}: --template aligner-v1.0.")
    except BaseException:
        if records is not None:
            records.close()
        raise
    state = _State(aligner, config, records)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync upstreams (a Python function, a local model) run in the default executor; its
        # stock size (cores + 4) would cap concurrency far below what the batcher can use.
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="aligner-upstream")
        loop.set_default_executor(pool)
        for batcher in state.batchers:
            batcher.start()
        state.metrics.start(state.batcher, state.records)
        log.info("serving corrector %s (demo=%s), models %s", aligner.corrector.name, aligner.is_demo,
                 state.model_names)
        try:
            yield
        finally:  # uvicorn has already let in-flight requests finish (graceful shutdown)
            for batcher in state.batchers:
                await batcher.stop()
            await state.metrics.stop(state.batcher, state.records)
            if state.records is not None:  # a database log writes what it buffered first
                await asyncio.to_thread(state.records.close)
            pool.shutdown(wait=False, cancel_futures=True)

    # redirect_slashes off: Starlette's redirect for a trailing slash builds its Location from the
    # client's Host header; the routes answer with and without the slash instead.
    app = FastAPI(title="aligner-kit proxy", version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.aligner = state
    # the last added runs first: the access log sees every answer, the origin check comes before
    # the request limit, which counts only requests a route will handle
    app.add_middleware(RequestLimitMiddleware, limit=config.limit_concurrency or None)
    app.add_middleware(OriginMiddleware, origins=config.cors_origin)
    app.add_middleware(AccessLogMiddleware, log_prompts=config.log_prompts, enabled=config.access_log)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        # exc.headers keeps the router's Allow header on a 405 (HTTP requires it there)
        return APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code,
                        headers=dict(exc.headers) if exc.headers else None).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)  # the details stay in the server log
        return APIError(500, f"internal error ({type(exc).__name__}); the server log has the details.",
                        code="internal_error").response()

    @app.api_route("/health", methods=["GET", "HEAD"])
    @app.api_route("/health/", methods=["GET", "HEAD"], include_in_schema=False)
    async def health(request: Request) -> dict[str, Any]:
        # A load balancer's probe needs no key; what the server runs (file paths, the upstream's
        # address) is for key holders only.
        if state.keys is not None and _key_error(request, state) is not None:
            return {"status": "ok"}
        return {"status": "ok", "corrector": aligner.corrector.name, "demo": aligner.is_demo,
                "upstream": state.upstream_label, "models": state.model_names,
                "in_flight": state.in_flight, "served": state.served, "batching": state.batcher.stats.to_dict(),
                **({"batching_stages": [b.stats.to_dict() for b in state.batchers]} if len(state.batchers) > 1 else {}),
                "corrections_log": state.records.health() if state.records is not None else None,
                **({"gate": _gate_stats(state.serving.gate)} if state.serving.gate is not None else {})}

    add_metrics_route(app, state, _key_error)
    add_feedback_route(app, state, authorize=_authorize, read_json=_read_json)

    @app.get("/v1/models")
    @app.get("/v1/models/", include_in_schema=False)
    async def models(request: Request) -> dict[str, Any]:
        _authorize(request, state)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "aligner-kit"}
                                           for n in state.model_names]}

    @app.post("/v1/chat/completions")
    @app.post("/v1/chat/completions/", include_in_schema=False)
    async def chat_completions(request: Request) -> Any:
        _authorize(request, state)
        check_content_type(request.headers.get("content-type"))
        if _bypass(request) and not config.allow_bypass:
            raise APIError(403, "the X-Aligner-Bypass header is turned off on this server: every answer is "
                                "corrected (its operator can allow the header with --allow-bypass).",
                           code="bypass_disabled")
        body = await _read_json(request, config.max_body_bytes, config.body_timeout)
        req = _validate(body, state)
        request.state.log = {"model": req.model, "stream": req.stream, "bypass": _bypass(request),
                             "question": req.question}
        if not _bypass(request) and not req.json_mode:
            await _check_fits(state, req)  # a client error is a 400 whether streamed or not
        state.in_flight += 1
        deadline = time.perf_counter() + config.request_timeout
        try:
            if req.stream:
                reply, t_up = await _with_deadline(_get_answer(state, req), deadline, "upstream")
                skipped = _skipped(req, reply)
                stream = _sse_uncorrected(state, req, reply, request, t_up, skipped) if skipped else \
                    _sse(state, req, reply, request, t_up, deadline)
                return _SSEResponse(stream, media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return await _with_deadline(_complete(state, req, request), deadline, "request")
        finally:
            state.in_flight -= 1

    return app


def _gate_stats(gate: "GateBatcher") -> dict[str, Any]:
    """What the gate in front of the corrector did: how many answers it judged, in how many calls
    (the server always asks its gate through a GateBatcher, which counts them)."""
    return {"kind": gate.kind, "name": gate.name, "answers": gate.answers, "batches": gate.batches,
            "largest_batch": gate.largest_batch}


def _version() -> str:
    from ..contracts.version import __version__

    return __version__


# -- request handling -------------------------------------------------------------------------
def _key_error(request: Request, state: _State) -> APIError | None:
    """Why the request's bearer key is not accepted, or None when it is (or auth is off)."""
    if state.keys is None:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return APIError(401, "missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in state.keys):
        return APIError(401, "invalid API key.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    return None


def _authorize(request: Request, state: _State) -> None:
    error = _key_error(request, state)
    if error is not None:
        raise error


#: bodies larger than this are parsed and checked in a worker thread, off the event loop.
_PARSE_INLINE_BYTES = 64_000


async def _read_json(request: Request, limit: int, timeout: float) -> Any:
    """The JSON body, refusing more than ``limit`` bytes before reading them (Content-Length) or
    while reading them (chunked bodies have no length) — sent and, for a gzip or deflate body,
    decoded — and a body that takes longer than ``timeout`` seconds to arrive: the connection
    layer bounds request heads, not bodies, so a client trickling a byte at a time would
    otherwise hold a connection for as long as it likes."""
    decoder = BodyDecoder(request.headers.get("content-encoding"), limit)
    encoded = "" if decoder.encoding == "identity" else f" (decoded from {decoder.encoding})"
    too_big = APIError(413, f"request body larger than {limit} bytes{encoded}.", code="request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(decoder.feed(chunk))
        decoder.finish()
    except OverflowError as exc:
        raise too_big from exc
    except TimeoutError as exc:
        raise APIError(408, f"the request body did not arrive within {timeout:g} seconds.", code="body_timeout",
                       headers={"Connection": "close"}) from exc
    raw = b"".join(chunks)
    if len(raw) > _PARSE_INLINE_BYTES:
        return await asyncio.to_thread(parse_body, raw)
    return parse_body(raw)


def _bypass(request: Request) -> bool:
    return request.headers.get(BYPASS_HEADER, "").strip().lower() in ("1", "true", "yes", "on")


def _validate(body: Any, state: _State) -> ChatRequest:
    """Check the request the way OpenAI does, every field before anything runs, naming the
    offending field (see :mod:`aligner.serve.request`); the checked request, typed."""
    cfg = state.config
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object.", code="invalid_request")
    messages = body.get("messages")
    chars = check_messages(messages)
    check_fields(body, cfg.max_tokens_limit)
    upstream = state.aligner.upstream
    takes_params = bool(getattr(upstream, "takes_openai_params", False))
    refused = next(iter(form_fields(body)), None) if upstream is not None and not takes_params else None
    if refused:
        raise APIError(400, f"{refused}: this server's upstream ({type(upstream).__name__}) takes no request "
                            f"parameters, so it cannot honour {refused!r}; send the request without it.",
                       param=refused, code="unsupported_parameter")
    if chars > cfg.max_prompt_chars:
        raise APIError(400, f"messages hold {chars} characters; this server accepts at most {cfg.max_prompt_chars}.",
                       param="messages", code="context_length_exceeded")
    try:
        question = question_of(messages)
    except ConfigError as exc:
        raise APIError(400, f"messages: the last user message must have non-empty text content ({exc}).",
                       param="messages", code="invalid_value") from exc
    model = check_model(body.get("model"), state.model_names)
    objectives = check_aligner_field(body.get("aligner"), state.aligner.corrector)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stream = bool(body.get("stream"))
    # the request's max_tokens lowers the ceiling but is not a choice of length for the
    # correction: the corrector's own answer-relative cap setting stays (see resolve_length)
    decoding = state.aligner.corrector.decoding.limited(cfg.max_new_tokens, max_tokens)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return ChatRequest(messages=messages, question=question, model=model, stream=stream, decoding=decoding,
                       include_usage=include_usage, json_mode=json_mode(body),
                       params=forwarded(body) if takes_params else {}, objectives=objectives)


async def _check_fits(state: _State, req: ChatRequest) -> None:
    """Refuse a question too long for the corrector before the upstream is asked (and paid for)
    and before a stream starts: the corrector's ``fit`` raises when the question alone is over its
    input budget, whatever the answer. Tokenising runs off the event loop."""
    try:
        aspects = state.aligner.aspects(objectives=req.objectives)
        await asyncio.to_thread(partial(state.aligner.corrector.fit, req.question, "", aspects=aspects))
    except ConfigError as exc:
        raise APIError(400, f"messages: the question (last user message) is too long for the corrector: "
                            f"{bare_message(exc)}", param="messages", code="context_length_exceeded") from exc


async def _with_deadline(coro: Any, deadline: float, what: str) -> Any:
    remaining = deadline - time.perf_counter()
    try:
        async with asyncio.timeout(max(0.0, remaining)):
            return await coro
    except TimeoutError as exc:
        raise APIError(504, f"the {what} took longer than the server's request timeout.",
                       code="timeout") from exc


async def _get_answer(state: _State, req: ChatRequest) -> tuple[UpstreamReply, float]:
    """The upstream's whole reply (text, tool calls, finish reason, usage) and the seconds it took;
    with no upstream configured, the final assistant message as the reply (0 seconds)."""
    t0 = time.perf_counter()
    upstream = state.aligner.upstream
    messages = req.messages
    if upstream is None:
        last = messages[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
            raise APIError(400, "this server has no upstream: send the answer to correct as the final "
                                "assistant message (after the user question).", param="messages",
                           code="invalid_value")
        return UpstreamReply(last["content"]), 0.0
    try:
        reply = await upstream.acomplete(messages, **req.params)
    except UpstreamError as exc:
        # The address goes to the operator's log, not to the client; the upstream's own error
        # text only with --log-prompts (it may quote the prompt).
        detail = str(exc) if state.config.log_prompts else \
            f"{type(exc).__name__}, status {exc.status} (error text not logged: it may quote the prompt)"
        log.warning("upstream %s failed: %s", upstream.name, detail)
        state.metrics.count_upstream_error(exc)
        raise upstream_error(exc) from exc
    if not isinstance(reply, UpstreamReply) or not isinstance(reply.text, str):
        raise APIError(502, "the upstream's answer is not text.", code="upstream_error")
    state.metrics.count_upstream(time.perf_counter() - t0, reply.usage)
    return reply, time.perf_counter() - t0


def _skipped(req: ChatRequest, reply: UpstreamReply) -> str | None:
    """Why this answer goes back uncorrected, or None: tool calls are actions for the client's code
    to run, and JSON the client asked for is data — rewriting either into prose would break the
    client. A tool-call turn's text (if any) goes back as it came too; the answer that follows
    the tool's result is a later request, and that one is corrected. An answer with no text
    (``content: null`` — a refusal, a content filter — or blank) has nothing to correct: a
    corrector given none writes one from the question alone, which nobody asked for."""
    if reply.tool_calls:
        return "tool_calls"
    if not reply.text.strip():
        return EMPTY_ANSWER
    if req.json_mode:
        return "response_format"
    return None


def _asked(state: _State, seconds: float) -> Asked:
    """The server asked the upstream itself (with the whole chat): its name and seconds."""
    upstream = state.aligner.upstream
    return Asked(seconds, getattr(upstream, "name", "") if upstream is not None else "")


def _uncorrected(state: _State, req: ChatRequest, answer: str, t_up: float, skipped: str | None) -> Correction:
    """The Correction of an answer served as it came: bypassed (``skipped`` None), tool calls,
    requested JSON, no text."""
    return Correction.uncorrected(req.question, answer, skipped=skipped, corrector=state.aligner.corrector,
                                  asked=_asked(state, t_up))


def _meta(state: _State, c: Correction, bypassed: bool, **extra: Any) -> dict[str, Any]:
    """The ``aligner`` object (``Correction.meta``) as this server shows it: its upstream without
    the address, whether the client bypassed the corrector, and ``extra`` (``usage``, ``skipped``).
    ``fallback``: the corrector's output was degenerate and the original answer was served
    instead (a stream may have shown part of it already)."""
    return c.meta(upstream=state.upstream_label, bypassed=bypassed, **extra)


async def _record(state: _State, req: ChatRequest, c: Correction, cid: str) -> None:
    """Append to the corrections log (``cid``: the id the client is given). The write is
    shielded: a client leaving at that moment (which cancels a stream's generator) must not lose
    a correction it was served."""
    if state.records is None:
        return
    try:
        await asyncio.shield(asyncio.to_thread(state.records.write, record_of(c, model=req.model, id=cid,
                                                                              replica=state.replica)))
    except asyncio.CancelledError:
        raise  # the write itself goes on in its thread
    except Exception:  # never fail a served answer because the log could not be written
        log.exception("could not write to the corrections log %s", state.records.where)


async def _unless_disconnected(request: Request, work: Any) -> Any:
    """Await ``work`` (a correction), cancelling it if the client disconnects first: its row then
    stops generating within a step instead of decoding for nobody. The body has been read, so
    the next ASGI message is the disconnect (uvicorn sends it when the client goes)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise APIError(499, "the client closed the connection.", code="client_closed_request")
        return task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


def _logged(request: Request, c: Correction, **extra: Any) -> None:
    """The access-log fields of a served answer."""
    request.state.log.update(upstream_ms=round(c.timings["upstream"] * 1000, 1),
                             corrector_ms=round(c.timings.get("corrector", 0) * 1000, 1),
                             batch_size=c.timings.get("batch_size"), **extra)


async def _complete(state: _State, req: ChatRequest, request: Request) -> JSONResponse:
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    reply, t_up = await _get_answer(state, req)
    bypassed = _bypass(request)
    skipped = _skipped(req, reply)
    if bypassed or skipped:
        c = _uncorrected(state, req, reply.text, t_up, skipped)
    else:
        try:
            c = await _unless_disconnected(request, state.serving.acorrect(
                req.messages, reply.text, objectives=req.objectives, decoding=req.decoding,
                asked=_asked(state, t_up)))
        except AlignerError as exc:
            raise APIError(400, str(exc), param=exc.field, code="invalid_value") from exc
        state.batcher.stats.count_fallback(c.fallback_reason)
    # counted before the log's write: a request cancelled during the (shielded) write still has its row
    state.metrics.count_served(c, skipped=skipped, bypassed=bypassed)
    if not (bypassed or skipped):
        await _record(state, req, c, cid)
    _logged(request, c, skipped=skipped)
    state.served += 1
    message: dict[str, Any] = {"role": "assistant", "content": c.correction}
    finish = "stop"
    if skipped:  # the upstream's message as it came
        message = {"role": "assistant", "content": None if reply.null_content else reply.text}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    meta = _meta(state, c, bypassed, id=cid, usage=c.metadata.get("usage"))
    return JSONResponse({
        "id": cid, "object": "chat.completion", "created": int(time.time()),
        "model": req.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": reply.usage, "aligner": meta})


def _usage_chunk(head: dict[str, Any], reply: UpstreamReply) -> str:
    """The last event of a stream with ``include_usage``: the upstream's own usage (null when the
    upstream reports none)."""
    return "data: " + json.dumps({**head, "choices": [], "usage": reply.usage}) + "\n\n"


def _chunk_head(req: ChatRequest) -> dict[str, Any]:
    """What every chat.completion.chunk event of one streamed reply shares (one id, one time)."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": req.model}


def _chunk(head: dict[str, Any], delta: dict, finish: str | None = None, **extra: Any) -> str:
    """One chat.completion.chunk server-sent event of the reply ``head`` names."""
    return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                      "finish_reason": finish}], **extra},
                                 ensure_ascii=False) + "\n\n"


async def _sse_uncorrected(state: _State, req: ChatRequest, reply: UpstreamReply, request: Request, t_up: float,
                           skipped: str) -> AsyncIterator[str]:
    """A reply passed on as it came (tool calls, requested JSON) as chat.completion.chunk events."""
    head = _chunk_head(req)
    event = partial(_chunk, head)

    yield event({"role": "assistant", "content": None if reply.null_content else ""})
    if reply.text:
        yield event({"content": reply.text})
    if reply.refusal is not None:
        yield event({"refusal": reply.refusal})
    if reply.tool_calls:
        yield event({"tool_calls": [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]})
    c = _uncorrected(state, req, reply.text, t_up, skipped)
    meta = _meta(state, c, False, id=head["id"], usage=None)
    state.metrics.count_served(c, skipped=skipped)
    yield event({}, reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"), aligner=meta)
    if req.include_usage:
        yield _usage_chunk(head, reply)
    state.served += 1
    request.state.log.update(upstream_ms=round(t_up * 1000, 1), skipped=skipped)
    yield "data: [DONE]\n\n"


async def _sse(state: _State, req: ChatRequest, reply: UpstreamReply, request: Request, t_up: float,
               deadline: float) -> AsyncIterator[str]:
    """The correction as OpenAI chat.completion.chunk events, streamed as the corrector decodes.

    It is ``Aligner.astream`` through the dynamic batcher, a row of a batch like any plain
    request. Leaving early — the client disconnects (the response cancels this generator), the
    deadline passes — cancels the row, so the model stops generating for it within a step. The
    corrections-log row is written *before* the final events: a client that hangs up on
    ``[DONE]`` cannot lose it.
    """
    head = _chunk_head(req)
    event = partial(_chunk, head)

    def error(err: APIError) -> str:
        return "data: " + json.dumps(err.body()) + "\n\n"

    bypassed = _bypass(request)
    answer = reply.text
    started = request.scope.get("state", {}).get("t0")
    state.in_flight += 1
    stream = None
    try:
        yield event({"role": "assistant", "content": ""})
        if bypassed:
            c = _uncorrected(state, req, answer, t_up, None)
            yield event({"content": answer})
        else:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    stream = state.serving.astream(req.messages, answer, objectives=req.objectives,
                                                   decoding=req.decoding, asked=_asked(state, t_up))
                    async for piece in stream:
                        if started is not None:  # the first corrected piece: from the request's start
                            state.metrics.count_first_piece(time.perf_counter() - started)
                            started = None
                        yield event({"content": piece})
            except TimeoutError:
                yield error(APIError(504, "the correction took longer than the server's request timeout.",
                                     code="timeout"))
                yield "data: [DONE]\n\n"
                return
            except AlignerError as exc:
                yield error(APIError(400, str(exc), param=exc.field, code="invalid_value"))
                yield "data: [DONE]\n\n"
                return
            except Exception as exc:
                log.exception("streamed correction failed")
                yield error(APIError(500, f"the corrector failed ({type(exc).__name__}); the server log has "
                                          "the details.", code="corrector_error"))
                yield "data: [DONE]\n\n"
                return
            c = stream.correction
            state.batcher.stats.count_fallback(c.fallback_reason)
        state.served += 1
        _logged(request, c, fallback=c.fallback_reason)
        state.metrics.count_served(c, bypassed=bypassed)  # before the write: see _complete
        if not bypassed:  # before the last events: the client may hang up on [DONE]
            await _record(state, req, c, head["id"])
        yield event({}, "stop", aligner=_meta(state, c, bypassed, id=head["id"]))
        if req.include_usage:
            yield _usage_chunk(head, reply)
        yield "data: [DONE]\n\n"
    finally:
        if stream is not None:
            await stream.aclose()  # a stream left early: its row stops generating
        state.in_flight -= 1


class _SSEResponse(StreamingResponse):
    """A streaming response that closes its event generator however the response ends, so a
    stream whose client disconnected while an event was being sent still cancels its row now,
    not whenever the garbage collector finalises the generator."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
