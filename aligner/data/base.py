"""The Q-A-C row type and the validation every format shares.

Kept free of heavy imports: trainers, the CLI and tests all import this, and only reading a parquet
file or a hub dataset needs pyarrow / datasets (see :mod:`aligner.data.io`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, NamedTuple

from ..contracts.errors import LINE, DataError, json_type


@dataclass
class QAC:
    """One question-answer-correction triple, plus where it came from.

    ``source``/``row`` (1-based: the JSONL line, the list position, the parquet row) are kept so a
    bad prediction or a training outlier can be traced back to the file line it came from.
    ``category`` is set by the synthetic generator (identity/redact/arithmetic/refusal) and is
    ``None`` for real data; ``meta`` carries format extras (harm categories, severity, turns).
    """

    question: str
    answer: str
    correction: str
    source: str | None = None
    row: int | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``None`` provenance and empty ``meta`` are left out to keep files small."""
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and not (k == "meta" and not v)}


class Skipped(NamedTuple):
    """A row that was not converted: its row number, the field at fault and why."""

    row: int | None
    field: str | None
    reason: str


@dataclass
class LoadResult:
    """Rows converted plus every row skipped with its reason, so nothing is ever dropped silently."""

    rows: list[QAC]
    skipped: list[Skipped] = field(default_factory=list)
    source: str | None = None
    #: what ``row`` numbers count: ``"line"`` (JSONL, CSV) or ``"record"`` (JSON list, parquet, hub)
    unit: str = LINE

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[QAC]:
        return iter(self.rows)

    def skip_reasons(self) -> dict[str, int]:
        """Skips counted by reason (row-specific details stripped), for a one-line summary."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            key = f"{s.field}: {s.reason}" if s.field else s.reason
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class RowDropped(Exception):
    """A row a format leaves out *by design* (e.g. a PKU pair with no better-and-safe response).

    Unlike a :class:`DataError` it is never fatal: it is recorded in ``LoadResult.skipped`` even
    when loading strictly, because the row is valid data that simply has no Q-A-C reading.
    """

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


class Row:
    """A raw record plus its location, with validating getters that raise located DataErrors."""

    def __init__(self, record: Any, source: str, row: int, fmt: str, max_chars: int | None = None,
                 unit: str = LINE):
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, got {json_type(record)}.", source=source, row=row,
                            unit=unit, fix="each row must be an object such as "
                                           '{"question": "...", "answer": "...", "correction": "..."}.')
        self.record, self.source, self.row, self.fmt, self.max_chars = record, source, row, fmt, max_chars
        self.unit = unit

    def error(self, message: str, field: str | None, fix: str | None = None) -> DataError:
        exc = DataError(message, source=self.source, row=self.row, field=field, fix=fix, unit=self.unit)
        exc.reason = message  # the bare reason, for LoadResult.skipped
        return exc

    def get(self, key: str, fix: str | None = None) -> Any:
        if key not in self.record:
            have = ", ".join(sorted(map(str, self.record))) or "none"
            raise self.error(f"missing key (row has: {have}).", key,
                             fix or f"add '{key}' to every row, or pick the right --format "
                                    f"(this was read as '{self.fmt}'), or pass --lenient to skip such rows.")
        return self.record[key]

    def text(self, key: str, *, allow_empty: bool = False, check_length: bool = True) -> str:
        """A required text field: present, a ``str``, non-empty, within ``max_chars``."""
        value = self.get(key)
        return self.check_text(value, key, allow_empty=allow_empty, check_length=check_length)

    def check_text(self, value: Any, key: str, *, allow_empty: bool = False, check_length: bool = True) -> str:
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {json_type(value)}.", key,
                             f"make '{key}' a string, or pass --lenient to skip such rows.")
        if not allow_empty and not value.strip():
            raise self.error("is empty.", key, f"give '{key}' some text, or pass --lenient to skip such rows.")
        if check_length and self.max_chars is not None and len(value) > self.max_chars:
            raise self.error(f"is {len(value)} characters, over max_chars={self.max_chars}.", key,
                             "shorten it, raise max_chars (--max-chars), or pass --lenient to skip such rows.")
        return value
