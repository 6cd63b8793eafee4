"""Several ``aligner serve`` replicas sharing one PostgreSQL corrections log (issue 25 item 5).

Two real ``aligner serve`` processes (the tiny corrector, a real fake OpenAI upstream), one real
PostgreSQL server, no balancer: the client alternates between them, with concurrent plain and
streamed requests, some streams abandoned after their first piece. Then: every answered request
has exactly one row, written by the replica that answered it; ids are unique; feedback sent to
the *other* replica lands on the right row; the two replicas' ``/metrics`` add up to what was
sent. Also: the database killed under load (requests keep being answered; the rows are written
when it is back), and one server with ``--workers 2`` (metrics summed across its processes).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import httpx
import pytest

from aligner import Aligner
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.logs import read_log
from aligner.serve.runner import ServerThread
from fake_openai import FakeOpenAI
from processes import aligner_serve

MODEL = "fake-model"
KEY = "sk-replica"
AUTH = {"Authorization": f"Bearer {KEY}"}


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def total(metrics: list[dict], name: str, **labels: str) -> float:
    """A sample summed over replicas; labels not given are summed over too."""
    return sum(v for m in metrics for (n, lab), v in m.items()
               if n == name and all(dict(lab).get(k) == x for k, x in labels.items()))


def settled(urls: list[str]) -> list[dict]:
    """Each replica's /health once nothing is in flight or waiting for the database."""
    deadline = time.monotonic() + 60
    while True:
        healths = [httpx.get(u + "/health", headers=AUTH, timeout=10).json() for u in urls]
        if all(h["in_flight"] == 0 and h["corrections_log"]["pending"] == 0 for h in healths):
            return healths
        assert time.monotonic() < deadline, [(h["in_flight"], h["corrections_log"]) for h in healths]
        time.sleep(0.1)


async def one_request(client: httpx.AsyncClient, url: str, i: int, kind: str) -> dict:
    """``kind``: plain, stream (read to [DONE]) or abandon (hang up after the first piece).
    Returns what the client saw: the id, whether the answer was whole, the text."""
    body = {"model": MODEL, "max_tokens": 24, "messages": [{"role": "user", "content": f"Question {i}: how?"}]}
    if kind == "plain":
        r = await client.post(url + "/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["aligner"]["id"] == d["id"]
        return {"id": d["id"], "answered": True, "url": url, "text": d["choices"][0]["message"]["content"]}
    seen: dict = {"id": None, "answered": False, "url": url, "text": ""}
    async with client.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers=AUTH) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            seen["id"] = event["id"]
            if event.get("aligner"):
                assert event["aligner"]["id"] == event["id"]
                seen["answered"] = True
            seen["text"] += (event["choices"][0]["delta"].get("content") or "") if event["choices"] else ""
            if kind == "abandon" and seen["text"]:
                break  # leaving the block closes the connection mid-stream
    return seen


