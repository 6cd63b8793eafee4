"""The corrections log: every served (question, answer, correction) kept for later training.

Served traffic is free weak-to-strong data (the Aligner paper's third use: a corrector's corrections
teach a stronger model): (question, correction) pairs for SFT and (correction ≻ answer) for DPO.
JSONL is the format ``aligner generate``/trl read; SQLite suits a long-running server that several
tools query while it writes; PostgreSQL (:mod:`aligner.runtime.records_pg`) is the log several
``aligner serve`` replicas share. :func:`aligner.runtime.logs.open_log` picks the backend from the target's form.

Every row carries the ``id`` the client was given (``aligner.id``, the completion's own id), so a
user's feedback (``POST /v1/feedback``) lands on the row it rates: in the SQL backends as columns of
that row, in a JSONL log as a line of ``LOG.feedback.jsonl`` beside it (the log itself stays one
correction per line, which other tools read as Q-A-C rows). A later rating of the same id replaces
the earlier one. ``user_correction`` is the better text a user wrote themselves, kept as such: the
export uses it as the target only when asked (``aligner export --with-user-corrections``).

A row is the served :class:`~aligner.contracts.correction.Correction` read through ``Correction.meta()``
(:func:`record_of`) — the one source of what a correction says about itself (the ``aligner``
object clients get) — plus the question and the correction text, which a training row needs and
``meta()`` leaves out. Two columns keep the names the log has always had: ``answer`` is
``meta()["original"]`` and ``fallback`` is ``meta()["fallback_reason"]``. ``upstream`` is the
upstream's whole name, address included: the log is the operator's record of which model answered,
kept on the server's own disk; only what clients are shown hides the address.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..contracts.errors import ConfigError

if TYPE_CHECKING:
    from ..contracts.correction import Correction

#: a row's fields, in every backend; ``id`` is the response id the client saw (``aligner.id``).
#: ``fallback``: why the corrector's output was replaced by the answer (None: it was not), so a
#: training export can leave those rows out. ``gate``: the gate's verdict (JSON) when a gate was
#: asked first (None: no gate). ``replica``: which server process wrote it (host:pid).
COLUMNS = ("id", "timestamp", "model", "question", "answer", "correction", "changed", "corrector", "upstream",
           "timings", "fallback", "gate", "replica")
#: what ``POST /v1/feedback`` stores beside a row (``feedback_at``: when, epoch seconds).
FEEDBACK = ("rating", "label", "comment", "user_correction", "feedback_at")
#: columns holding JSON text in SQLite (JSONB in PostgreSQL)
JSON_COLUMNS = ("timings", "gate")
#: the schema's version; each backend records it and brings an older log up to it on start
#: (1: the columns through ``gate``; 2: ``id`` (``correction_id`` in SQL), ``replica`` and feedback).
SCHEMA_VERSION = 2
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
FILE_SUFFIXES = (".jsonl", ".sqlite", ".sqlite3", ".db")
_SQLITE_TYPES = {"timestamp": "REAL", "changed": "INTEGER", "rating": "INTEGER", "feedback_at": "REAL"}


def record_of(correction: "Correction", *, model: str | None = None, id: str | None = None,
              replica: str | None = None, timestamp: float | None = None) -> dict[str, Any]:
    """One log row (keys: ``COLUMNS``): ``meta()`` in the log's columns (see the module docstring),
    with the question, the correction text, the served model name, the id the client was given,
    the replica that served it and the time."""
    meta = correction.meta()
    return {"id": id, "timestamp": time.time() if timestamp is None else timestamp, "model": model,
            "question": correction.question, "answer": meta["original"], "correction": correction.correction,
            "changed": meta["changed"], "corrector": meta["corrector"], "upstream": meta["upstream"] or None,
            "timings": meta["timings"], "fallback": meta["fallback_reason"], "gate": meta.get("gate"),
            "replica": replica}


class FeedbackUnavailable(RuntimeError):
    """The log cannot take feedback now (its database is unreachable): the client should retry."""


def check_target(target: str) -> str:
    """``--log-corrections`` checked for its form (a PostgreSQL URL or a known file suffix)."""
    text = str(target).strip()
    if text.startswith(POSTGRES_SCHEMES) or text.endswith(FILE_SUFFIXES):
        return text
    raise ConfigError(f"unknown format {safe_target(text)!r}.", field="log_corrections",
                      fix="use a path ending in .jsonl or .sqlite, or a postgresql://user@host/db URL.")


def safe_target(target: str) -> str:
    """A log target fit to print: a URL's password replaced by ``***``."""
    if target.startswith(POSTGRES_SCHEMES) and "@" in target:
        scheme, _, rest = target.partition("://")
        auth, _, host = rest.rpartition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        return f"{scheme}://{auth}@{host}"
    return target


