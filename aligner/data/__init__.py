"""Data for training and evaluating Aligners: the Q-A-C row type, format loaders, a synthetic generator.

``load(path_or_id, format=...)`` reads the Aligner's own Q-A-C files, PKU-SafeRLHF and HH-RLHF
(local JSON / JSONL / .gz / parquet, or a hub id) into :class:`QAC` rows. Bad rows raise a
:class:`~aligner.contracts.errors.DataError` naming file, row and field, or with ``lenient=True`` are skipped
and listed in ``LoadResult.skipped`` — never silently dropped.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from ..contracts.errors import ConfigError
from .base import QAC, LoadResult, Skipped
from .io import read_records, read_rows, write_jsonl

#: format name → module (each exposes ``convert(row: Row) -> QAC``).
FORMATS = {"qac": "qac", "pku-saferlhf": "pku_saferlhf", "hh-rlhf": "hh_rlhf"}

__all__ = ["QAC", "LoadResult", "Skipped", "FORMATS", "load", "write_jsonl", "read_records", "format_module"]


def format_module(format: str) -> Any:
    """The converter module for a format name (``_`` and case tolerated: ``pku_saferlhf`` works)."""
    key = str(format).strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise ConfigError(f"unknown data format {format!r}.", field="format",
                          fix=f"use one of: {', '.join(FORMATS)}.")
    return importlib.import_module(f"{__name__}.{FORMATS[key]}")


def load(path_or_id: str | os.PathLike, format: str = "qac", *, split: str = "train", lenient: bool = False,
         limit: int | None = None, max_chars: int | None = None) -> LoadResult:
    """Load a dataset as Q-A-C rows.

    ``format``: ``qac`` | ``pku-saferlhf`` | ``hh-rlhf``. ``split`` is used for hub ids only.
    ``limit`` stops after that many converted rows. ``max_chars`` rejects any text longer than that
    (a silent truncation would train the corrector on cut-off corrections). With ``lenient=False``
    the first bad row raises; with ``lenient=True`` bad rows are skipped and recorded with their
    reason. Rows a format leaves out by design (a PKU pair with no better-and-safe response) are
    always recorded in ``skipped``, never raised.
    """
    module = format_module(format)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"must be a non-negative integer, got {limit!r}.", field="limit", fix="pass e.g. --limit 1000.")
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars <= 0):
        raise ConfigError(f"must be a positive integer, got {max_chars!r}.", field="max_chars",
                          fix="pass e.g. --max-chars 8000, or leave it out for no cap.")
    rows: list[QAC] = []
    source, unit, skipped = read_rows(path_or_id, lambda row: rows.append(module.convert(row)), name=module.NAME,
                                      split=split, lenient=lenient, max_chars=max_chars,
                                      full=lambda: limit is not None and len(rows) >= limit)
    return LoadResult(rows=rows, skipped=skipped, source=source, unit=unit)
