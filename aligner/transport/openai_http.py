"""The OpenAI wire protocol over plain httpx: JSON posts, SSE streams, error bodies, model discovery.

Shared by the OpenAI-compatible upstream (chat completions) and the remote corrector (completions)
so both read server-sent events, error bodies and ``GET /models`` the same way, without the
optional ``openai`` package. An ``httpx.AsyncClient`` belongs to the event loop it first ran on, so one is kept per
loop: a client reused across ``asyncio.run`` calls would fail on its dead loop's connections.
"""
from __future__ import annotations

import asyncio
import json
import threading
import weakref
from typing import Any, AsyncIterator, Callable, Iterator

import httpx

from aligner.contracts.errors import ConfigError, UpstreamError
from aligner.transport.retry import bare_message, generic_error


class SSEError(RuntimeError):
    """An ``{"error": ...}`` event inside a stream (the HTTP status was already 200)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


def _status_error(resp: httpx.Response) -> httpx.HTTPStatusError:
    """An HTTPStatusError whose message is the server's own error text, not just the status line."""
    detail = resp.text[:500]
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            detail = str(err["message"])
        elif isinstance(err, str):
            detail = err
        elif isinstance(body, dict) and body.get("detail"):
            detail = str(body["detail"])
    except ValueError:
        pass
    return httpx.HTTPStatusError(f"{resp.request.method} {resp.request.url}: {detail}",
                                 request=resp.request, response=resp)


def _event(line: str) -> dict | None:
    """The JSON payload of one SSE ``data:`` line; None for other lines and ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    event = json.loads(data)
    if isinstance(event, dict) and event.get("error"):
        err = event["error"]
        msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        code = err.get("code") if isinstance(err, dict) else None
        raise SSEError(f"error in stream: {msg}", code if isinstance(code, int) else None)
    return event


def check_base_url(base_url: Any, field: str) -> str:
    """Reject a URL httpx cannot use up front: otherwise it fails as a transport error, which the
    retry loop would take for a server that is down and retry with back-off."""
    ok = isinstance(base_url, str) and base_url.strip().startswith(("http://", "https://"))
    if ok:
        try:
            ok = bool(httpx.URL(base_url.strip()).host)
        except (httpx.InvalidURL, TypeError, ValueError):
            ok = False
    if not ok:
        raise ConfigError(f"not an http(s) base URL: {base_url!r}.", field=field,
                          fix="pass the server's URL with its scheme, e.g. 'http://localhost:8000/v1'.")
    return base_url.strip().rstrip("/")


class OpenAIHTTP:
    """A base URL plus auth, with sync and async JSON and SSE calls."""

    def __init__(self, base_url: str, api_key: str | None = None, headers: dict[str, str] | None = None,
                 *, field: str = "upstream"):
        self.base_url = check_base_url(base_url, field)
        self.headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client | None = None
        self._aclients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(headers=self.headers)
            return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = httpx.AsyncClient(headers=self.headers)
        return client

    # -- sync -----------------------------------------------------------------------------
    def get(self, path: str, timeout: float | None) -> Any:
        resp = self.client.get(self.url(path), timeout=timeout)
        if resp.status_code >= 400:
            raise _status_error(resp)
        return resp.json()

    def post(self, path: str, body: dict, timeout: float | None) -> Any:
        resp = self.client.post(self.url(path), json=body, timeout=timeout)
        if resp.status_code >= 400:
            raise _status_error(resp)
        return resp.json()

    def stream(self, path: str, body: dict, timeout: float | None) -> Iterator[dict]:
        with self.client.stream("POST", self.url(path), json={**body, "stream": True}, timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _status_error(resp)
            for line in resp.iter_lines():
                event = _event(line)
                if event is not None:
                    yield event

    # -- async ----------------------------------------------------------------------------
    async def aget(self, path: str, timeout: float | None) -> Any:
        resp = await self.aclient.get(self.url(path), timeout=timeout)
        if resp.status_code >= 400:
            raise _status_error(resp)
        return resp.json()

    async def apost(self, path: str, body: dict, timeout: float | None) -> Any:
        resp = await self.aclient.post(self.url(path), json=body, timeout=timeout)
        if resp.status_code >= 400:
            raise _status_error(resp)
        return resp.json()

    async def astream(self, path: str, body: dict, timeout: float | None) -> AsyncIterator[dict]:
        async with self.aclient.stream("POST", self.url(path), json={**body, "stream": True},
                                       timeout=timeout) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise _status_error(resp)
            async for line in resp.aiter_lines():
                event = _event(line)
                if event is not None:
                    yield event

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def first_model(listing: Any) -> str | None:
    """The first model id of a ``GET /models`` answer (OpenAI and Ollama shapes)."""
    if isinstance(listing, dict):
        for key in ("data", "models"):
            items = listing.get(key)
            if isinstance(items, list) and items:
                item = items[0]
                mid = item.get("id") or item.get("name") or item.get("model") if isinstance(item, dict) else item
                return str(mid) if mid else None
    return None


def http_error(exc: BaseException, policy: Any) -> UpstreamError:
    """Classify httpx failures and in-stream error events (shared with the remote corrector)."""
    if isinstance(exc, SSEError):
        status = exc.status_code
        return UpstreamError(str(exc), status=status, retryable=status in policy.retry_on_status if status
                             else False, fix="see the server's error message.")
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError)) and not isinstance(exc, UpstreamError):
        return UpstreamError(f"the server's reply is not in the OpenAI format ({type(exc).__name__}: {exc}).",
                             fix="check the base URL points at an OpenAI-compatible API (it usually ends in /v1).")
    return generic_error(exc, policy)


#: who the discovered model belongs to → (field named in the error, how to name the model instead)
_MODEL_ARG = {"upstream": ("upstream_model", "pass model= (upstream_model=, --upstream-model)"),
              "corrector": ("corrector", "pass model= to RemoteCorrector / load_corrector")}


def _picked(http: OpenAIHTTP, listing: Any, role: str) -> str:
    model = first_model(listing)
    if not model:
        field, how = _MODEL_ARG[role]
        raise UpstreamError(f"{http.url('models')} lists no models.", field=field,
                            fix=f"{how} naming the model the server runs.")
    return model


def _listing_failed(http: OpenAIHTTP, err: UpstreamError, role: str) -> UpstreamError:
    field, how = _MODEL_ARG[role]
    return UpstreamError(f"no model was given and listing {http.url('models')} failed: {bare_message(err)}",
                         field=field, status=err.status, retryable=err.retryable,
                         fix=f"{how}, or check the base URL (it usually ends in /v1).")


def discover_model(http: OpenAIHTTP, timeout: float | None,
                   classify: Callable[[BaseException], UpstreamError], role: str = "upstream") -> str:
    """The first model ``GET /models`` lists: what a one-model vLLM / llama.cpp server runs."""
    try:
        listing = http.get("models", timeout)
    except Exception as exc:
        raise _listing_failed(http, classify(exc), role) from exc
    return _picked(http, listing, role)


async def adiscover_model(http: OpenAIHTTP, timeout: float | None,
                          classify: Callable[[BaseException], UpstreamError], role: str = "upstream") -> str:
    try:
        listing = await http.aget("models", timeout)
    except Exception as exc:
        raise _listing_failed(http, classify(exc), role) from exc
    return _picked(http, listing, role)
