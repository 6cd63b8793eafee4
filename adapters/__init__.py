"""Upstream providers behind one :class:`Upstream` contract (retries, timeouts, concurrency once).

Each provider module registers its class with :data:`aligner.contracts.registry.UPSTREAMS`; a provider class
is reachable here by name (``aligner.adapters.OpenAIUpstream``) without a hand-kept table. Provider
classes load lazily: importing this package never imports openai, litellm or torch.
"""
from __future__ import annotations

from typing import Any

from aligner.adapters.base import RetryPolicy, Upstream, UpstreamStats
from aligner.adapters.resolve import resolve_upstream

__all__ = ["Upstream", "RetryPolicy", "UpstreamStats", "resolve_upstream"]


def __getattr__(name: str) -> Any:
    from aligner.contracts.registry import UPSTREAMS

    for cls in UPSTREAMS:
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
