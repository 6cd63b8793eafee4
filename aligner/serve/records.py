"""The corrections log: every served (question, answer, correction) kept for later training.

Served traffic is free weak-to-strong data (the Aligner paper's third use: a corrector's corrections
teach a stronger model): (question, correction) pairs for SFT and (correction ≻ answer) for DPO.
JSONL is the format ``aligner generate``/trl read; SQLite suits a long-running server that several
tools query while it writes.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError

_SCHEMA = """CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp REAL NOT NULL, model TEXT, question TEXT NOT NULL,
    answer TEXT NOT NULL, correction TEXT NOT NULL, changed INTEGER, corrector TEXT, upstream TEXT,
    timings TEXT, fallback TEXT, gate TEXT)"""
#: ``fallback``: why the corrector's output was replaced by the answer (None: it was not), so a
#: training export can leave those rows out.
#: ``gate``: the gate's verdict (JSON) when a gate was asked first (None: no gate).
_COLUMNS = ("timestamp", "model", "question", "answer", "correction", "changed", "corrector", "upstream", "timings",
            "fallback", "gate")


class CorrectionsLog:
    """Append-only, thread-safe writer for JSONL (``.jsonl``) or SQLite (``.sqlite``/``.db``) files."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path).expanduser()
        self.kind = "jsonl" if self.path.suffix == ".jsonl" else "sqlite"
        if self.path.suffix not in (".jsonl", ".sqlite", ".sqlite3", ".db"):
            raise ConfigError(f"unknown format {str(self.path)!r}.", field="log_corrections",
                              fix="use a path ending in .jsonl or .sqlite.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self.kind == "sqlite":
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(_SCHEMA)
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(corrections)")}
            for column in ("fallback", "gate"):  # a log written before the column existed
                if column not in have:
                    self._conn.execute(f"ALTER TABLE corrections ADD COLUMN {column} TEXT")
            self._conn.commit()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (keys: see ``_COLUMNS``); flushed at once so a crash loses nothing."""
        row = {k: record.get(k) for k in _COLUMNS}
        with self._lock:
            if self._conn is not None:
                self._conn.execute(f"INSERT INTO corrections ({', '.join(_COLUMNS)}) VALUES "
                                   f"({', '.join('?' for _ in _COLUMNS)})",
                                   [json.dumps(v) if k == "timings" or (k == "gate" and v is not None)
                                    else (int(v) if k == "changed" else v)
                                    for k, v in row.items()])
                self._conn.commit()
            else:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def read(self) -> Iterator[dict[str, Any]]:
        """The records written so far, oldest first (for tests and export tools)."""
        if self.kind == "sqlite":
            query = f"SELECT {', '.join(_COLUMNS)} FROM corrections ORDER BY id"
            with self._lock:
                if self._conn is not None:
                    rows = self._conn.execute(query).fetchall()
                else:
                    with sqlite3.connect(self.path) as conn:
                        rows = conn.execute(query).fetchall()
            for r in rows:
                d = dict(zip(_COLUMNS, r))
                d["timings"] = json.loads(d["timings"]) if d["timings"] else {}
                d["changed"] = bool(d["changed"])
                d["gate"] = json.loads(d["gate"]) if d["gate"] else None
                yield d
        elif self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
