"""Win rate ω with a bootstrap interval, and percentiles.

ω = (W − L) / (W + L + E) × 100, W counting corrections judged better, L worse, E ties; pairs
without a verdict are left out of all three (and reported). ω is the mean of per-pair scores
+1 / −1 / 0 times 100, so resampling pairs with replacement is resampling the three counts from a
multinomial with the observed shares: that is what the bootstrap here draws, in O(resamples).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

OUTCOMES = ("win", "tie", "loss")


def win_rate(wins: int, losses: int, ties: int) -> float | None:
    """ω in percent; None when no pair has a verdict."""
    n = wins + losses + ties
    return None if n == 0 else (wins - losses) / n * 100.0


def bootstrap_ci(wins: int, losses: int, ties: int, *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ω over pairs (seeded: the same counts give the same interval)."""
    import numpy as np

    n = wins + losses + ties
    if n == 0 or resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins / n, losses / n, ties / n], size=resamples)
    omegas = (draws[:, 0] - draws[:, 1]) / n * 100.0
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(omegas, [tail, 100 - tail])
    return float(lo), float(hi)


def summarize(outcomes: Iterable[str | None], *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Counts, ω and its 95% interval for per-pair outcomes (None = unparsed, ``"error"`` = the judge
    call failed); neither of the last two enters ω."""
    counts = {"win": 0, "tie": 0, "loss": 0, "unparsed": 0, "error": 0}
    for o in outcomes:
        counts[o if o in OUTCOMES or o == "error" else "unparsed"] += 1
    w, l, e = counts["win"], counts["loss"], counts["tie"]
    ci = bootstrap_ci(w, l, e, resamples=resamples, seed=seed)
    omega = win_rate(w, l, e)
    return {"n": w + l + e, **counts, "omega": None if omega is None else round(omega, 4),
            "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)]}


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> dict[str, float] | None:
    """``{"p50": ..., "p95": ...}`` of the values (linear interpolation), None when there are none."""
    import numpy as np

    if not values:
        return None
    out = np.percentile(np.asarray(values, dtype=float), list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, out)}
