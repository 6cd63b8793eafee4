"""Upstream providers behind one :class:`Upstream` contract (retries, timeouts, concurrency once).

Provider classes load lazily: importing this package never imports openai, litellm or torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from aligner.adapters.base import RetryPolicy, Upstream, UpstreamStats
from aligner.adapters.resolve import resolve_upstream

_LAZY = {
    "OpenAIUpstream": "openai_api",
    "LiteLLMUpstream": "litellm_api",
    "OpenAICompatibleUpstream": "openai_compatible",
    "HFUpstream": "hf_local",
    "CallableUpstream": "callable",
}

__all__ = ["Upstream", "RetryPolicy", "UpstreamStats", "resolve_upstream", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"aligner.adapters.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
