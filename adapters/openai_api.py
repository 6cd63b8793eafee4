"""An ``openai.OpenAI`` / ``AsyncOpenAI`` client as the upstream.

The user's client is kept as given (base URL, key, headers, organisation) with its own retries
turned off, so back-off happens once, in :mod:`aligner.adapters.base`, and is visible in
``stats``. A sync client gets an async twin (and vice versa) built from the same settings, so
``answer`` and ``aanswer`` both work whichever one was passed.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from typing import Any, AsyncIterator, Iterator

from aligner.contracts.errors import ConfigError, UpstreamError, UpstreamTimeout
from aligner.adapters.base import Messages, OpenAIProtocolUpstream, UpstreamReply
from aligner.contracts.registry import register_upstream
from aligner.transport.retry import generic_error


def _twin(client: Any, async_: bool) -> Any:
    """A client of the other kind (sync/async) with the same endpoint and credentials."""
    import openai

    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    if isinstance(client, (openai.AsyncAzureOpenAI, openai.AzureOpenAI)):
        raise ConfigError("Azure OpenAI clients cannot be mirrored between sync and async here.",
                          field="upstream", fix="pass a LiteLLM 'azure/<deployment>' string instead.")
    return cls(api_key=client.api_key, organization=client.organization, project=client.project,
               base_url=client.base_url, default_headers=getattr(client, "_custom_headers", None) or None,
               default_query=getattr(client, "_custom_query", None) or None, max_retries=0)


@functools.lru_cache(maxsize=1)
def _create_fields() -> frozenset[str]:
    """Keyword arguments of the installed SDK's ``chat.completions.create``."""
    from openai.resources.chat.completions import Completions

    return frozenset(inspect.signature(Completions.create).parameters) - {"self"}


@register_upstream
class OpenAIUpstream(OpenAIProtocolUpstream):
    """Chat completions through the official SDK (``client.chat.completions.create``)."""

    @classmethod
    def matches(cls, spec: Any) -> bool:
        """An ``openai.OpenAI`` / ``AsyncOpenAI`` client, told by its class's module (so telling
        never imports openai)."""
        return type(spec).__module__.split(".")[0] == "openai" and hasattr(spec, "chat")

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "OpenAIUpstream":
        if not model:
            raise ConfigError("an OpenAI client needs the model name to ask.", field="upstream_model",
                              fix="pass upstream_model='gpt-4o-mini' (or model= to resolve_upstream).")
        return cls(spec, model, **kw)

    def __init__(self, client: Any, model: str, **kw: Any):
        import openai

        if not isinstance(model, str) or not model.strip():
            raise ConfigError("an OpenAI client needs the model name to ask.", field="upstream_model",
                              fix="pass upstream_model='gpt-4o-mini' (or model=).")
        if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
            raise ConfigError(f"expected openai.OpenAI or AsyncOpenAI, got {type(client).__name__}.",
                              field="upstream", fix="pass openai.OpenAI(...) or openai.AsyncOpenAI(...).")
        super().__init__(**kw)
        self.model = model
        self.name = model
        is_async = isinstance(client, openai.AsyncOpenAI)
        other = _twin(client, async_=not is_async)
        sync, async_ = (other, client) if is_async else (client, other)
        self.client = sync.with_options(max_retries=0, timeout=self.retry.timeout)
        self._aclient = async_.with_options(max_retries=0, timeout=self.retry.timeout)
        self._aclient_loop: Any = None
        self._aclients: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()

    @property
    def aclient(self) -> Any:
        """The async client for the running event loop.

        httpx async connections belong to the loop that opened them; reusing the pool from a
        finished ``asyncio.run`` fails with a connection error. The first loop uses the user's
        client; any later loop gets a copy with its own connection pool.
        """
        import openai

        loop = asyncio.get_running_loop()
        if self._aclient_loop is None:
            self._aclient_loop = weakref.ref(loop)
        if self._aclient_loop() is loop:
            return self._aclient
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = self._aclient.with_options(
                http_client=openai.DefaultAsyncHttpxClient())
        return client

    def _request(self, messages: Messages, params: dict[str, Any], stream: bool) -> dict[str, Any]:
        # A field the SDK's create() does not name (a vLLM ``top_k``) would be a TypeError there;
        # it goes in ``extra_body``, which the SDK merges into the JSON as it is.
        known = _create_fields()
        req = {k: v for k, v in params.items() if k in known}
        extra = {k: v for k, v in params.items() if k not in known}
        if extra:
            req["extra_body"] = {**(req.get("extra_body") or {}), **extra}
        return {**req, "model": self.model, "messages": messages, "stream": stream, "timeout": self.retry.timeout}

    @staticmethod
    def _delta(chunk: Any) -> str:
        return (chunk.choices[0].delta.content or "") if chunk.choices else ""

    def _complete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        return UpstreamReply.from_openai(self.client.chat.completions.create(**self._request(messages, params, False)))

    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        with self.client.chat.completions.create(**self._request(messages, params, True)) as stream:
            for chunk in stream:
                piece = self._delta(chunk)
                if piece:
                    yield piece

    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        reply = await self.aclient.chat.completions.create(**self._request(messages, params, False))
        return UpstreamReply.from_openai(reply)

    async def _astream(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        stream = await self.aclient.chat.completions.create(**self._request(messages, params, True))
        async with stream:
            async for chunk in stream:
                piece = self._delta(chunk)
                if piece:
                    yield piece

    def _to_error(self, exc: BaseException) -> UpstreamError:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeout(f"{self.name} timed out after {self.retry.timeout}s.", status=504,
                                   retryable=True, fix="raise RetryPolicy.timeout or check the upstream.")
        if isinstance(exc, openai.APIConnectionError):
            return UpstreamError(f"cannot reach the upstream at {self.client.base_url} ({exc}).", status=502,
                                 retryable=True, fix="check base_url and that the server is running.")
        if isinstance(exc, openai.APIStatusError):
            msg = exc.message
            body = exc.body
            if isinstance(body, dict) and isinstance(body.get("message"), str):
                msg = body["message"]
            err = generic_error(exc, self.retry)
            return UpstreamError(f"{self.name}: HTTP {exc.status_code}: {msg}", status=exc.status_code,
                                 retryable=err.retryable, fix=err.fix, retry_after=err.retry_after)
        return generic_error(exc, self.retry)
