"""The corrections log's three backends (JSONL, SQLite, PostgreSQL on a real server): rows with
ids, feedback beside them, schema migration, and a database that goes away and comes back."""
from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time

import pytest

from aligner.contracts.errors import ConfigError
from aligner.runtime.logs import open_log, read_log
from aligner.runtime.records import COLUMNS, CorrectionsLog, feedback_row


def row(i: int, **kw) -> dict:
    return {"id": f"chatcmpl-{i:04d}", "timestamp": 1_700_000_000.0 + i, "model": "m", "question": f"Q{i}?",
            "answer": f"A{i}.", "correction": f"C{i}.", "changed": True, "corrector": "tiny", "upstream": "up",
            "timings": {"upstream": 0.5, "corrector": 0.25}, "fallback": None, "gate": None, "replica": "h:1", **kw}


@pytest.fixture(params=["jsonl", "sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / f"log.{request.param}")


def test_each_backend_keeps_rows_and_the_feedback_beside_them(target):
    log = open_log(target)
    try:
        for i in range(3):
            log.write(row(i, gate={"flagged": True, "score": 0.9} if i == 2 else None))
        assert log.feedback("chatcmpl-0001", feedback_row(-1, "wrong", "it changed the meaning", "A1, fixed."))
        assert log.feedback("chatcmpl-0002", feedback_row(0))
        assert log.feedback("chatcmpl-0002", feedback_row(1, comment="on second thought"))  # the later one wins
        assert not log.feedback("chatcmpl-9999", feedback_row(1))
        assert log.health() == {"backend": log.kind, "written": 3, "pending": 0, "lost": 0, "last_error": None,
                                "status": "ok"}
    finally:
        log.close()
    for rows in (list(read_log(target)), list(open_log(target).read())):
        assert [r["id"] for r in rows] == ["chatcmpl-0000", "chatcmpl-0001", "chatcmpl-0002"]
        assert {k: rows[0][k] for k in COLUMNS} == row(0)
        assert rows[0]["rating"] is None and rows[0]["user_correction"] is None
        assert (rows[1]["rating"], rows[1]["label"], rows[1]["comment"], rows[1]["user_correction"]) == \
            (-1, "wrong", "it changed the meaning", "A1, fixed.")
        assert (rows[2]["rating"], rows[2]["comment"], rows[2]["gate"]) == (1, "on second thought",
                                                                             {"flagged": True, "score": 0.9})
        assert rows[2]["feedback_at"] >= rows[1]["feedback_at"] > 1_700_000_000


def test_a_jsonl_log_takes_feedback_for_a_row_another_process_wrote(tmp_path):
    path = tmp_path / "shared.jsonl"
    writer, other = CorrectionsLog(path), CorrectionsLog(path)
    writer.write(row(1))
    assert other.feedback("chatcmpl-0001", feedback_row(1))  # read from the file, not from memory
    writer.write(row(2))
    assert other.feedback("chatcmpl-0002", feedback_row(-1))
    assert not other.feedback("chatcmpl-0003", feedback_row(1))
    assert [(r["id"], r["rating"]) for r in writer.read()] == [("chatcmpl-0001", 1), ("chatcmpl-0002", -1)]
    # the log stays one correction per line: feedback is in its own file beside it
    assert len(path.read_text().splitlines()) == 2 and (tmp_path / "shared.feedback.jsonl").is_file()


def test_an_older_sqlite_log_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)  # the table as aligner-kit wrote it before ids and feedback (no gate either)
    conn.execute("CREATE TABLE corrections (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp REAL NOT NULL, model "
                 "TEXT, question TEXT NOT NULL, answer TEXT NOT NULL, correction TEXT NOT NULL, changed INTEGER, "
                 "corrector TEXT, upstream TEXT, timings TEXT)")
    conn.execute("INSERT INTO corrections (timestamp, question, answer, correction, changed, timings) VALUES "
                 "(1.0, 'old q', 'old a', 'old c', 1, '{\"corrector\": 1.0}')")
    conn.commit()
    conn.close()
    before = list(read_log(db))  # read-only: an old log reads, with None where it has no column
    assert before[0]["question"] == "old q" and before[0]["id"] is None and before[0]["rating"] is None
    log = CorrectionsLog(db)
    log.write(row(7))
    assert log.feedback("chatcmpl-0007", feedback_row(1))
    log.close()
    rows = list(read_log(db))
    assert [(r["question"], r["id"], r["rating"], r["timings"]) for r in rows] == [
        ("old q", None, None, {"corrector": 1.0}), ("Q7?", "chatcmpl-0007", 1, row(7)["timings"])]
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2


def test_an_older_postgres_log_gains_the_new_columns(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # schema version 1: no ids, no feedback
        conn.execute("CREATE TABLE aligner_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.execute("INSERT INTO aligner_schema VALUES ('corrections', 1)")
        conn.execute("CREATE TABLE corrections (id BIGSERIAL PRIMARY KEY, timestamp DOUBLE PRECISION NOT NULL, "
                     "model TEXT, question TEXT NOT NULL, answer TEXT NOT NULL, correction TEXT NOT NULL, changed "
                     "BOOLEAN, corrector TEXT, upstream TEXT, timings JSONB, fallback TEXT, gate JSONB)")
        conn.execute("INSERT INTO corrections (timestamp, question, answer, correction, changed) "
                     "VALUES (1.0, 'old q', 'old a', 'old c', false)")
    assert [r["question"] for r in read_log(pg_url)] == ["old q"]  # read before the migration, unchanged
    log = open_log(pg_url)
    log.write(row(3))
    assert log.feedback("chatcmpl-0003", feedback_row(-1))
    log.close()
    assert [(r["question"], r["id"], r["rating"]) for r in read_log(pg_url)] == [
        ("old q", None, None), ("Q3?", "chatcmpl-0003", -1)]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM aligner_schema").fetchone()[0] == 2
        columns = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                              "WHERE table_name = 'corrections'")}
    assert {"correction_id", "replica", "rating", "label", "comment", "user_correction", "feedback_at"} <= columns


def test_replicas_starting_together_create_one_schema(pg_url):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        logs = list(pool.map(lambda _: open_log(pg_url), range(6)))
    for i, log in enumerate(logs):
        log.write(row(i))
    for log in logs:
        log.close()
    assert sorted(r["id"] for r in read_log(pg_url)) == [f"chatcmpl-{i:04d}" for i in range(6)]


def test_an_unreachable_database_at_start_is_one_line_naming_the_flag(postgres, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    url = f"postgresql://aligner:s3cret@127.0.0.1:{port}/traffic"
    with pytest.raises(ConfigError, match="log_corrections") as info:
        open_log(url)
    assert "s3cret" not in str(info.value) and "aligner:***@" in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "aligner", "serve", "--log-corrections", url, "--port", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: log_corrections: cannot reach the corrections log"), lines
    assert "--log-corrections" in lines[0] and "Connection refused" in lines[0] and "s3cret" not in lines[0]
    with pytest.raises(ConfigError, match="log_corrections: unknown format"):
        open_log("mysql://x/y")


def test_a_database_that_goes_away_gets_its_rows_when_it_comes_back(own_postgres, caplog):
    url = own_postgres.new_database()
    log = open_log(url)
    try:
        log.write(row(0))
        own_postgres.kill()
        for i in range(1, 21):
            log.write(row(i))  # returns: the row waits in the buffer
        health = log.health()
        assert health["status"] == "database unreachable" and health["pending"] == 20 and health["lost"] == 0
        assert health["written"] == 1 and "OperationalError" in health["last_error"]
        assert log.feedback("chatcmpl-0005", feedback_row(1, corrected_text="A5, better."))  # follows its row
        with pytest.raises(Exception, match="unreachable"):
            log.feedback("chatcmpl-0000", feedback_row(1))  # a row in the database, which is away: retry later
        own_postgres.start()
        deadline = time.monotonic() + 60
        while log.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.health()["written"] == 21 and log.health()["status"] == "ok"
    finally:
        log.close()
    rows = list(read_log(url))
    assert [r["id"] for r in rows] == [f"chatcmpl-{i:04d}" for i in range(21)]  # each once, in order
    assert rows[5]["rating"] == 1 and rows[5]["user_correction"] == "A5, better."
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_rows_that_cannot_be_written_are_counted_and_logged_never_dropped_silently(own_postgres, caplog):
    url = own_postgres.new_database()
    log = open_log(url, max_pending=3, flush_timeout=0.5)
    own_postgres.kill()
    with caplog.at_level(logging.ERROR, logger="aligner.serve"):
        for i in range(5):
            log.write(row(i))
        health = log.health()
        assert (health["pending"], health["lost"], health["status"]) == (3, 2, "database unreachable")
        log.close()  # the database never came back: what waits is lost, and said
    assert (log.lost, log.written, log.pending) == (5, 0, 0)
    said = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "NOT written" in said and all(f"chatcmpl-{i:04d}" in said for i in range(5))
    assert "Q0?" not in said  # ids only: rows hold user text


def test_a_row_the_database_refuses_is_counted_and_the_others_still_written(pg_url, caplog):
    """Tiny correctors write NUL characters, which PostgreSQL text cannot hold: they are replaced,
    not the row lost. A row refused all the same (here: no question) is lost on its own — counted,
    logged by id without its text — and never holds up the rows queued behind it."""
    log = open_log(pg_url)
    log.write(row(1, correction="C\x00one.", timings={"corrector\x00": 0.5}))
    with caplog.at_level(logging.ERROR, logger="aligner.serve"):
        log.write(row(2, question=None, answer="private answer text"))
    log.write(row(3))
    log.close()
    rows = list(read_log(pg_url))
    assert [(r["id"], r["correction"]) for r in rows] == [("chatcmpl-0001", "C\ufffdone."), ("chatcmpl-0003", "C3.")]
    assert rows[0]["timings"] == {"corrector\ufffd": 0.5}
    assert (log.written, log.lost) == (2, 1)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "chatcmpl-0002" in said and "not-null" in said and "private answer text" not in said