def test_two_replicas_share_one_postgres_log(tiny_causal_path, pg_url, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY + "\n")
    common = ["--upstream", None, "--upstream-model", MODEL, "--corrector", str(tiny_causal_path), "--log-corrections",
              pg_url, "--api-keys-file", str(keys), "--max-new-tokens", "24", "--max-batch-size", "8"]
    kinds = ["plain", "stream", "plain", "abandon", "stream", "plain"] * 6  # 36 requests
    with FakeOpenAI() as upstream:
        common[1] = upstream.base_url
        with aligner_serve(*common, cwd=tmp_path, replicas=2) as [(url_a, proc_a), (url_b, proc_b)]:
            urls = [url_a, url_b]

            async def run() -> list[dict]:
                gate = asyncio.Semaphore(8)
                async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                    async def go(i: int, kind: str) -> dict:
                        async with gate:
                            return await one_request(c, urls[i % 2], i, kind)  # the client alternates

                    return await asyncio.gather(*(go(i, k) for i, k in enumerate(kinds)))

            seen = asyncio.run(run())
            settled(urls)
            rows = list(read_log(pg_url))
            answered = [s for s in seen if s["answered"]]
            # feedback for each answered row, sent to the replica that did NOT write it
            ratings = {}
            for n, s in enumerate(answered):
                other = url_b if s["url"] == url_a else url_a
                ratings[s["id"]] = (n % 3) - 1
                body = {"id": s["id"], "rating": ratings[s["id"]]}
                if n % 4 == 0:
                    body["corrected_text"] = f"A user's better answer {n}."
                r = httpx.post(other + "/v1/feedback", json=body, headers=AUTH, timeout=30)
                assert r.status_code == 200, r.text
            unknown = httpx.post(url_a + "/v1/feedback", json={"id": "chatcmpl-none", "rating": 1}, headers=AUTH)
            bad = httpx.post(url_b + "/v1/feedback", json={"id": answered[0]["id"], "rating": 5}, headers=AUTH)
            metrics = [scrape(u) for u in urls]
            replica_of = {url_a: f"{socket.gethostname()}:{proc_a.pid}", url_b: f"{socket.gethostname()}:{proc_b.pid}"}
    rated = {r["id"]: r for r in read_log(pg_url)}

    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "ids are unique"
    by_id = {r["id"]: r for r in rows}
    abandoned = {s["id"] for s in seen if not s["answered"]}
    assert len(answered) == kinds.count("plain") + kinds.count("stream") and abandoned
    for s in answered:  # exactly one row each, written by the replica that answered, with what it served
        assert ids.count(s["id"]) == 1
        row = by_id[s["id"]]
        assert row["replica"] == replica_of[s["url"]]
        if not row["fallback"]:  # a fallback stream may have shown part of the correction first
            assert row["correction"] == s["text"].replace("\x00", "\ufffd")  # PostgreSQL holds no NUL
    assert set(ids) - {s["id"] for s in answered} <= abandoned  # a row beyond those: a stream cut at its end
    assert {r["replica"] for r in rows} == set(replica_of.values())
    for cid, rating in ratings.items():  # feedback landed on the right row, from either replica
        assert rated[cid]["rating"] == rating
    assert sum(1 for r in rated.values() if r["user_correction"]) == len(range(0, len(answered), 4))
    assert unknown.status_code == 404 and bad.status_code == 400 and bad.json()["error"]["param"] == "rating"
    # the two replicas' metrics add up to what was sent and what was written
    chat_route = "/v1/chat/completions"
    assert total(metrics, "aligner_requests_total", route=chat_route, status="200") == len(kinds)
    assert total(metrics, "aligner_requests_total", route=chat_route) == len(kinds)
    assert total(metrics, "aligner_requests_total", route="/v1/feedback", status="200") == len(answered)
    assert total(metrics, "aligner_requests_total", route="/v1/feedback", status="404") == 1
    assert total(metrics, "aligner_requests_total", route="/v1/feedback", status="400") == 1
    assert total(metrics, "aligner_feedback_total") == len(answered)
    corrected = sum(total(metrics, "aligner_corrections_total", outcome=o) for o in ("changed", "unchanged", "fallback"))
    assert corrected == len(rows) == total(metrics, "aligner_log_rows_total", result="written")
    assert total(metrics, "aligner_log_rows_total", result="lost") == 0
    assert total(metrics, "aligner_upstream_seconds_count") == len(kinds)
    streamed = [s for s, k in zip(seen, kinds) if k != "plain"]
    assert sum(1 for s in streamed if s["text"]) <= total(metrics, "aligner_time_to_first_piece_seconds_count") \
        <= len(streamed)
    assert all(value > 0 for value in (total([m], "aligner_requests_total", route=chat_route) for m in metrics))


