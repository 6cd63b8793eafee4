"""Who may use the server: the bearer-key check every route makes (``--api-keys-env``, ``--api-keys-file``).

With no keys configured, auth is off and every request is let in. Keys are compared in constant
time. ``/health`` and ``/metrics`` answer a request without a valid key differently from the
API routes (a bare "ok", a 401 with no numbers), so they ask ``key_error`` rather than ``authorize``.
"""
from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request

from .errors import APIError

if TYPE_CHECKING:
    from .state import ServerState


def key_error(request: Request, state: ServerState) -> APIError | None:
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


def authorize(request: Request, state: ServerState) -> None:
    """Refuse (raise the 401 of ``key_error``) a request an API route must not serve."""
    error = key_error(request, state)
    if error is not None:
        raise error
