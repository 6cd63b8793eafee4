"""Turn whatever a user passed as ``upstream`` into an :class:`Upstream`.

Detection never imports a provider library: an OpenAI client is recognised by its class's module,
a transformers model by its class hierarchy, so ``import aligner`` stays light and a user without
the ``openai`` or ``litellm`` extra only needs it for the form they actually use.
"""
from __future__ import annotations

from typing import Any

from aligner.errors import ConfigError
from aligner.adapters.base import Upstream

ACCEPTED = ("a LiteLLM model string ('openai/gpt-4o-mini', 'anthropic/claude-3-5-haiku-latest'), "
            "an openai.OpenAI / AsyncOpenAI client plus model=..., a base URL of an OpenAI-compatible "
            "server ('http://localhost:8000/v1'), 'hf:PATH_OR_HUB_ID' or a loaded transformers model, "
            "a Python function str -> str (sync, async or a generator), or an Upstream instance")


def is_openai_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "openai" and hasattr(obj, "chat")


def is_transformers_model(obj: Any) -> bool:
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(obj).__mro__)


def resolve_upstream(spec: Any, model: str | None = None, **kw: Any) -> Upstream:
    """An :class:`Upstream` for ``spec``; ``kw`` are Upstream options (``retry``,
    ``max_concurrency``, ``system_prompt``, ``params``) plus provider options (``api_key``, ...)."""
    if isinstance(spec, Upstream):
        return spec
    if isinstance(spec, str):
        spec = spec.strip()
        if spec.startswith(("http://", "https://")):
            from aligner.adapters.openai_compatible import OpenAICompatibleUpstream

            return OpenAICompatibleUpstream(spec, model, **kw)
        if spec.startswith("hf:"):
            from aligner.adapters.hf_local import HFUpstream

            if not spec[3:].strip():
                raise ConfigError("'hf:' needs a model path or hub id after it.", field="upstream",
                                  fix="e.g. upstream='hf:./my-model' or 'hf:Qwen/Qwen2.5-0.5B-Instruct'.")
            return HFUpstream(spec[3:].strip(), **kw)
        if spec:
            if model is not None:
                raise ConfigError(f"a LiteLLM model string ({spec!r}) already names the model; got "
                                  f"model={model!r} as well.", field="upstream_model",
                                  fix="drop upstream_model, or pass an OpenAI client / base URL with it.")
            from aligner.adapters.litellm_api import LiteLLMUpstream

            return LiteLLMUpstream(spec, **kw)
    elif is_openai_client(spec):
        if not model:
            raise ConfigError("an OpenAI client needs the model name to ask.", field="upstream_model",
                              fix="pass upstream_model='gpt-4o-mini' (or model= to resolve_upstream).")
        from aligner.adapters.openai_api import OpenAIUpstream

        return OpenAIUpstream(spec, model, **kw)
    elif is_transformers_model(spec):
        from aligner.adapters.hf_local import HFUpstream

        return HFUpstream(spec, **kw)
    elif callable(spec):
        from aligner.adapters.callable import CallableUpstream

        return CallableUpstream(spec, **kw)
    raise ConfigError(f"cannot use {spec!r} ({type(spec).__name__}) as the upstream model.",
                      field="upstream", fix=f"pass {ACCEPTED}.")