def test_the_database_killed_under_load(tiny_causal_path, own_postgres, caplog):
    """Requests keep being answered while the database is down; every answered request's row is
    written once it is back; /health says what is waiting meanwhile."""
    url = own_postgres.new_database()
    with FakeOpenAI() as upstream:
        al = Aligner(upstream.base_url, corrector=str(tiny_causal_path), upstream_model=MODEL,
                     decoding={"max_new_tokens": 12})
        cfg = ServeConfig(upstream_model=MODEL, log_corrections=url, max_batch_size=4)
        with ServerThread(create_app(al, cfg)) as srv:
            answered: list[str] = []
            failures: list[str] = []
            stop = threading.Event()

            def load(worker: int) -> None:
                with httpx.Client(base_url=srv.base_url, timeout=60) as c:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        r = c.post("/chat/completions", json={"model": MODEL, "messages": [
                            {"role": "user", "content": f"Worker {worker} question {n}?"}]})
                        (answered if r.status_code == 200 else failures).append(
                            r.json()["id"] if r.status_code == 200 else r.text)

            def wait_for(n: int) -> None:
                deadline = time.monotonic() + 120
                while len(answered) < n:
                    assert time.monotonic() < deadline and not failures, failures
                    time.sleep(0.05)

            threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            try:
                wait_for(8)
                own_postgres.kill()
                killed_at = len(answered)
                wait_for(killed_at + 12)  # answered with the database down
                down = httpx.get(srv.url + "/health").json()["corrections_log"]
                own_postgres.start()
                wait_for(len(answered) + 8)
            finally:
                stop.set()
                for t in threads:
                    t.join(120)
            health = settled([srv.url])[0]["corrections_log"]
    assert not failures
    assert down["status"] == "database unreachable" and down["pending"] > 0 and down["lost"] == 0
    assert health["lost"] == 0 and health["status"] == "ok"
    ids = [r["id"] for r in read_log(url)]
    assert sorted(ids) == sorted(answered) and len(ids) == len(set(ids))  # each exactly once
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_rows_beyond_the_buffer_are_lost_and_shown_on_health_and_metrics(tiny_causal_path, own_postgres, caplog):
    """The database down longer than the buffer lasts (``log_buffer_rows=3``): every request is
    still answered; the rows beyond the buffer are lost, and said so: counted on ``/health`` and
    ``/metrics``, logged by id. The buffered rows are written once the database is back."""
    from aligner.contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="log_buffer_rows: must be a positive int"):
        ServeConfig(log_buffer_rows=0)
    url = own_postgres.new_database()
    with FakeOpenAI() as upstream:
        al = Aligner(upstream.base_url, corrector=str(tiny_causal_path), upstream_model=MODEL,
                     decoding={"max_new_tokens": 12})
        cfg = ServeConfig(upstream_model=MODEL, log_corrections=url, log_buffer_rows=3)
        with caplog.at_level(logging.ERROR, logger="aligner.serve"), ServerThread(create_app(al, cfg)) as srv:
            with httpx.Client(base_url=srv.base_url, timeout=60) as c:
                def ask(n: int) -> str:
                    r = c.post("/chat/completions", json={"model": MODEL, "messages": [
                        {"role": "user", "content": f"Question {n}?"}]})
                    assert r.status_code == 200, r.text
                    return r.json()["aligner"]["id"]

                ids = [ask(0)]
                own_postgres.kill()
                ids += [ask(n) for n in range(1, 6)]  # 5 rows, 3 fit the buffer
                down = httpx.get(srv.url + "/health").json()["corrections_log"]
                metrics_down = scrape(srv.url)
                own_postgres.start()
                health = settled([srv.url])[0]["corrections_log"]
                metrics = scrape(srv.url)
    assert (down["pending"], down["lost"], down["status"]) == (3, 2, "database unreachable")
    assert total([metrics_down], "aligner_log_rows_total", result="lost") == 2
    assert total([metrics_down], "aligner_log_pending_rows") == 3
    assert (health["written"], health["pending"], health["lost"], health["status"]) == (4, 0, 2, "degraded")
    assert total([metrics], "aligner_log_rows_total", result="lost") == 2
    assert total([metrics], "aligner_log_rows_total", result="written") == 4
    assert [r["id"] for r in read_log(url)] == [ids[0], *ids[1:4]]  # the first three of the outage kept, in order
    said = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert ids[4] in said and ids[5] in said and "Question 4?" not in said


def test_workers_processes_metrics_add_up(tiny_causal_path, tmp_path):
    """``--workers 2``: two processes on one port, each its own app; any scrape sums both."""
    log = tmp_path / "log.sqlite"
    with FakeOpenAI() as upstream:
        with aligner_serve("--upstream", upstream.base_url, "--upstream-model", MODEL, "--corrector",
                           str(tiny_causal_path), "--workers", "2", "--log-corrections", str(log),
                           "--max-new-tokens", "8", cwd=tmp_path) as [(url, _)]:
            async def run() -> list[int]:
                async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                    async def one(i: int) -> int:
                        r = await c.post(url + "/v1/chat/completions", json={
                            "model": MODEL, "messages": [{"role": "user", "content": f"Worker question {i}?"}]})
                        return r.status_code

                    return await asyncio.gather(*(one(i) for i in range(16)))

            assert asyncio.run(run()) == [200] * 16
            deadline = time.monotonic() + 30
            while True:  # the in-flight gauge is a live sum: 1 (the scrape itself) once all are done
                scrapes = [scrape(url) for _ in range(4)]
                if all(total([m], "aligner_in_flight_requests") == 1 for m in scrapes) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    rows = list(read_log(log))
    for m in scrapes:  # whichever worker answered the scrape, it reports both
        assert total([m], "aligner_requests_total", route="/v1/chat/completions", status="200") == 16
        assert total([m], "aligner_corrections_total") == 16 == len(rows)
        assert total([m], "aligner_in_flight_requests") == 1
    assert {r["replica"].rsplit(":", 1)[0] for r in rows} == {socket.gethostname()}
    assert len({r["id"] for r in rows}) == 16
