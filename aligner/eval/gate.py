"""The gate's part of ``aligner eval``'s report: the share of answers corrected, the time the gate and
the skipped corrections cost, misses (unsafe answers passed) and false flags (safe answers corrected)
against the rows' ``is_safe`` labels, and — with ``--gate-compare`` — end-to-end answers/s with the
gate against correcting every answer, the same rows in the same run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .stats import percentiles


def compare_ungated(aligner: Any, questions: Path, out: Path, gated: dict[str, Any] | None, *,
                    progress: bool = True) -> dict[str, Any] | None:
    """Correct the same rows again without the gate (``corrections-ungated.jsonl``, made afresh) and
    put both speeds side by side; None when the gated run was resumed (its time is not one run's)."""
    if gated is None:
        print("--gate-compare: the gated corrections were resumed from an earlier run, so their speed is not "
              "measured; delete corrections.jsonl to measure both.")
        return None
    from ..core.batch import correct_file

    t0 = time.perf_counter()
    counts = correct_file(aligner.with_gate(None), questions, out / "corrections-ungated.jsonl",
                          progress=progress, overwrite=True)
    seconds = time.perf_counter() - t0
    with_gate = gated["rows"] / gated["seconds"]
    without = counts["written"] / seconds if seconds > 0 else None
    return {**gated, "answers_per_s": with_gate, "ungated_rows": counts["written"], "ungated_seconds": seconds,
            "ungated_answers_per_s": without, "speedup": with_gate / without if without else None}


def gate_summary(cfg: Any, items: list[Any], made: dict[str, Any] | None) -> dict[str, Any]:
    """What the gate did to this eval set (see the module docstring)."""
    from ..gates.metrics import confusion

    verdicts = [it.extra.get("gate") or {} for it in items]
    flagged = [bool(v.get("flagged")) for v in verdicts]
    times = [float(v["time"]) for v in verdicts if isinstance(v.get("time"), (int, float))]
    out: dict[str, Any] = {
        "gate": _name(getattr(cfg, "gate", None)), "threshold": getattr(cfg, "gate_threshold", None),
        "min_severity": getattr(cfg, "gate_min_severity", None), "answers": len(items),
        "corrected": sum(flagged), "share_corrected": sum(flagged) / len(items) if items else None,
        "errors": sum(1 for v in verdicts if v.get("error")),
        "gate_seconds": {**(percentiles(times) or {}), "mean": sum(times) / len(times)} if times else None,
        "labelled": None, "speed": (made or {}).get("speed")}
    speed = out["speed"]
    if speed and "answers_per_s" not in speed and speed.get("seconds"):
        speed["answers_per_s"] = speed["rows"] / speed["seconds"]
    labelled = [(f, it.extra["is_safe"]) for f, it in zip(flagged, items) if isinstance(it.extra.get("is_safe"), bool)]
    if labelled:
        out["labelled"] = confusion([f for f, _ in labelled], [not safe for _, safe in labelled])
    return out


def _name(spec: Any) -> Any:
    return spec if spec is None or isinstance(spec, str) else getattr(spec, "__qualname__", type(spec).__name__)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def gate_lines(g: dict[str, Any]) -> list[str]:
    """The lines ``aligner eval`` prints about the gate."""
    lines = [f"gate {g['gate']}: corrected {g['corrected']} of {g['answers']} answers ({_pct(g['share_corrected'])})"
             + (f"; {g['errors']} answers the gate could not judge" if g["errors"] else "")]
    lab = g.get("labelled")
    if lab:
        lines.append(f"gate against the is_safe labels ({lab['n']} rows, {lab['unsafe']} unsafe): "
                     f"missed {lab['misses']} unsafe ({_pct(lab['miss_rate'])}), "
                     f"false flags {lab['false_flags']} ({_pct(lab['false_flag_rate'])} of safe answers)")
    s = g.get("speed")
    if s and s.get("speedup"):
        lines.append(f"answers/s with the gate {s['answers_per_s']:.2f} vs correcting everything "
                     f"{s['ungated_answers_per_s']:.2f}: {s['speedup']:.2f}x (same rows, this run)")
    elif s and s.get("answers_per_s"):
        lines.append(f"answers/s with the gate: {s['answers_per_s']:.2f} (add --gate-compare for the ratio)")
    return lines


def gate_markdown(g: dict[str, Any]) -> list[str]:
    out = ["## Gate", "", f"`{g['gate']}` was asked before the corrector"
           + (f" (threshold {g['threshold']})" if g.get("threshold") is not None else "")
           + (f", flagging {g['min_severity']} or worse" if g.get("min_severity") else "") + ".", ""]
    out += [f"- {line}" for line in gate_lines(g)]
    t = g.get("gate_seconds")
    if t:
        out.append(f"- time the gate took per answer: p50 {t['p50'] * 1000:.1f} ms, p95 {t['p95'] * 1000:.1f} ms")
    return out + [""]


def plot_gate(g: dict[str, Any], fig: Any, path: Path) -> None:
    """Share corrected, misses and false flags (when labelled), and answers/s (with --gate-compare)."""
    ax = fig.add_subplot(1, 2, 1)
    bars = [("corrected", g["share_corrected"] or 0.0, "#2e6fd1")]
    lab = g.get("labelled")
    if lab:
        bars += [("unsafe missed", lab["miss_rate"] or 0.0, "#d1495b"),
                 ("safe flagged", lab["false_flag_rate"] or 0.0, "#e3a33b")]
    ax.bar([b[0] for b in bars], [100 * b[1] for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        ax.text(i, 100 * b[1] + 1, f"{100 * b[1]:.1f}%", ha="center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of answers (of unsafe / safe ones)")
    ax.set_title(f"gate {str(g['gate'])[-40:]}", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    s = g.get("speed") or {}
    if s.get("speedup"):
        ax2.bar(["correct all", "gate first"], [s["ungated_answers_per_s"], s["answers_per_s"]],
                color=["#7a7a7a", "#2e9e4f"])
        ax2.set_title(f"end to end: {s['speedup']:.2f}x answers/s", fontsize=9)
        ax2.set_ylabel("answers/s")
    else:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "speed: run with --gate-compare", ha="center", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
