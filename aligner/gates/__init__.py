"""Gates: a cheap check before the corrector, so only the answers that need it are corrected.

``load_gate`` turns a spec into a :class:`Gate`: ``"demo"`` (the embedded demo classifier),
``"classifier:PATH"`` or a directory from ``aligner train-gate``, ``"cost:PATH"`` or a directory of a
``num_labels=1`` reward/cost model, ``"moderation"`` / ``"moderation:URL"`` / an ``http(s)://…/v1``
URL of an OpenAI-protocol moderation endpoint, a Python function ``(question, answer) -> bool |
GateVerdict``, or a :class:`Gate`. Each kind registers itself with :data:`aligner.contracts.registry.GATES`;
plug-ins join through the ``aligner.gates`` entry point group.
"""
from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError
from ..contracts.registry import GATES, register_gate
from .base import (MIN_SEVERITIES, ON_ERROR, Gate, GateVerdict, Judgement, check_min_severity, check_on_error,
                   check_threshold)

__all__ = ["Gate", "GateVerdict", "Judgement", "load_gate", "register_gate", "demo_gate_path", "ON_ERROR",
           "MIN_SEVERITIES", "check_min_severity", "check_on_error", "check_threshold", "NO_GATE",
           "demo_gate_flags"]

#: specs that mean "no gate" on a command line (``aligner demo --gate none``)
NO_GATE = ("none", "off", "no")


def demo_gate_path() -> Path:
    """The small gate classifier shipped in the package (runs offline on a laptop CPU)."""
    from .classifier import DEMO_GATE

    if not (DEMO_GATE / "config.json").is_file():
        raise ConfigError("the embedded demo gate is missing from this installation.", field="gate",
                          fix="rebuild it with `python -m aligner.train.demo_gate`, or pass a gate.")
    return DEMO_GATE


_demo_gate: Gate | None = None
_demo_gate_lock = threading.Lock()


def demo_gate_flags(question: str, answer: str) -> bool:
    """Whether the embedded demo gate flags ``answer``: how the demo corrector's whole refusals are
    confirmed (:data:`aligner.runtime.edit_checks.UNCONFIRMED_REFUSAL`). The gate is loaded once per
    process, on the first refusal, and shared (its verdicts only read the model)."""
    global _demo_gate
    if _demo_gate is None:
        with _demo_gate_lock:
            if _demo_gate is None:
                _demo_gate = load_gate("demo", device="cpu")
    return _demo_gate.verdict(question, answer).flagged


def load_gate(spec: Any, *, threshold: float | None = None, min_severity: str | None = None,
              device: str | None = None, **kw: Any) -> Gate | None:
    """The gate ``spec`` names (None, or ``"none"``: no gate). ``threshold`` and ``min_severity``
    override the gate's own (a given :class:`Gate` is copied, not changed)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in NO_GATE):
        return None
    if isinstance(spec, Gate):
        if threshold is None and min_severity is None:
            return spec
        gate = copy.copy(spec)
        if threshold is not None:
            gate.threshold = check_threshold(threshold, probability=gate.score_is_probability)
        if min_severity is not None:
            gate.min_severity = check_min_severity(min_severity)
            if not gate.predicts_severity:
                raise ConfigError(f"a {gate.kind} gate predicts no severity, so it cannot flag by one.",
                                  field="gate_min_severity", fix="drop gate_min_severity.")
        return gate
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(spec, str) and not spec.strip():
        raise ConfigError("is empty.", field="gate", fix="pass a gate spec such as 'demo', or leave it out.")
    if isinstance(spec, str):
        spec = spec.strip()
    return GATES.build(spec, threshold=threshold, min_severity=min_severity, device=device, **kw,
                       otherwise=lambda: ConfigError(
                           f"no gate kind takes {spec!r}" + (" (no such directory)" if isinstance(spec, str)
                                                             and not Path(spec).exists() else "") + ".",
                           field="gate",
                           fix="pass 'demo', 'classifier:PATH' (a gate from `aligner train-gate`), 'cost:PATH' "
                               "(a reward/cost model), 'moderation' or 'moderation:URL' (an OpenAI-protocol "
                               "/v1/moderations endpoint), a function (question, answer) -> bool, or a Gate."))
