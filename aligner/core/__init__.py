"""The Aligner: ask an upstream, gate, correct — for one answer, a batch, a stream or a file of rows
(``aligner correct``). Built on the providers (upstreams, correctors, gates) and the runtime; the
jobs and applications build on it."""
from __future__ import annotations

from .aligner import Aligner

__all__ = ["Aligner"]
