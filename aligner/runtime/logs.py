"""Open or read the corrections log a target names — ``postgresql://…``, a ``.jsonl`` or a
``.sqlite``/``.db`` file — so callers never choose a backend (:mod:`aligner.runtime.records` holds the
file backends, :mod:`aligner.runtime.records_pg` PostgreSQL, which builds on them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..contracts.errors import ConfigError
from .records import POSTGRES_SCHEMES, CorrectionsLog, LogBase, check_target, read_sqlite
from .records_pg import PostgresLog


def open_log(target: "str | Path", **options: Any) -> "LogBase":
    """The log ``target`` names: ``postgresql://…`` (``options``: see ``PostgresLog``), a
    ``.jsonl`` file, or a ``.sqlite``/``.db`` file."""
    text = check_target(str(target))
    if text.startswith(POSTGRES_SCHEMES):
        return PostgresLog(text, **options)
    return CorrectionsLog(text)


def read_log(target: "str | Path") -> Iterator[dict[str, Any]]:
    """The rows of any log, oldest first, each with its feedback keys — read only: nothing is
    created or migrated (``aligner export --from-log``); a log of an older version reads with
    None where it has no column. A file that is not there is a ``ConfigError``."""
    text = check_target(str(target))
    if text.startswith(POSTGRES_SCHEMES):
        yield from PostgresLog(text, writer=False).read()
        return
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"no such file {str(path)!r}.", field="from_log",
                          fix="pass the file aligner serve --log-corrections wrote (.jsonl or .sqlite), or its "
                              "postgresql:// URL.")
    if path.suffix == ".jsonl":
        yield from CorrectionsLog._jsonl_rows(path)
        return
    yield from read_sqlite(path)
