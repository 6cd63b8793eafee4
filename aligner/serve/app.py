"""The OpenAI-compatible proxy: ``POST /v1/chat/completions`` answered by upstream → Aligner.

Any OpenAI client (the ``openai`` SDK, LiteLLM, LangChain, curl) points its base URL here and gets
corrected answers with no code change. The corrected text is ``choices[0].message.content``; the
upstream's own answer, the corrector id and timings ride beside it in an extra ``aligner`` object
(on the final chunk when streaming), which OpenAI clients keep as an extra field.

The question the Aligner corrects for is the last user message; the whole message list goes to the
upstream. Only the corrector step is batched (``DynamicBatcher``): upstream calls run concurrently
and independently. Errors come back in OpenAI's shape ``{"error": {"message", "type", "code"}}``
with the status an OpenAI client expects, so its retry logic (429, 5xx) just works.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..decoding import DecodingConfig
from ..errors import AlignerError, ConfigError, UpstreamError, UpstreamTimeout
from .batching import DynamicBatcher
from .config import ServeConfig

log = logging.getLogger("aligner.serve")
access_log = logging.getLogger("aligner.serve.access")

BYPASS_HEADER = "x-aligner-bypass"
#: request fields passed on to the upstream when present (the corrector keeps its own decoding).
UPSTREAM_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                   "presence_penalty", "frequency_penalty")
#: upstream kinds that take OpenAI request parameters (a plain ``str -> str`` function does not).
PARAM_UPSTREAMS = ("OpenAICompatibleUpstream", "OpenAIUpstream", "LiteLLMUpstream")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
          413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 502: "upstream_error",
          503: "server_error", 504: "timeout_error"}


class APIError(Exception):
    """An error returned to the client as OpenAI-style JSON with ``status``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def upstream_error(exc: UpstreamError) -> APIError:
    """Map an upstream failure onto what the proxy's client should see.

    429 stays 429 (the client should back off); a timeout is 504; a 400 is the client's request
    (e.g. too long for the upstream); anything else — 5xx, connection errors, and 401/403/404,
    which mean the *proxy's* upstream settings are wrong — is 502.
    """
    status = getattr(exc, "status", None)
    msg = f"upstream: {exc}"
    if isinstance(exc, UpstreamTimeout) or status in (408, 504):
        return APIError(504, msg, code="upstream_timeout")
    if status == 429:
        retry_after = getattr(exc, "retry_after", None)
        return APIError(429, msg, code="rate_limit_exceeded",
                        headers={"Retry-After": str(int(retry_after))} if retry_after else None)
    if status == 400:
        return APIError(400, msg, code="upstream_rejected")
    return APIError(502, msg, code="upstream_error")


def _approx_tokens(text: str) -> int:
    """Whitespace word count: a cheap, tokenizer-free stand-in for ``usage`` (documented as approximate)."""
    return len(text.split())


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


class _State:
    """What the routes share: the aligner, batcher, config, keys and counters."""

    def __init__(self, aligner: Any, config: ServeConfig):
        self.aligner = aligner
        self.config = config
        self.keys = config.load_api_keys()
        self.batcher = DynamicBatcher(aligner.corrector,
                                      max_batch_size=config.max_batch_size if config.batching else 1,
                                      max_wait=config.batch_wait_ms / 1000 if config.batching else 0.0,
                                      may_join=lambda: self.in_flight)
        self.records = None
        if config.log_corrections:
            from .records import CorrectionsLog

            self.records = CorrectionsLog(config.log_corrections)
        names = list(config.served_model_name or [])
        if not names:
            names = [n for n in (config.upstream_model or getattr(aligner.upstream, "model", None),) if n]
            names.append("aligner")
        self.model_names = list(dict.fromkeys(names))
        self.in_flight = 0
        self.served = 0