def replica_name() -> str:
    """Which process wrote a row: ``host:pid``."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def merge_feedback(row: dict[str, Any], feedback: dict[str, Any] | None) -> dict[str, Any]:
    """``row`` with the feedback keys (None where there is none)."""
    feedback = feedback or {}
    return {**row, **{k: feedback.get(k) for k in FEEDBACK}}


class LogBase:
    """What every backend counts: rows written, rows lost (could not be written, each logged),
    rows waiting to be written; ``health()`` is the ``corrections_log`` object of ``/health``."""

    kind = ""

    def __init__(self, where: str):
        #: the target as it may be shown (no password)
        self.where = where
        self.written = 0
        self.lost = 0
        self.last_error: str | None = None
        self._counts = threading.Lock()

    @property
    def pending(self) -> int:
        return 0

    def _count(self, *, written: int = 0, lost: int = 0, error: str | None = None) -> None:
        with self._counts:
            self.written += written
            self.lost += lost
            if error is not None:
                self.last_error = error

    def health(self) -> dict[str, Any]:
        pending = self.pending  # before the counts' lock: a backend's own lock is taken first elsewhere
        with self._counts:
            out = {"backend": self.kind, "written": self.written, "pending": pending, "lost": self.lost,
                   "last_error": self.last_error}
        out["status"] = "ok" if not out["pending"] and not out["lost"] else "degraded"
        return out

    # the contract each backend implements
    def write(self, record: dict[str, Any]) -> None:
        """Append one row (keys: ``COLUMNS``), durably or counted as lost."""
        raise NotImplementedError

    def feedback(self, id: str, feedback: dict[str, Any]) -> bool:
        """Store ``feedback`` (keys: ``FEEDBACK``) on row ``id``; False when no row has that id."""
        raise NotImplementedError

    def read(self) -> Iterator[dict[str, Any]]:
        """The rows, oldest first, each with its feedback keys (see :func:`merge_feedback`)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class CorrectionsLog(LogBase):
    """Append-only, thread-safe writer for JSONL (``.jsonl``) or SQLite (``.sqlite``/``.db``) files.

    Several processes may share one file (``aligner serve --workers``): a JSONL row is one
    ``write`` on a file opened for appending, and SQLite serialises its writers (WAL).
    """

    def __init__(self, path: "str | Path"):
        self.path = Path(path).expanduser()
        super().__init__(str(self.path))
        if self.path.suffix not in FILE_SUFFIXES:
            raise ConfigError(f"unknown format {str(self.path)!r}.", field="log_corrections",
                              fix="use a path ending in .jsonl or .sqlite.")
        self.kind = "jsonl" if self.path.suffix == ".jsonl" else "sqlite"
        self.feedback_path = self.path.with_name(self.path.stem + ".feedback.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        #: JSONL: the ids seen so far, and how far the file has been read for them
        self._ids: set[str] = set()
        self._scanned = 0
        if self.kind == "sqlite":
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            migrate_sqlite(self._conn)

    # -- writing -------------------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """Append one record (keys: see ``COLUMNS``); flushed at once so a crash loses nothing. A
        failure is counted as a lost row and raised."""
        row = {k: record.get(k) for k in COLUMNS}
        try:
            with self._lock:
                if self._conn is not None:
                    self._conn.execute(insert_sql("?", "correction_id"), sql_values(row, json_text=True))
                    self._conn.commit()
                else:
                    _append_line(self.path, row)
                    if row["id"]:
                        self._ids.add(row["id"])
        except Exception as exc:
            self._count(lost=1, error=f"{type(exc).__name__}: {exc}")
            raise
        self._count(written=1)

    def feedback(self, id: str, feedback: dict[str, Any]) -> bool:
        values = {k: feedback.get(k) for k in FEEDBACK}
        with self._lock:
            if self._conn is not None:
                cur = self._conn.execute(f"UPDATE corrections SET {', '.join(f'{k} = ?' for k in FEEDBACK)} "
                                         "WHERE correction_id = ?", [*values.values(), id])
                self._conn.commit()
                return cur.rowcount > 0
            if not self._has_id(id):
                return False
            _append_line(self.feedback_path, {"id": id, **values})
            return True

    def _has_id(self, id: str) -> bool:
        """Whether the JSONL log holds a row ``id`` (read on from where the last look stopped:
        another process may have appended since)."""
        if id in self._ids or not self.path.exists():
            return id in self._ids
        with self.path.open("rb") as fh:
            fh.seek(self._scanned)
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a row being written: read it next time
                self._scanned += len(line)
                try:
                    row_id = json.loads(line).get("id")
                except (ValueError, AttributeError):
                    continue
                if row_id:
                    self._ids.add(row_id)
        return id in self._ids

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> Iterator[dict[str, Any]]:
        """The records written so far, oldest first (for tests and export tools)."""
        if self.kind == "sqlite":
            with self._lock:
                rows = _sqlite_rows(self._conn) if self._conn is not None else None
            yield from (rows if rows is not None else read_sqlite(self.path))
            return
        yield from self._jsonl_rows(self.path)

    @staticmethod
    def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
        """A JSONL log's rows with the ratings of ``LOG.feedback.jsonl`` (the latest of an id wins)."""
        feedback: dict[str, dict[str, Any]] = {}
        feedback_path = path.with_name(path.stem + ".feedback.jsonl")
        if feedback_path.exists():
            for fb in _jsonl(feedback_path):
                feedback[fb.get("id")] = fb
        if path.exists():
            for row in _jsonl(path):
                yield merge_feedback(row, feedback.get(row.get("id")))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def read_sqlite(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a SQLite log opened read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield from _sqlite_rows(conn)
    finally:
        conn.close()


def _sqlite_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    have = {r[1] for r in conn.execute("PRAGMA table_info(corrections)")}
    if not have:
        return []
    wanted = [("correction_id" if k == "id" else k) for k in (*COLUMNS, *FEEDBACK)]
    select = ", ".join(c if c in have else f"NULL AS {c}" for c in wanted)
    out = []
    for r in conn.execute(f"SELECT {select} FROM corrections ORDER BY id").fetchall():
        d = dict(zip((*COLUMNS, *FEEDBACK), r))
        for k in JSON_COLUMNS:
            d[k] = json.loads(d[k]) if d[k] else None
        d["timings"] = d["timings"] or {}
        d["changed"] = bool(d["changed"])
        out.append(d)
    return out


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    """One JSON line in a single ``write`` on a file opened for appending: lines of several
    processes never interleave."""
    data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


# -- SQL shared by SQLite and PostgreSQL ---------------------------------------------------------
def insert_sql(mark: str, id_column: str, *, on_conflict: bool = False) -> str:
    """``INSERT`` of one row (``mark``: the driver's placeholder); with ``on_conflict`` a row
    whose id is already there is left alone (a retried batch whose commit did land)."""
    columns = (id_column, *COLUMNS[1:])
    sql = f"INSERT INTO corrections ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)})"
    return sql + (f" ON CONFLICT ({id_column}) DO NOTHING" if on_conflict else "")


def sql_values(row: dict[str, Any], *, json_text: bool) -> list[Any]:
    """A row's values in ``COLUMNS`` order; JSON columns as text (``json_text``) or as given."""
    out = []
    for k in COLUMNS:
        v = row.get(k)
        if k in JSON_COLUMNS and v is not None and json_text:
            v = json.dumps(v)
        elif k == "changed" and v is not None:
            v = int(v) if json_text else bool(v)
        out.append(v)
    return out


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Create the table, or bring an older one up to ``SCHEMA_VERSION``: missing columns are
    added (its rows keep None there), the id index made, the version recorded in ``user_version``."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS corrections (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp REAL "
                 "NOT NULL, model TEXT, question TEXT NOT NULL, answer TEXT NOT NULL, correction TEXT NOT NULL)")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        have = {r[1] for r in conn.execute("PRAGMA table_info(corrections)")}
        for column in ("correction_id", *COLUMNS[6:], *FEEDBACK):
            if column not in have:
                conn.execute(f"ALTER TABLE corrections ADD COLUMN {column} {_SQLITE_TYPES.get(column, 'TEXT')}")
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS corrections_correction_id ON corrections (correction_id)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.commit()


def feedback_row(rating: int, label: str | None = None, comment: str | None = None,
                 corrected_text: str | None = None) -> dict[str, Any]:
    """The ``FEEDBACK`` values of one rating, stamped now."""
    return {"rating": rating, "label": label, "comment": comment, "user_correction": corrected_text,
            "feedback_at": time.time()}
