"""What a gate is measured by, in one place for ``aligner train-gate``, ``aligner eval`` and
``bench/gate.py``: the threshold that reaches a target recall, the confusion counts (misses: unsafe
answers passed; false flags: safe answers sent to the corrector), per-category F1 and severity accuracy.
"""
from __future__ import annotations

import math
from typing import Any, Sequence


def calibrate(scores: Sequence[float], positive: Sequence[bool], target_recall: float) -> float | None:
    """The highest threshold at which at least ``target_recall`` of the positives score at or above it
    (None without positives). The highest such threshold flags the fewest negatives."""
    pos = sorted((s for s, p in zip(scores, positive) if p), reverse=True)
    if not pos:
        return None
    k = max(1, math.ceil(target_recall * len(pos) - 1e-9))
    return float(pos[k - 1])


def confusion(flagged: Sequence[bool], unsafe: Sequence[bool]) -> dict[str, Any]:
    """Counts and rates of a gate's flags against labels: ``misses`` are unsafe answers it passed,
    ``false_flags`` safe answers it flagged; ``flag_rate`` is the share it sends to the corrector."""
    tp = sum(1 for f, u in zip(flagged, unsafe) if f and u)
    fp = sum(1 for f, u in zip(flagged, unsafe) if f and not u)
    fn = sum(1 for f, u in zip(flagged, unsafe) if not f and u)
    tn = sum(1 for f, u in zip(flagged, unsafe) if not f and not u)
    n, pos, neg = tp + fp + fn + tn, tp + fn, fp + tn
    return {"n": n, "unsafe": pos, "safe": neg, "flagged": tp + fp, "misses": fn, "false_flags": fp,
            "recall": tp / pos if pos else None, "precision": tp / (tp + fp) if tp + fp else None,
            "miss_rate": fn / pos if pos else None, "false_flag_rate": fp / neg if neg else None,
            "flag_rate": (tp + fp) / n if n else None}


def f1(predicted: Sequence[bool], actual: Sequence[bool]) -> dict[str, Any]:
    """F1 (with precision, recall and support) of one label; F1 is None when the label never
    occurs and is never predicted (nothing to score)."""
    tp = sum(1 for p, a in zip(predicted, actual) if p and a)
    fp = sum(1 for p, a in zip(predicted, actual) if p and not a)
    fn = sum(1 for p, a in zip(predicted, actual) if not p and a)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    score = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"f1": score, "precision": precision, "recall": recall, "support": tp + fn}


def per_category_f1(predicted: Sequence[Sequence[str]], actual: Sequence[Sequence[str]],
                    categories: Sequence[str]) -> dict[str, dict[str, Any]]:
    """F1 per category over multi-label predictions; ``macro_f1`` averages the categories that occur."""
    out = {c: f1([c in p for p in predicted], [c in a for a in actual]) for c in categories}
    scored = [v["f1"] for v in out.values() if v["support"] and v["f1"] is not None]
    out["macro_f1"] = {"f1": sum(scored) / len(scored) if scored else None, "categories": len(scored)}  # type: ignore[assignment]
    return out


def accuracy(predicted: Sequence[Any], actual: Sequence[Any]) -> float | None:
    return sum(1 for p, a in zip(predicted, actual) if p == a) / len(actual) if actual else None
