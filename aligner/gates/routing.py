"""How an :class:`~aligner.core.aligner.Aligner` asks its gate: verdicts for a batch, sync or async, with the
declared on-error policy applied, and the split into answers to correct and answers to pass.

``gate_on_error``: ``"correct"`` (the default) treats an answer the gate could not judge as flagged —
a gate outage costs latency, never a missed correction; ``"pass"`` returns such answers unchanged;
``"raise"`` raises the gate's error. Either way the verdict records the error. A mistake in the
caller's own input (a :class:`~aligner.contracts.errors.ConfigError`) is raised whatever the policy.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

from ..contracts.errors import AlignerError, ConfigError, hide_cause
from .base import Gate, GateVerdict, Pair, check_on_error

log = logging.getLogger("aligner.gate")


class GateRoute:
    """A gate plus its on-error policy: what the Aligner calls."""

    def __init__(self, gate: Gate, on_error: str = "correct"):
        self.gate = gate
        self.on_error = check_on_error(on_error)

    def verdicts(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        t0 = time.perf_counter()
        try:
            return self.gate.verdict_batch(pairs)
        except Exception as exc:
            return self._failed(exc, len(pairs), time.perf_counter() - t0)

    async def averdicts(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        t0 = time.perf_counter()
        try:
            return await self.gate.averdict_batch(pairs)
        except Exception as exc:
            return self._failed(exc, len(pairs), time.perf_counter() - t0)

    def _failed(self, exc: Exception, n: int, seconds: float) -> list[GateVerdict]:
        if isinstance(exc, ConfigError) or self.on_error == "raise":
            if isinstance(exc, AlignerError):
                raise exc
            raise hide_cause(AlignerError(f"the {self.gate.kind} gate failed: {type(exc).__name__}: {exc}",
                                          field="gate", fix="check the gate, or set gate_on_error='correct' "
                                                            "to correct when it cannot answer."), exc)
        flagged = self.on_error == "correct"
        log.warning("the %s gate could not judge %d answer(s) (%s: %s); %s", self.gate.kind, n,
                    type(exc).__name__, str(exc)[:200], "correcting them" if flagged else "passing them unchanged")
        error = f"{type(exc).__name__}: {exc}"[:500]
        return [GateVerdict(flagged, None, [], None, seconds / max(1, n), self.gate.kind, error) for _ in range(n)]


def to_correct(verdicts: Sequence[GateVerdict | None]) -> list[int]:
    """Positions the corrector must see: every one without a gate, else the flagged ones."""
    return [i for i, v in enumerate(verdicts) if v is None or v.flagged]
