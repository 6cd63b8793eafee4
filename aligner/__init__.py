"""aligner-kit: put an Aligner (a small answer corrector, arXiv 2402.02416) on top of any LLM."""
from __future__ import annotations

from typing import Any

from .contracts.correction import Correction
from .contracts.decoding import DecodingConfig
from .contracts.errors import AlignerError, ConfigError, CorrectorError, DataError, UpstreamError
from .contracts.templates import Template, get_template
from .contracts.version import __version__
from .core.aligner import Aligner
from .gates import GateVerdict

__all__ = ["Aligner", "Correction", "DecodingConfig", "GateVerdict", "Template", "get_template", "wrap", "AlignerError",
           "ConfigError", "CorrectorError", "DataError", "UpstreamError", "__version__"]


def wrap(client: Any, corrector: Any = None, **kwargs: Any) -> Any:
    """A drop-in OpenAI client whose chat answers come back corrected (see :mod:`aligner.integrations.wrapped_client`)."""
    from .integrations.wrapped_client import wrap as _wrap

    return _wrap(client, corrector=corrector, **kwargs)
