"""Judge verdicts kept on disk, so an identical re-run makes no judge call and a killed run resumes.

One SQLite row per finished judgement, keyed by a hash of (judge, its parameters, the prompt, the
order). It is committed as soon as the judgement is made, so a run killed at any moment loses only
the calls in flight. A judgement whose replies never held a verdict is kept too (re-asking the
same judge the same thing would spend money on the same answer); one that failed with an error is
not, so a re-run asks again.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError

_SCHEMA = """CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, ord TEXT NOT NULL, prompt TEXT NOT NULL,
    verdict TEXT, replies TEXT NOT NULL, calls INTEGER NOT NULL, created REAL NOT NULL)"""


def judgement_key(judge: str, params: dict[str, Any], system: str, prompt: str, order: str) -> str:
    """The cache key: any change to who judges, how, or what they read is a different judgement."""
    blob = json.dumps([judge, params, system, prompt, order], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """A small SQLite store; safe to read and write from several threads of one process."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open the judge cache {str(self.path)!r} ({exc}).", field="cache",
                              fix="pass another --cache path, or delete the damaged file.") from exc
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT verdict, replies, calls FROM judgements WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return {"verdict": row[0], "replies": json.loads(row[1]), "calls": row[2]}

    def put(self, key: str, *, judge: str, order: str, prompt: str, verdict: str | None,
            replies: list[str], calls: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (key, judge, order, prompt, verdict, json.dumps(replies, ensure_ascii=False),
                              calls, time.time()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def prompts(self) -> list[tuple[str, str]]:
        """(prompt, order) of every stored judgement: what a resumed run must not ask again."""
        with self._lock:
            return [(p, o) for p, o in self._db.execute("SELECT prompt, ord FROM judgements")]

    def close(self) -> None:
        with self._lock:
            self._db.close()
