"""The flywheel's read side: a served corrections log (and its users' ratings) as Q-A-C rows.

``aligner export --from-log LOG`` reads what ``aligner serve --log-corrections`` wrote — a
``.jsonl`` or ``.sqlite`` file, or a ``postgresql://`` database several replicas share — without
changing it, and turns each row into a :class:`~aligner.data.base.QAC` for the export's filters
and formats (``qac`` for ``aligner train``, ``sft``/``dpo`` for trl). What the log holds that a
training set must not take is left out here, each counted with its reason:

* rows outside ``--since``/``--until``;
* **fallback** rows: the corrector's output was degenerate and the answer was served instead, so
  the row says nothing about what a correction should be (kept when a user wrote a correction);
* rows the **gate** passed uncorrected: the corrector never saw them;
* with ``--min-rating R``, rows rated below R **or not rated**;
* with ``--changed-only``, rows whose correction is the answer.

``--with-user-corrections``: where a user wrote a better correction (``corrected_text`` of
``POST /v1/feedback``), it becomes the row's correction — the target ``aligner train`` learns and
the ``chosen`` of a DPO pair. Without it the corrector's own output is the target and users' texts
stay in the log.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..contracts.correction import is_edit
from ..contracts.errors import ConfigError
from .base import QAC


@dataclass
class LogFilters:
    """What ``--from-log`` keeps (see the module docstring)."""

    changed_only: bool = False
    min_rating: int | None = None
    since: float | None = None
    until: float | None = None
    with_user_corrections: bool = False

    def __post_init__(self) -> None:
        if self.min_rating is not None and self.min_rating not in (-1, 0, 1):
            raise ConfigError(f"must be -1, 0 or 1, got {self.min_rating!r}.", field="min_rating",
                              fix="ratings are -1, 0 and 1: --min-rating 1 keeps the rows users rated good.")
        self.since = parse_time(self.since, "since")
        self.until = parse_time(self.until, "until")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError("--since is not before --until.", field="since", fix="swap them, or widen the range.")


@dataclass
class LogRows:
    """The rows kept, how many the log held, and how many each filter dropped."""

    rows: list[QAC]
    read: int
    dropped: dict[str, int] = field(default_factory=dict)
    user_corrections: int = 0


def parse_time(value: Any, name: str) -> float | None:
    """``--since``/``--until``: an ISO date or time (``2026-05-01``, ``2026-05-01T12:00``; UTC
    unless it names its zone) or Unix seconds, as epoch seconds."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    text = str(value).strip()
    try:
        number = float(text)
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a date or time.", field=name,
                          fix=f"e.g. --{name} 2026-05-01, --{name} 2026-05-01T12:00 (UTC), or Unix seconds.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _reasons(f: LogFilters) -> dict[str, str]:
    def when(t: float | None) -> str:
        return datetime.fromtimestamp(t or 0, timezone.utc).isoformat(timespec="seconds")

    return {"since": f"before --since {when(f.since)}", "until": f"at or after --until {when(f.until)}",
            "fallback": "fallback (the corrector's output was degenerate; the answer was served)",
            "gate": "not corrected (the gate passed the answer)",
            "rating": f"rated below {f.min_rating} or not rated (--min-rating)",
            "unchanged": "unchanged (--changed-only)"}


def rows_from_log(target: str, filters: LogFilters | None = None) -> LogRows:
    """Read the log ``target`` and keep what ``filters`` allow (see the module docstring)."""
    from ..runtime.logs import read_log
    from ..runtime.records import safe_target

    f = filters or LogFilters()
    why = _reasons(f)
    dropped: Counter[str] = Counter()
    kept: list[QAC] = []
    read = used = 0
    source = safe_target(str(target))
    for n, r in enumerate(read_log(target), start=1):
        read += 1
        ts = r.get("timestamp") or 0.0
        user_text = r.get("user_correction") if f.with_user_corrections else None
        gate = r.get("gate")
        if f.since is not None and ts < f.since:
            dropped["since"] += 1
        elif f.until is not None and ts >= f.until:
            dropped["until"] += 1
        elif r.get("fallback") and not user_text:
            dropped["fallback"] += 1
        elif isinstance(gate, dict) and not gate.get("flagged", True) and not user_text:
            dropped["gate"] += 1
        elif f.min_rating is not None and (r.get("rating") is None or r["rating"] < f.min_rating):
            dropped["rating"] += 1
        else:
            correction = user_text or r["correction"]
            if f.changed_only and not is_edit(r["answer"], correction):
                dropped["unchanged"] += 1
                continue
            used += bool(user_text)
            meta = {k: r.get(k) for k in ("id", "rating", "label", "corrector", "timestamp") if r.get(k) is not None}
            if user_text:
                meta["user_correction"] = True
            kept.append(QAC(r["question"], r["answer"], correction, source=source, row=n, meta=meta))
    return LogRows(kept, read, {why[k]: dropped[k] for k in why if dropped[k]}, used)
