"""GGUF: a corrector as a file llama.cpp runs (llama-cpp-python, Ollama, LM Studio, llama-server).

``to_gguf`` converts a causal corrector with llama.cpp's own converter (:mod:`.convert`); the
``aligner.*`` keys it adds are :mod:`.format`; the backend that decodes such a file is
:mod:`aligner.correctors.llamacpp`. Nothing here imports llama.cpp or the ``gguf`` package until
it is used (the ``gguf`` extra installs them).
"""
from __future__ import annotations

from typing import Any

__all__ = ["to_gguf", "GGUF_TYPES"]
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_k_m")


def to_gguf(*args: Any, **kwargs: Any) -> Any:
    """See :func:`aligner.gguf.convert.to_gguf`."""
    from .convert import to_gguf as _to_gguf

    return _to_gguf(*args, **kwargs)
