"""Any OpenAI-compatible chat server (vLLM, llama.cpp, Ollama, TGI...) over httpx.

httpx is a core dependency, so a self-hosted model works without the optional ``openai`` package.
"""
from __future__ import annotations

import threading
from typing import Any, AsyncIterator, Iterator

from aligner.adapters.base import Messages, OpenAIProtocolUpstream, UpstreamReply
from aligner.contracts.errors import UpstreamError
from aligner.contracts.registry import is_server_url, register_upstream
from aligner.transport.openai_http import OpenAIHTTP, adiscover_model, discover_model, http_error


@register_upstream
class OpenAICompatibleUpstream(OpenAIProtocolUpstream):
    """Chat completions from ``{base_url}/chat/completions``; ``model=None`` asks ``/models``."""

    #: a base URL: ``'http://localhost:8000/v1'``
    matches = staticmethod(is_server_url)

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "OpenAICompatibleUpstream":
        return cls(spec, model, **kw)

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

    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        for event in self.http.stream("chat/completions", self._body(self._model(), messages, params),
                                      self.retry.timeout):
            piece = self._delta(event)
            if piece:
                yield piece

    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        body = self._body(await self._amodel(), messages, params)
        return UpstreamReply.from_openai(await self.http.apost("chat/completions", body, self.retry.timeout))

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
