"""Turn whatever a user passed as ``upstream`` into an :class:`Upstream`.

Each provider module registers its class with :data:`aligner.contracts.registry.UPSTREAMS` (its
``matches``/``from_spec`` say which specs it takes); plug-ins add theirs through the
``aligner.upstreams`` entry point group. Detection never imports a provider library: an OpenAI
client is recognised by its class's module, a transformers model by its class hierarchy, so
``import aligner`` stays light and a user without the ``openai`` or ``litellm`` extra only needs
it for the form they actually use.
"""
from __future__ import annotations

from typing import Any

from aligner.contracts.errors import ConfigError
from aligner.adapters.base import Upstream
from aligner.contracts.registry import UPSTREAMS

ACCEPTED = ("a LiteLLM model string ('openai/gpt-4o-mini', 'anthropic/claude-3-5-haiku-latest'), "
            "an openai.OpenAI / AsyncOpenAI client plus model=..., a base URL of an OpenAI-compatible "
            "server ('http://localhost:8000/v1'), 'hf:PATH_OR_HUB_ID' or a loaded transformers model, "
            "a Python function str -> str (sync, async or a generator), or an Upstream instance")


def resolve_upstream(spec: Any, model: str | None = None, **kw: Any) -> Upstream:
    """An :class:`Upstream` for ``spec``: the first provider in :data:`aligner.contracts.registry.UPSTREAMS`
    whose ``matches`` takes it builds it. ``kw`` are Upstream options (``retry``,
    ``max_concurrency``, ``system_prompt``, ``params``) plus provider options (``api_key``, ...)."""
    if isinstance(spec, Upstream):
        return spec
    if isinstance(spec, str):
        spec = spec.strip()
    return UPSTREAMS.build(spec, model, **kw, otherwise=lambda: ConfigError(
        f"cannot use {spec!r} ({type(spec).__name__}) as the upstream model.", field="upstream",
        fix=f"pass {ACCEPTED}."))
