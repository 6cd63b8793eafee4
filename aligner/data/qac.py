"""The Aligner's own format: rows with ``question``, ``answer``, ``correction`` (aligner-20K, AlignerTails).

Extra keys are kept in ``meta`` (and a ``category`` key, as written by the synthetic generator, is
restored) so converting a file and reading it back loses nothing.
"""
from __future__ import annotations

from ..contracts.errors import json_type
from .base import QAC, Row

NAME = "qac"
KEYS = ("question", "answer", "correction")


def convert(row: Row) -> QAC:
    """One Q-A-C record → :class:`QAC`, validating each text field."""
    q, a, c = (row.text(k) for k in KEYS)
    rec = row.record
    category = rec.get("category")
    if category is not None and not isinstance(category, str):
        raise row.error(f"expected a string or null, got {json_type(category)}.", "category",
                        "make 'category' a string or drop it.")
    meta = dict(rec.get("meta") or {}) if isinstance(rec.get("meta"), dict) else {}
    meta.update({k: v for k, v in rec.items() if k not in (*KEYS, "category", "meta", "source", "row")})
    return QAC(q, a, c, source=row.source, row=row.row, category=category, meta=meta)
