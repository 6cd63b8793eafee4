"""Any provider LiteLLM knows (``"anthropic/claude-..."``, ``"openai/gpt-4o-mini"``, ``"ollama/..."``).

litellm is imported on first use only: it is an optional extra and takes seconds to import, and
``import aligner`` must stay fast. Its own retries are off (``num_retries=0``, ``max_retries=0``)
so back-off happens once, in :mod:`aligner.adapters.base`.
"""
from __future__ import annotations

import os
import re
from typing import Any, AsyncIterator, Iterator

from aligner.contracts.errors import ConfigError, UpstreamError, UpstreamTimeout
from aligner.adapters.base import Messages, OpenAIProtocolUpstream, UpstreamReply
from aligner.contracts.registry import is_nonempty_string, register_upstream
from aligner.transport.retry import bare_message, generic_error


#: litellm's wording when a provider's key is absent (the OpenAI provider reports it as a 500)
_MISSING_KEY = re.compile(r"missing credentials|missing [\w ]*api key|api_key client option must be set", re.I)
_KEY_VAR = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:API_KEY|AUTH_TOKEN)\b")


def _litellm() -> Any:
    try:
        import litellm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("a LiteLLM model string needs the litellm package.", field="upstream",
                          fix="pip install 'aligner-kit[litellm]', or pass an OpenAI client / base URL.") from exc
    litellm.suppress_debug_info = True
    return litellm


@register_upstream
class LiteLLMUpstream(OpenAIProtocolUpstream):
    """Chat completions through ``litellm.completion`` / ``acompletion``."""

    #: any string no other provider claims is a LiteLLM model string: tried last.
    spec_priority = -100
    matches = staticmethod(is_nonempty_string)

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "LiteLLMUpstream":
        if model is not None:
            raise ConfigError(f"a LiteLLM model string ({spec!r}) already names the model; got "
                              f"model={model!r} as well.", field="upstream_model",
                              fix="drop upstream_model, or pass an OpenAI client / base URL with it.")
        return cls(spec, **kw)

    def __init__(self, model: str, api_base: str | None = None, api_key: str | None = None, **kw: Any):
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"expected a LiteLLM model string, got {model!r}.", field="upstream",
                              fix="e.g. upstream='openai/gpt-4o-mini' or 'anthropic/claude-3-5-haiku-latest'.")
        super().__init__(**kw)
        self.model = model.strip()
        self.api_base = api_base
        self.api_key = api_key
        self.name = self.model

    def _request(self, messages: Messages, params: dict[str, Any], stream: bool) -> dict[str, Any]:
        req = {**params, "model": self.model, "messages": messages, "stream": stream,
               "timeout": self.retry.timeout, "num_retries": 0, "max_retries": 0}
        if self.api_base:
            req["api_base"] = self.api_base
        if self.api_key:
            req["api_key"] = self.api_key
        return req

    @staticmethod
    def _delta(chunk: Any) -> str:
        choices = getattr(chunk, "choices", None)
        return (getattr(choices[0].delta, "content", None) or "") if choices else ""

    def _complete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        return UpstreamReply.from_openai(_litellm().completion(**self._request(messages, params, False)))

    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        for chunk in _litellm().completion(**self._request(messages, params, True)):
            piece = self._delta(chunk)
            if piece:
                yield piece

    async def _acomplete_reply(self, messages: Messages, **params: Any) -> UpstreamReply:
        return UpstreamReply.from_openai(await _litellm().acompletion(**self._request(messages, params, False)))

    async def _astream(self, messages: Messages, **params: Any) -> AsyncIterator[str]:
        stream = await _litellm().acompletion(**self._request(messages, params, True))
        async for chunk in stream:
            piece = self._delta(chunk)
            if piece:
                yield piece

    def _key_variables(self, text: str) -> list[str]:
        """The environment variables that hold this provider's key, as litellm knows them."""
        names: list[str] = []
        try:
            names = list(_litellm().validate_environment(model=self.model, api_base=self.api_base)
                         .get("missing_keys") or [])
        except Exception:  # noqa: BLE001 - a best-effort hint; the error text is the fallback
            pass
        names = [n for n in names if "KEY" in n or "TOKEN" in n] or _KEY_VAR.findall(text)
        return list(dict.fromkeys(names))

    def _auth_error(self, text: str) -> UpstreamError:
        """A missing or rejected API key: retrying cannot help, and the fix is a variable to set."""
        names = self._key_variables(text)
        var = " or ".join(names) or "the provider's API key variable"
        if not self.api_key and names and not any(os.environ.get(n) for n in names):
            msg = f"{self.name}: no API key: {var} is not set."
            fix = f"export {names[0] if names else 'THE_KEY_VARIABLE'}=... (or pass api_key=...)."
        else:
            msg = f"{self.name}: the API key was rejected (HTTP 401): {text[:300]}"
            fix = f"check the key in {var} (or api_key=)."
        return UpstreamError(msg, status=401, retryable=False, fix=fix)

    def _to_error(self, exc: BaseException) -> UpstreamError:
        litellm = _litellm()
        E = litellm.exceptions
        text = str(getattr(exc, "message", exc))
        if isinstance(exc, E.Timeout):
            return UpstreamTimeout(f"{self.name} timed out after {self.retry.timeout}s.", status=504,
                                   retryable=True, fix="raise RetryPolicy.timeout or check the upstream.")
        if isinstance(exc, E.APIConnectionError) or (isinstance(exc, E.InternalServerError)
                                                     and "Connection error" in text):
            where = f" at {self.api_base}" if self.api_base else ""
            return UpstreamError(f"cannot reach {self.name}{where} ({text[:300]}).", status=502, retryable=True,
                                 fix="check api_base / network and that the server is running.")
        if isinstance(exc, E.AuthenticationError) or getattr(exc, "status_code", None) == 401 \
                or _MISSING_KEY.search(text):
            return self._auth_error(text)
        if isinstance(exc, E.BadRequestError) and "LLM Provider NOT provided" in text:
            return UpstreamError(f"LiteLLM does not know the provider of {self.name!r}.", status=400,
                                 fix="prefix the provider, e.g. 'openai/gpt-4o-mini', 'anthropic/claude-...', "
                                     "or pass a base URL for a self-hosted server.")
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            err = generic_error(exc, self.retry)
            headers = getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None) or {}
            out = UpstreamError(f"{self.name}: HTTP {status}: {text[:300]}", status=status,
                                retryable=err.retryable, fix=err.fix)
            retry_after = getattr(err, "retry_after", None)
            if retry_after is None:
                try:
                    retry_after = float(dict(headers).get("retry-after"))
                except (TypeError, ValueError):
                    retry_after = None
            if retry_after is not None:
                out.retry_after = retry_after  # type: ignore[attr-defined]
            return out
        err = generic_error(exc, self.retry)
        return err if err.retryable else UpstreamError(f"{self.name}: {bare_message(err)}", fix=err.fix)
