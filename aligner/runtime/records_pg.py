"""The corrections log on PostgreSQL: one log shared by every ``aligner serve`` replica.

``--log-corrections postgresql://user[:password]@host[:port]/dbname`` (psycopg 3, a connection
pool). Why it is built the way it is:

* **Never block the event loop**: the server calls :meth:`PostgresLog.write` in a worker thread;
  one writer thread per process commits rows in batches (a group commit: many requests, one
  round trip).
* **Never lose a row a client saw answered**: ``write`` returns once the row is committed, and the
  server calls it before it sends the final event, as with the file logs. Row ids are the
  response ids, unique across replicas, and a retried batch skips ids already there
  (``ON CONFLICT DO NOTHING``), so a commit whose acknowledgement was lost writes no twin.
* **A database that goes down** does not stop the server: rows wait in a bounded buffer
  (``max_pending``) while the writer retries with back-off, and ``write`` stops waiting for
  commits until the database answers again, so requests are answered at full speed. A row that
  finds the buffer full, or is still waiting when the server stops (after ``flush_timeout``), is
  lost: counted, logged with its id, and shown on ``/health`` (``corrections_log``) — never
  dropped silently.
* **Schema created and migrated on start**, under an advisory lock so replicas starting together
  do not race: a table from an older version gains the columns it lacks, and the version is kept
  in ``aligner_schema``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..contracts.errors import ConfigError
from .records import (COLUMNS, FEEDBACK, JSON_COLUMNS, SCHEMA_VERSION, FeedbackUnavailable, LogBase, insert_sql,
                      safe_target, sql_values)

log = logging.getLogger("aligner.serve")

_PG_TYPES = {"timestamp": "DOUBLE PRECISION", "changed": "BOOLEAN", "timings": "JSONB", "gate": "JSONB",
             "rating": "SMALLINT", "feedback_at": "DOUBLE PRECISION"}
#: the advisory lock key replicas take while creating or migrating the schema
_MIGRATION_LOCK = 0x616C6E72  # "alnr"
#: most rows one commit carries
_BATCH_ROWS = 256


@dataclass(eq=False)
class _Pending:
    """A row (``record``) or a rating of a row still waiting (``feedback``) in the buffer."""

    record: dict[str, Any] | None = None
    feedback: tuple[str, dict[str, Any]] | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PostgresLog(LogBase):
    """The corrections log in table ``corrections`` of a PostgreSQL database (see the module).

    ``connect_timeout``: seconds to reach the database (at start, a failure is a ``ConfigError``
    naming ``--log-corrections``); ``write_wait``: longest a request waits for its row's commit
    while the database is up; ``max_pending``: rows buffered while it is down; ``flush_timeout``:
    seconds ``close`` keeps trying to write what is buffered. ``writer=False`` opens it to read
    (``aligner export``): no pool, no writer thread, nothing altered.
    """

    kind = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout: float = 5.0, write_wait: float = 2.0,
                 max_pending: int = 10_000, flush_timeout: float = 10.0, writer: bool = True):
        super().__init__(safe_target(url))
        try:
            import psycopg  # noqa: F401
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigError("a postgresql:// log needs psycopg 3 and psycopg-pool.", field="log_corrections",
                              fix='pip install "aligner-kit[postgres]"') from exc
        self.url = url
        self.connect_timeout, self.write_wait = connect_timeout, write_wait
        self.max_pending, self.flush_timeout = max_pending, flush_timeout
        self._queue: deque[_Pending] = deque()
        self._pending_ids: dict[str, int] = {}
        self._cond = threading.Condition()
        self._closing = False
        #: the writer could not reach the database on its last try (until a commit succeeds)
        self.down = False
        with self._connect() as conn:
            if writer:
                migrate(conn)
        self.pool = None
        self._thread: threading.Thread | None = None
        #: the writer thread's own connection (None: to be made): its reconnects follow the
        #: writer's back-off, not the pool's, which grows to minutes in a long outage
        self._writer_conn: Any = None
        if writer:
            # the pool serves feedback; a slot it cannot fill for 10 s is given up, and the next
            # request tries afresh (its own warnings, one per attempt, are left to ours: one per outage)
            logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
            self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="aligner-log",
                                       kwargs={"autocommit": True, "connect_timeout": max(2, round(connect_timeout))},
                                       check=ConnectionPool.check_connection, timeout=connect_timeout,
                                       reconnect_timeout=10.0)
            self.pool.open(wait=False)
            self._thread = threading.Thread(target=self._run, name="aligner-log-writer", daemon=True)
            self._thread.start()

    def _connect(self) -> Any:
        """One connection now, or a one-line ``ConfigError`` naming the flag."""
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=max(2, round(self.connect_timeout)), autocommit=True)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"cannot reach the corrections log {self.where} ({reason}).", field="log_corrections",
                              fix="start the database or correct --log-corrections "
                                  "(postgresql://user[:password]@host[:port]/dbname).") from None

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(1 for p in self._queue if p.record is not None)

    def health(self) -> dict[str, Any]:
        out = super().health()
        if self.down:
            out["status"] = "database unreachable"
        return out

    # -- writing -------------------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """Queue the row for the writer and wait for its commit (at most ``write_wait``; not at all
        while the database is down: the row waits in the buffer)."""
        item = _Pending(record={k: record.get(k) for k in COLUMNS})
        with self._cond:
            if len(self._queue) >= self.max_pending:
                self._lose([item], f"the buffer is full ({self.max_pending} rows waiting for the database)")
                return
            self._queue.append(item)
            rid = item.record["id"]
            if rid:
                self._pending_ids[rid] = self._pending_ids.get(rid, 0) + 1
            self._cond.notify_all()
            down = self.down
        if not down:
            item.done.wait(self.write_wait)

    def feedback(self, id: str, feedback: dict[str, Any]) -> bool:
        values = {k: feedback.get(k) for k in FEEDBACK}
        with self._cond:
            if id in self._pending_ids:  # its row is not written yet: the rating follows it
                self._queue.append(_Pending(feedback=(id, values)))
                self._cond.notify_all()
                return True
        from psycopg_pool import PoolTimeout
        import psycopg

        assert self.pool is not None, "opened with writer=False"
        try:
            with self.pool.connection(timeout=min(self.connect_timeout, 3.0)) as conn:
                cur = conn.execute(_update_sql(), [*map(_no_nul, values.values()), id])
                return cur.rowcount > 0
        except (psycopg.Error, PoolTimeout) as exc:
            raise FeedbackUnavailable(f"the corrections log's database is unreachable ({type(exc).__name__})") from exc

    def _run(self) -> None:
        """The writer: commit what is queued, oldest first, in batches; on failure wait (backing off
        up to 5 s, whatever arrives meanwhile) and retry."""
        backoff, retry_at = 0.2, 0.0
        flush_deadline: float | None = None
        while True:
            with self._cond:
                while True:
                    if not self._queue:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                    delay = retry_at - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._closing and flush_deadline is None:
                    flush_deadline = time.monotonic() + self.flush_timeout
                batch = self._next_batch()
            try:
                self._commit(batch)
            except Exception as exc:
                if not _unreachable(exc):  # the database refused these rows: the rest must not wait on them
                    self._commit_one_by_one(batch, exc)
                    continue
                reason = _reason(exc)
                with self._cond:
                    if not self.down:
                        log.warning("corrections log %s unreachable (%s); buffering rows (at most %d) and "
                                    "retrying", self.where, reason, self.max_pending)
                    self.down = True
                    self._count(error=f"{type(exc).__name__}: {reason}")
                    for item in self._queue:
                        item.done.set()  # requests stop waiting; their rows stay queued
                    if flush_deadline is not None and time.monotonic() >= flush_deadline:
                        lost = [p for p in self._queue if p.record is not None]
                        self._queue.clear()
                        self._pending_ids.clear()
                        self._lose(lost, f"the database was unreachable for {self.flush_timeout:g}s at shutdown")
                        return
                retry_at = time.monotonic() + backoff
                backoff = min(backoff * 2, 5.0)
                continue
            backoff, retry_at = 0.2, 0.0
            with self._cond:
                for _ in batch:
                    item = self._queue.popleft()
                    self._forget(item)
                    item.done.set()
                rows = sum(1 for p in batch if p.record is not None)
                if self.down:
                    log.warning("corrections log %s reachable again; writing the buffered rows", self.where)
                self.down = False
            self._count(written=rows)

    def _commit_one_by_one(self, batch: list[_Pending], exc: BaseException) -> None:
        """A batch the database refused (not a connection failure): each row on its own, so one
        row it cannot take is lost — counted and logged — and the others are written."""
        written = 0
        for item in batch:
            try:
                self._commit([item])
                written += item.record is not None
            except Exception as one:
                if _unreachable(one):
                    break  # gone meanwhile: what is left stays queued for the retry loop
                why = f"refused by the database: {_reason(one)}"
                if item.record is not None:
                    self._lose([item], why)
                else:
                    log.error("corrections log %s: feedback for %s NOT stored (%s)", self.where,
                              item.feedback[0] if item.feedback else "?", why)
            with self._cond:
                self._queue.remove(item)
                self._forget(item)
                item.done.set()
        self._count(written=written)

    def _forget(self, item: _Pending) -> None:
        rid = item.record["id"] if item.record is not None else None
        if rid in self._pending_ids:
            self._pending_ids[rid] -= 1
            if not self._pending_ids[rid]:
                del self._pending_ids[rid]

    def _next_batch(self) -> list[_Pending]:
        """The queue's head: up to ``_BATCH_ROWS`` rows in a row, or one rating."""
        if self._queue[0].feedback is not None:
            return [self._queue[0]]
        batch = []
        for item in self._queue:
            if item.record is None or len(batch) >= _BATCH_ROWS:
                break
            batch.append(item)
        return batch

    def _commit(self, batch: list[_Pending]) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        conn = self._writer_conn
        if conn is None or conn.closed or conn.broken:
            self._writer_conn = conn = psycopg.connect(self.url, autocommit=True,
                                                       connect_timeout=max(2, round(self.connect_timeout)))
        try:
            self._commit_on(conn, batch, Jsonb)
        except BaseException:
            conn.close()
            self._writer_conn = None
            raise

    @staticmethod
    def _commit_on(conn: Any, batch: list[_Pending], Jsonb: Any) -> None:
        """One transaction: the batch's rows (a row already there is left alone), or one rating."""
        with conn.transaction():
            if batch[0].feedback is not None:
                id, values = batch[0].feedback
                conn.execute(_update_sql(), [*map(_no_nul, values.values()), id])
                return
            rows = []
            for item in batch:
                values = [_no_nul(v) for v in sql_values(item.record or {}, json_text=False)]
                rows.append([Jsonb(v) if k in JSON_COLUMNS and v is not None else v for k, v in zip(COLUMNS, values)])
            with conn.cursor() as cur:
                cur.executemany(insert_sql("%s", "correction_id", on_conflict=True), rows)

    def _lose(self, items: list[_Pending], why: str) -> None:
        """Count rows that will not be written and say which (ids only: rows hold user text)."""
        if not items:
            return
        ids = [str((p.record or {}).get("id")) for p in items]
        log.error("corrections log %s: %d row(s) NOT written (%s): ids %s%s", self.where, len(ids), why,
                  ", ".join(ids[:20]), " …" if len(ids) > 20 else "")
        self._count(lost=len(ids), error=why)
        for p in items:
            p.done.set()

    def close(self) -> None:
        """Write what is buffered (trying for at most ``flush_timeout``), then close the pool."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.flush_timeout + self.connect_timeout + 5)
        if self._writer_conn is not None:
            self._writer_conn.close()
        if self.pool is not None:
            self.pool.close(timeout=5)
            self.pool = None

    # -- reading -------------------------------------------------------------------------------
    def read(self) -> Iterator[dict[str, Any]]:
        """Every row, oldest first, streamed from a server-side cursor (a log of millions of rows
        is not held in memory); a log of an older version reads with None in its missing columns."""
        with self._connect() as conn:
            have = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'corrections' "
                "AND table_schema = current_schema()")}
            if not have:
                return
            wanted = [("correction_id" if k == "id" else k) for k in (*COLUMNS, *FEEDBACK)]
            select = ", ".join(c if c in have else f"NULL AS {c}" for c in wanted)
            conn.autocommit = False
            with conn.transaction(), conn.cursor(name="aligner_log_read") as cur:
                cur.itersize = 2000
                cur.execute(f"SELECT {select} FROM corrections ORDER BY id")
                for r in cur:
                    d = dict(zip((*COLUMNS, *FEEDBACK), r))
                    d["timings"] = d["timings"] or {}
                    d["changed"] = bool(d["changed"])
                    yield d


def _reason(exc: BaseException) -> str:
    """An error in one line, without the server's DETAIL (it quotes the row: user text)."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    return (primary or " ".join(str(exc).split()) or type(exc).__name__)[:300]


