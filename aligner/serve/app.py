"""The OpenAI-compatible proxy: ``POST /v1/chat/completions`` answered by upstream → Aligner.

Any OpenAI client (the ``openai`` SDK, LiteLLM, LangChain, curl) points its base URL here and gets
corrected answers with no code change. The corrected text is ``choices[0].message.content``; the
upstream's own answer, the corrector id and timings ride beside it in an extra ``aligner`` object
(on the final chunk when streaming), which OpenAI clients keep as an extra field. Errors come back
in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` with the status an OpenAI
client expects, so its retry logic (429 with ``Retry-After``, 5xx) just works; they never name the
upstream's address, which stays in the server log.

This module is the app factory: ``create_app`` builds the aligner and the state the routes share
(:mod:`.state`), opens the corrections log, runs the batchers for the app's lifetime, stacks the
middlewares (:mod:`.middleware`), maps every error onto OpenAI's shape (:mod:`.errors`) and
registers the routes: chat completions (:mod:`.chat`, streamed by :mod:`.streaming`), health and
models (:mod:`.info_routes`), metrics (:mod:`.metrics`), feedback (:mod:`.feedback`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..contracts.errors import ConfigError
from .chat import add_chat_route
from .config import ServeConfig
from .errors import APIError
from .feedback import add_feedback_route
from .info_routes import add_info_routes
from .metrics import MetricsMiddleware, add_metrics_route
from .middleware import AccessLogMiddleware, OriginMiddleware, RequestLimitMiddleware
from .state import ServerState

log = logging.getLogger("aligner.serve")


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
    state = ServerState(aligner, config, records)

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


    add_info_routes(app, state)
    add_metrics_route(app, state)
    add_feedback_route(app, state)
    add_chat_route(app, state)
    return app


def _version() -> str:
    from ..contracts.version import __version__

    return __version__