def _build_aligner(config: ServeConfig) -> Any:
    from ..adapters.base import RetryPolicy
    from ..core import Aligner

    aligner = Aligner(config.upstream, config.corrector, template=config.template,
                      upstream_model=config.upstream_model, decoding={"max_new_tokens": config.max_new_tokens},
                      device=config.device)
    if aligner.upstream is not None:  # a server fails fast: its client has its own retry logic
        aligner.upstream.retry = RetryPolicy(max_retries=config.upstream_retries, timeout=config.upstream_timeout)
    return aligner


def create_app(source: "ServeConfig | Any", config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``source``: a ``ServeConfig`` (the aligner is built from it, model
    loaded now so a bad path fails before the port opens) or a ready ``Aligner`` (with ``config``
    for the server options; defaults otherwise)."""
    if isinstance(source, ServeConfig):
        config = source
        aligner = _build_aligner(config)
    else:
        if not hasattr(source, "corrector"):
            raise ConfigError(f"expected a ServeConfig or an Aligner, got {type(source).__name__}.",
                              field="source", fix="create_app(ServeConfig(...)) or create_app(Aligner(...)).")
        aligner = source
        config = config or ServeConfig()
    state = _State(aligner, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync upstreams (a Python function, a local model) run in the default executor; its
        # stock size (cores + 4) would cap concurrency far below what the batcher can use.
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="aligner-upstream")
        loop.set_default_executor(pool)
        state.batcher.start()
        log.info("serving corrector %s (demo=%s), models %s", aligner.corrector.name, aligner.is_demo,
                 state.model_names)
        try:
            yield
        finally:  # uvicorn has already let in-flight requests finish (graceful shutdown)
            await state.batcher.stop()
            if state.records is not None:
                state.records.close()
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="aligner-kit proxy", version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.aligner = state
    app.add_middleware(AccessLogMiddleware, log_prompts=config.log_prompts, enabled=config.access_log)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error").response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "corrector": aligner.corrector.name, "demo": aligner.is_demo,
                "upstream": getattr(aligner.upstream, "name", None), "models": state.model_names,
                "in_flight": state.in_flight, "served": state.served, "batching": state.batcher.stats.to_dict()}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _authorize(request, state)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "aligner-kit"}
                                           for n in state.model_names]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        _authorize(request, state)
        body = await _read_json(request, config.max_body_bytes)
        req = _validate(body, state)
        request.state.log = {"model": req["model"], "stream": req["stream"], "bypass": _bypass(request),
                             "question": req["question"]}
        state.in_flight += 1
        deadline = time.perf_counter() + config.request_timeout
        try:
            if req["stream"]:
                answer, t_up = await _with_deadline(_get_answer(state, req), deadline, "upstream")
                return StreamingResponse(_sse(state, req, request, answer, t_up, deadline),
                                         media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return await _with_deadline(_complete(state, req, request), deadline, "request")
        finally:
            state.in_flight -= 1

    return app


def _version() -> str:
    from .. import __version__

    return __version__


# -- request handling -------------------------------------------------------------------------
def _authorize(request: Request, state: _State) -> None:
    if state.keys is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'.", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in state.keys):
        raise APIError(401, "invalid API key.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def _read_json(request: Request, limit: int) -> Any:
    """The JSON body, refusing more than ``limit`` bytes before reading them (Content-Length) or
    while reading them (chunked bodies have no length)."""
    too_big = APIError(413, f"request body larger than {limit} bytes.", code="request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"body is not valid JSON ({exc}).", code="invalid_json") from exc


def _bypass(request: Request) -> bool:
    return request.headers.get(BYPASS_HEADER, "").strip().lower() in ("1", "true", "yes", "on")


def _validate(body: Any, state: _State) -> dict[str, Any]:
    """Check the request the way OpenAI does, naming the offending field."""
    from ..wrapped_client import question_of

    cfg = state.config
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object.", code="invalid_request")
    messages = body.get("messages")
    if messages is None:
        raise APIError(400, "'messages' is required.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty array.", param="messages", code="invalid_value")
    chars = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise APIError(400, f"messages[{i}] must be an object with 'role' and 'content'.",
                           param=f"messages[{i}]", code="invalid_value")
        content = m["content"]
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            raise APIError(400, f"messages[{i}].content must be a string or text parts.",
                           param=f"messages[{i}].content", code="invalid_value")
        chars += len(content or "")
    if chars > cfg.max_prompt_chars:
        raise APIError(400, f"messages hold {chars} characters; this server accepts at most {cfg.max_prompt_chars}.",
                       param="messages", code="context_length_exceeded")
    try:
        question = question_of(messages)
    except ConfigError as exc:
        raise APIError(400, f"messages: the last user message must have non-empty text content ({exc}).",
                       param="messages", code="invalid_value") from exc
    model = body.get("model")
    if model is None:
        model = state.model_names[0]
    if not isinstance(model, str) or model not in state.model_names:
        raise APIError(404, f"model {model!r} does not exist here; this server serves {state.model_names} "
                            "(see GET /v1/models).", param="model", code="model_not_found")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise APIError(400, f"max_tokens must be a positive integer, got {max_tokens!r}.",
                           param="max_tokens", code="invalid_value")
        if max_tokens > cfg.max_tokens_limit:
            raise APIError(400, f"max_tokens={max_tokens} exceeds this server's limit of {cfg.max_tokens_limit}.",
                           param="max_tokens", code="invalid_value")
    n = body.get("n", 1)
    if n not in (1, None):
        raise APIError(400, "only n=1 is supported.", param="n", code="invalid_value")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "stream must be true or false.", param="stream", code="invalid_value")
    corrector = state.aligner.corrector
    new_tokens = min(corrector.decoding.max_new_tokens, cfg.max_new_tokens, max_tokens or cfg.max_new_tokens)
    decoding = corrector.decoding if new_tokens == corrector.decoding.max_new_tokens else \
        DecodingConfig.from_any({"max_new_tokens": new_tokens}, corrector.decoding.to_dict())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if isinstance(
        body.get("stream_options"), dict) else False
    return {"messages": messages, "question": question, "model": model, "stream": stream,
            "decoding": decoding, "include_usage": include_usage,
            "params": {k: body[k] for k in UPSTREAM_PARAMS if body.get(k) is not None}}


async def _with_deadline(coro: Any, deadline: float, what: str) -> Any:
    remaining = deadline - time.perf_counter()
    try:
        async with asyncio.timeout(max(0.0, remaining)):
            return await coro
    except TimeoutError as exc:
        raise APIError(504, f"the {what} took longer than the server's request timeout.",
                       code="timeout") from exc


async def _get_answer(state: _State, req: dict[str, Any]) -> tuple[str, float]:
    """The upstream's answer (or, with no upstream configured, the final assistant message)."""
    t0 = time.perf_counter()
    upstream = state.aligner.upstream
    messages = req["messages"]
    if upstream is None:
        last = messages[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
            raise APIError(400, "this server has no upstream: send the answer to correct as the final "
                                "assistant message (after the user question).", param="messages",
                           code="invalid_value")
        req["messages"] = messages[:-1]
        return last["content"], 0.0
    try:
        params = req["params"] if type(upstream).__name__ in PARAM_UPSTREAMS else {}
        answer = await upstream.aanswer(messages, **params)
    except UpstreamError as exc:
        raise upstream_error(exc) from exc
    if not isinstance(answer, str):
        raise APIError(502, f"upstream returned {type(answer).__name__}, not text.", code="upstream_error")
    return answer, time.perf_counter() - t0


def _meta(state: _State, req: dict[str, Any], answer: str, correction: str, timings: dict[str, float],
          bypassed: bool) -> dict[str, Any]:
    corrector = state.aligner.corrector
    return {"original": answer, "corrector": corrector.name, "template": corrector.template.name,
            "upstream": getattr(state.aligner.upstream, "name", None), "changed": answer.strip() != correction.strip(),
            "bypassed": bypassed, "demo": state.aligner.is_demo,
            "timings": {k: round(v, 6) for k, v in timings.items()}}


async def _record(state: _State, req: dict[str, Any], answer: str, correction: str, timings: dict[str, float]) -> None:
    if state.records is None:
        return
    rec = {"timestamp": time.time(), "model": req["model"], "question": req["question"], "answer": answer,
           "correction": correction, "changed": answer.strip() != correction.strip(),
           "corrector": state.aligner.corrector.name, "upstream": getattr(state.aligner.upstream, "name", None),
           "timings": timings}
    try:
        await asyncio.to_thread(state.records.write, rec)
    except Exception:  # never fail a served answer because the log could not be written
        log.exception("could not write to the corrections log %s", state.records.path)


async def _complete(state: _State, req: dict[str, Any], request: Request) -> JSONResponse:
    t0 = time.perf_counter()
    answer, t_up = await _get_answer(state, req)
    bypassed = _bypass(request)
    timings: dict[str, float] = {"upstream": t_up}
    if bypassed:
        correction = answer
    else:
        try:
            correction, info = await state.batcher.correct(req["question"], answer, req["decoding"])
        except AlignerError as exc:
            raise APIError(400, str(exc), param=exc.field, code="invalid_value") from exc
        timings.update(queue=info["queue"], corrector=info["corrector"], batch_size=info["batch_size"])
    timings["total"] = time.perf_counter() - t0
    request.state.log.update(upstream_ms=round(t_up * 1000, 1), corrector_ms=round(timings.get("corrector", 0) * 1000, 1),
                             batch_size=timings.get("batch_size"))
    if not bypassed:
        await _record(state, req, answer, correction, timings)
    state.served += 1
    prompt_tokens = sum(_approx_tokens(m.get("content") or "") for m in req["messages"]
                        if isinstance(m.get("content"), str))
    completion_tokens = _approx_tokens(correction)
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": req["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": correction}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "aligner": _meta(state, req, answer, correction, timings, bypassed)})


async def _sse(state: _State, req: dict[str, Any], request: Request, answer: str, t_up: float,
               deadline: float) -> AsyncIterator[str]:
    """The correction as OpenAI chat.completion.chunk events, streamed as the corrector decodes."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": req["model"]}

    def event(delta: dict, finish: str | None = None, **extra: Any) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish}], **extra},
                                     ensure_ascii=False) + "\n\n"

    bypassed = _bypass(request)
    state.in_flight += 1
    t1 = time.perf_counter()
    text = ""
    try:
        yield event({"role": "assistant", "content": ""})
        if bypassed:
            text = answer
            yield event({"content": answer})
        else:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    async for piece in state.aligner.corrector.astream(req["question"], answer,
                                                                       decoding=req["decoding"]):
                        text += piece
                        yield event({"content": piece})
            except TimeoutError:
                err = APIError(504, "the correction took longer than the server's request timeout.", code="timeout")
                yield "data: " + json.dumps(err.body()) + "\n\n"
                yield "data: [DONE]\n\n"
                return
            except Exception as exc:
                log.exception("streamed correction failed")
                err = APIError(500, f"the corrector failed: {exc}", code="corrector_error")
                yield "data: " + json.dumps(err.body()) + "\n\n"
                yield "data: [DONE]\n\n"
                return
        timings = {"upstream": t_up, "corrector": time.perf_counter() - t1 if not bypassed else 0.0}
        timings["total"] = t_up + timings["corrector"]
        yield event({}, "stop", aligner=_meta(state, req, answer, text, timings, bypassed))
        if req["include_usage"]:
            p = sum(_approx_tokens(m.get("content") or "") for m in req["messages"] if isinstance(m.get("content"), str))
            c = _approx_tokens(text)
            yield "data: " + json.dumps({**head, "choices": [], "usage": {
                "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}) + "\n\n"
        yield "data: [DONE]\n\n"
        state.served += 1
        request.state.log.update(upstream_ms=round(t_up * 1000, 1),
                                 corrector_ms=round(timings["corrector"] * 1000, 1))
        if not bypassed:
            await _record(state, req, answer, text, timings)
    finally:
        state.in_flight -= 1