def _unreachable(exc: BaseException) -> bool:
    """A failure of the connection (retry the same rows later), not a refusal of the rows."""
    import psycopg

    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError)) or \
        not isinstance(exc, psycopg.Error)


def _no_nul(value: Any) -> Any:
    """PostgreSQL text and JSONB cannot hold NUL characters, which a corrector may write: each
    becomes U+FFFD (the replacement character) rather than costing the row."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    return value


def _update_sql() -> str:
    return f"UPDATE corrections SET {', '.join(f'{k} = %s' for k in FEEDBACK)} WHERE correction_id = %s"


def migrate(conn: Any) -> int:
    """Create the table, or bring an older one up to ``SCHEMA_VERSION`` (columns it lacks are
    added; rows already there keep NULL in them); returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS aligner_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS corrections (id BIGSERIAL PRIMARY KEY, timestamp DOUBLE PRECISION "
                     "NOT NULL, model TEXT, question TEXT NOT NULL, answer TEXT NOT NULL, correction TEXT NOT NULL)")
        row = conn.execute("SELECT version FROM aligner_schema WHERE name = 'corrections'").fetchone()
        before = row[0] if row else 0
        if before < SCHEMA_VERSION:
            for column in ("correction_id", *COLUMNS[6:], *FEEDBACK):
                conn.execute(f"ALTER TABLE corrections ADD COLUMN IF NOT EXISTS {column} "
                             f"{_PG_TYPES.get(column, 'TEXT')}")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS corrections_correction_id ON corrections (correction_id)")
            conn.execute("CREATE INDEX IF NOT EXISTS corrections_timestamp ON corrections (timestamp)")
            conn.execute("INSERT INTO aligner_schema (name, version) VALUES ('corrections', %s) ON CONFLICT (name) "
                         "DO UPDATE SET version = EXCLUDED.version", (SCHEMA_VERSION,))
        elif before > SCHEMA_VERSION:
            log.warning("the corrections log's schema is version %d, newer than this aligner-kit's %d; "
                        "writing the columns this version knows", before, SCHEMA_VERSION)
    return before
