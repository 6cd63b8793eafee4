"""aligner-kit: put an Aligner (a small answer corrector, arXiv 2402.02416) on top of any LLM."""
from __future__ import annotations

from typing import Any

from .correction import Correction
from .core import Aligner
from .decoding import DecodingConfig
from .errors import AlignerError, ConfigError, CorrectorError, DataError, UpstreamError
from .gates import GateVerdict
from .templates import Template, get_template

__version__ = "0.1.0"
__all__ = ["Aligner", "Correction", "DecodingConfig", "GateVerdict", "Template", "get_template", "wrap", "AlignerError",
           "ConfigError", "CorrectorError", "DataError", "UpstreamError", "__version__"]


def wrap(client: Any, corrector: Any = None, **kwargs: Any) -> Any:
    """A drop-in OpenAI client whose chat answers come back corrected (see :mod:`aligner.wrapped_client`)."""
    from .wrapped_client import wrap as _wrap

    return _wrap(client, corrector=corrector, **kwargs)
