"""The OpenAI-shaped error a client of the proxy gets, and how an upstream's failure maps onto it.

Every refusal — a bad field, a missing key, a body too large, an upstream that failed — comes back
as ``{"error": {"message", "type", "param", "code"}}`` with the status an OpenAI client expects, so
its retry logic (429 with ``Retry-After``, 5xx) just works. Its own module because every part of the
server raises these (the routes, the middlewares, the request checks, the body reader) and none of
them should import another for it.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi.responses import JSONResponse

from ..adapters.base import bare_message
from ..contracts.errors import UpstreamError, UpstreamTimeout

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
          415: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 502: "upstream_error", 503: "server_error",
          504: "timeout_error"}

#: anything that looks like a URL in an upstream's error text (its address, an endpoint path).
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


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


def invalid(param: str, message: str, code: str = "invalid_value") -> APIError:
    """A 400 for one field; the message starts with the field's name."""
    return APIError(400, f"{param}: {message}", param=param, code=code)


def shown(value: Any) -> str:
    """A value as the client wrote it (JSON: ``true``, ``null``), cut to 40 characters: an error
    message never echoes a whole 10 KB field back."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def upstream_error(exc: UpstreamError) -> APIError:
    """Map an upstream failure onto what the proxy's client should see.

    429 stays 429 with the upstream's ``Retry-After`` (the client should back off); a timeout is
    504; a 400 is the client's request (e.g. too long for the upstream); anything else — 5xx,
    connection errors, and 401/403/404, which mean the *proxy's* upstream settings are wrong — is
    502. The message keeps the upstream's reason but not its address: the upstream is internal.
    """
    status = exc.status
    msg = "upstream: " + URL.sub("<upstream>", bare_message(exc))
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

