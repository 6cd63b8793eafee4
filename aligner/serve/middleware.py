"""The server's ASGI middlewares: the access log, the cap on requests handled at once, the check of
a browser's ``Origin``.

They wrap every route (chat, feedback, models, health, metrics) and run before a route's own code;
``create_app`` stacks them in the order the comment there gives. Pure ASGI classes, not
``BaseHTTPMiddleware``, so a streamed response is neither buffered nor timed before its end.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from .errors import APIError

access_log = logging.getLogger("aligner.serve.access")


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
