"""The ``callable`` gate: a Python function ``(question, answer) -> bool | GateVerdict``.

``True`` flags the answer (score 1.0), ``False`` passes it (score 0.0); a :class:`GateVerdict` is
used as it is (its ``flagged`` decides; a threshold given to the gate is not applied to it — the
function already decided). An ``async def`` function is awaited on the async paths and run to
completion on the sync ones. Anything else it returns is an error naming the gate.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Sequence

from ..contracts.errors import AlignerError
from ..contracts.registry import register_gate
from .base import Gate, GateVerdict, Judgement, Pair


@register_gate
class CallableGate(Gate):
    """A function as a gate."""

    kind = "callable"
    spec_priority = -10  # the catch-all for callables: a plug-in's callable class is tried first
    predicts_severity = True  # a returned GateVerdict may carry one

    def __init__(self, fn: Callable[[str, str], Any], *, threshold: float | None = None,
                 min_severity: str | None = None, **_: Any):
        super().__init__(threshold=threshold, min_severity=min_severity)
        self.fn = fn
        self.name = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))

    @classmethod
    def matches(cls, spec: Any) -> bool:
        return callable(spec) and not isinstance(spec, (type, Gate))

    @classmethod
    def from_spec(cls, spec: Any, **kw: Any) -> "CallableGate":
        kw.pop("device", None)
        return cls(spec, **kw)

    def _judgement(self, out: Any) -> Judgement:
        if isinstance(out, GateVerdict):
            return Judgement(float(out.score), list(out.categories), out.severity, None, bool(out.flagged))
        if isinstance(out, bool):
            return Judgement(1.0 if out else 0.0, [], None, None, out)
        raise AlignerError(f"the gate function {self.name} returned {type(out).__name__} ({str(out)[:60]!r}).",
                           field="gate", fix="return True (correct it), False (pass it) or a GateVerdict.")

    def decide(self, j: Judgement, seconds: float = 0.0) -> GateVerdict:
        verdict = super().decide(j, seconds)
        verdict.flagged = bool(j.flagged)  # the function decided; no threshold is laid over it
        if self.min_severity and j.severity is not None:
            from ..data.pku_saferlhf import SEVERITY_LEVELS

            verdict.flagged = verdict.flagged and SEVERITY_LEVELS.index(j.severity) >= SEVERITY_LEVELS.index(self.min_severity)
        return verdict

    def judge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        if self.is_async:
            return [self._judgement(asyncio.run(self.fn(q, a))) for q, a in pairs]
        return [self._judgement(self.fn(q, a)) for q, a in pairs]

    async def ajudge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        if self.is_async:
            return [self._judgement(await self.fn(q, a)) for q, a in pairs]
        return await super().ajudge(pairs)
