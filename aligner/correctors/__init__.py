"""Correctors: what rewrites an answer. ``load_corrector`` turns a spec into one.

A spec is a :class:`Corrector`, a hub id or directory of a causal or encoder-decoder model, an
``http(s)://…/v1`` base URL of a completions server serving an Aligner, None or ``"demo"`` for the
embedded demo corrector, or a list of these: correctors stacked in order
(:mod:`aligner.correctors.stack`). Each backend module registers its class with :data:`aligner.contracts.registry.CORRECTORS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError
from ..contracts.registry import CORRECTORS
from ..contracts.streaming import StreamParser
from .backend import Backend, RowDecoder
from .base import Corrector

DEMO_CORRECTOR = Path(__file__).resolve().parent.parent / "assets" / "demo-corrector"

__all__ = ["Backend", "Corrector", "RowDecoder", "StreamParser", "load_corrector", "demo_corrector_path", "DEMO_CORRECTOR"]


def demo_corrector_path() -> Path:
    """The small corrector shipped in the package (runs offline on a laptop CPU)."""
    if not (DEMO_CORRECTOR / "config.json").is_file():
        raise ConfigError("the embedded demo corrector is missing from this installation.",
                          field="corrector", fix="pass corrector=PATH_OR_HUB_ID, or rebuild it with "
                          "`python -m aligner.train.demo_corrector`.")
    return DEMO_CORRECTOR


def load_corrector(spec: "Corrector | str | Path | None" = None, *, template: Any = None,
                   decoding: Any = None, device: str | None = None, model: str | None = None,
                   api_key: str | None = None, **kwargs: Any) -> Corrector:
    """Resolve a corrector spec: the first backend in :data:`aligner.contracts.registry.CORRECTORS` whose
    ``matches`` takes it builds it (plug-ins register through the ``aligner.correctors`` entry point
    group); local models load via ``from_pretrained`` (hub id or path alike)."""
    if isinstance(spec, Corrector):
        return spec
    if isinstance(spec, (list, tuple)):  # stacked correctors, applied in order (aligner.correctors.stack)
        from .stack import StackedCorrector

        stages = [load_corrector(one, template=template, decoding=decoding, device=device, model=model,
                                 api_key=api_key, **kwargs) for one in spec]
        return stages[0] if len(stages) == 1 else StackedCorrector(stages)
    if spec is None or (spec == "demo" and not Path(spec).exists()):
        spec = demo_corrector_path()
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"expected a model id, path, URL or Corrector, got {spec!r}.", field="corrector",
                          fix="e.g. corrector='aligner/aligner-7b-v1.0' or a directory from `aligner train`.")
    return CORRECTORS.build(spec, template=template, decoding=decoding, device=device, model=model,
                            api_key=api_key, **kwargs, otherwise=lambda: ConfigError(
                                f"no corrector backend takes {spec!r}.", field="corrector",
                                fix="pass a hub id, a directory, an http(s) URL or a Corrector."))
