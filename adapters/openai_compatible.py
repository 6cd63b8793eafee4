"""Any OpenAI-compatible chat server (vLLM, llama.cpp, Ollama, TGI...) over httpx.

httpx is a core dependency, so a self-hosted model works without the optional ``openai`` package.
"""
from __future__ import annotations

import threading
from typing import Any, AsyncIterator, Callable, Iterator

from ..errors import UpstreamError
from .base import Messages, Upstream, UpstreamReply, _generic_error, bare_message
from .openai_http import OpenAIHTTP, SSEError, first_model


def http_error(exc: BaseException, policy: Any) -> UpstreamError:
    """Classify httpx failures and in-stream error events (shared with the remote corrector)."""
    if isinstance(exc, SSEError):
        status = exc.status_code
        return UpstreamError(str(exc), status=status, retryable=status in policy.retry_on_status if status
                             else False, fix="see the server's error message.")
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError)) and not isinstance(exc, UpstreamError):
        return UpstreamError(f"the server's reply is not in the OpenAI format ({type(exc).__name__}: {exc}).",
                             fix="check the base URL points at an OpenAI-compatible API (it usually ends in /v1).")
    return _generic_error(exc, policy)


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


class OpenAICompatibleUpstream(Upstream):
    """Chat completions from ``{base_url}/chat/completions``; ``model=None`` asks ``/models``."""

    takes_openai_params = True

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 headers: dict[str, str] | None = None, **kw: Any):
        super().__init__(**kw)
        self.http = OpenAIHTTP(base_url, api_key, headers)
        self.model = model
        self.name = f"{model or '?'}@{self.http.base_url}"
        self._model_lock = threading.Lock()

    # -- model discovery -------------------------------------------------------------------
    def _model(self) -> str:
        if not self.model:
            with self._model_lock:
                if not self.model:
                    self.model = discover_model(self.http, self.retry.timeout, self._to_error)
                    self.name = f"{self.model}@{self.http.base_url}"
        return self.model

    async def _amodel(self) -> str:
        if not self.model:
            self.model = await adiscover_model(self.http, self.retry.timeout, self._to_error)
            self.name = f"{self.model}@{self.http.base_url}"
        return self.model

    # -- provider primitives -----------------------------------------------------------------
    def _body(self, model: str, messages: Messages, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "model": model, "messages": messages}

    @staticmethod
    def _delta(event: dict) -> str:
        choices = event.get("choices") or []
        return (choices[0].get("delta") or {}).get("content") or "" if choices else ""

    def _complete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        body = self._body(self._model(), messages, params)
        return UpstreamReply.from_openai(self.http.post("chat/completions", body, self.retry.timeout))

    def _complete(self, messages: Messages, **params: Any) -> str:
        return self._complete_reply(messages, **params).text

    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        for event in self.http.stream("chat/completions", self._body(self._model(), messages, params),
                                      self.retry.timeout):
            piece = self._delta(event)
            if piece:
                yield piece

    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        body = self._body(await self._amodel(), messages, params)
        return UpstreamReply.from_openai(await self.http.apost("chat/completions", body, self.retry.timeout))

    async def _acomplete(self, messages: Messages, **params: Any) -> str:
        return (await self._acomplete_reply(messages, **params)).text

    async def _astream(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        body = self._body(await self._amodel(), messages, params)
        async for event in self.http.astream("chat/completions", body, self.retry.timeout):
            piece = self._delta(event)
            if piece:
                yield piece

    def _to_error(self, exc: BaseException) -> UpstreamError:
        return http_error(exc, self.retry)

    def close(self) -> None:
        self.http.close()
