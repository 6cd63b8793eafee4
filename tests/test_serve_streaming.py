"""``aligner serve``'s streaming path under clients that leave: real uvicorn, raw HTTP clients that
close the connection at ``[DONE]`` or after the first piece, a real fake-OpenAI upstream, and a
real tiny model as corrector (issue 10 items 1, 2 and 7).

The assertions are on what the server recorded (the corrections log) and on the batcher's and
rows' counters — how many tokens a cancelled row generated after its cancel — never on wall time.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading

import httpx
import pytest

from aligner import Aligner
from aligner.adapters.base import RetryPolicy
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.records import CorrectionsLog
from aligner.serve.runner import ServerThread
from fake_openai import FakeOpenAI, upstream_answer

MODEL = "fake-model"


def _aligner(fake: FakeOpenAI, corrector: str, **decoding) -> Aligner:
    al = Aligner(fake.base_url, corrector=corrector, upstream_model=MODEL, decoding=decoding or None)
    al.upstream.retry = RetryPolicy(max_retries=2, initial_backoff=0.05, timeout=30)
    return al


async def _stream_until_done(client: httpx.AsyncClient, question: str) -> list[dict]:
    """POST a streamed request and read SSE lines; close the connection the moment ``[DONE]``
    arrives, as many hand-written SSE clients do (no reading to the end of the body)."""
    events = []
    async with client.stream("POST", "/chat/completions", json={
            "model": MODEL, "stream": True, "messages": [{"role": "user", "content": question}]}) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line == "data: [DONE]":
                break  # leaving the block closes the connection mid-body
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


@pytest.mark.parametrize("suffix", ["jsonl", "sqlite"])
def test_streams_closed_at_done_are_all_in_the_corrections_log(fake, tiny_causal_path, tmp_path, suffix):
    """Item 1: the log row is written before the last event, so a client that hangs up on
    ``[DONE]`` cannot cancel it."""
    log_path = tmp_path / f"corrections.{suffix}"
    al = _aligner(fake, str(tiny_causal_path), max_new_tokens=8)
    questions = [f"Streamed question number {i}?" for i in range(48)]
    with ServerThread(create_app(al, ServeConfig(upstream_model=MODEL, log_corrections=str(log_path)))) as srv:
        async def run() -> list[list[dict]]:
            gate = asyncio.Semaphore(12)
            # a fresh connection per request: each one is closed mid-body at [DONE]
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=60,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as hc:
                async def one(q: str) -> list[dict]:
                    async with gate:
                        return await _stream_until_done(hc, q)

                return await asyncio.gather(*(one(q) for q in questions))

        results = asyncio.run(run())
        served = httpx.get(srv.url + "/health").json()["served"]
        # read at once, server still up: a row written "later" would not count
        logged = [r["question"] for r in CorrectionsLog(log_path).read()]
    assert all(ev[-1]["choices"][0]["finish_reason"] == "stop" for ev in results)
    assert served == len(questions)
    assert sorted(logged) == sorted(questions)
    if suffix == "sqlite":
        n = sqlite3.connect(log_path).execute("SELECT COUNT(*) FROM corrections").fetchone()[0]
        assert n == len(questions)


# -- item 2: a client gone or a deadline passed stops that request's generation ------------------
@pytest.fixture(scope="module")
def endless_path(tmp_path_factory):
    """A tiny model that never writes EOS (suppressed in its generation config): a stream of it
    runs until its token limit unless something stops it — the abandoned-stream worst case."""
    from fixed_tiny import fixed_tiny

    return fixed_tiny(tmp_path_factory.mktemp("endless"), context=4096, init_scale=10.0, never_stops=True)


#: long generations, no guard: only a cancel can stop them early
ENDLESS = {"max_new_tokens": 3000, "fallback": False}


async def _drop_after_first_piece(client: httpx.AsyncClient, question: str) -> str:
    """Stream, and hang up as soon as the first piece of the correction has arrived."""
    async with client.stream("POST", "/chat/completions", json={
            "model": MODEL, "stream": True, "messages": [{"role": "user", "content": question}]}) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event["error"]  # e.g. a timeout while queued behind others
                delta = event["choices"][0]["delta"]
                if delta.get("content"):
                    return delta["content"]
    raise AssertionError("the stream ended before its first piece")


def test_dropped_streams_stop_generating_and_the_next_request_is_served(fake, endless_path):
    al = _aligner(fake, str(endless_path), **ENDLESS)
    cfg = ServeConfig(upstream_model=MODEL, request_timeout=60, max_new_tokens=4000, batch_wait_ms=200)
    app = create_app(al, cfg)
    stats = app.state.aligner.batcher.stats
    n = 6
    with ServerThread(app) as srv:
        async def drop_all() -> list[str]:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=60,
                                         limits=httpx.Limits(max_keepalive_connections=0)) as hc:
                return await asyncio.gather(*(_drop_after_first_piece(hc, f"Dropped stream {i}?") for i in range(n)))

        firsts = asyncio.run(drop_all())
        # Each row was generating when its client left: the plain request next finds the model
        # free (before, it queued behind six 3000-token generations and hit the 60 s deadline).
        r = httpx.post(srv.base_url + "/chat/completions", timeout=120, json={
            "model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "And now a plain one?"}]})
    assert all(firsts)
    assert r.status_code == 200, r.text
    assert r.json()["aligner"]["original"] == upstream_answer("And now a plain one?")
    assert stats.streams == n  # the streams went through the batcher ...
    assert stats.largest_batch >= 2  # ... and shared batches
    assert stats.stopped_rows == n  # every dropped row stopped mid-generation ...
    assert stats.max_steps_after_cancel <= 2  # ... within two steps of its client leaving


def test_timed_out_streams_do_not_make_the_next_request_time_out(fake, endless_path):
    al = _aligner(fake, str(endless_path), **ENDLESS)
    app = create_app(al, ServeConfig(upstream_model=MODEL, request_timeout=3.0, max_new_tokens=4000,
                                     batch_wait_ms=500))
    stats = app.state.aligner.batcher.stats
    n = 4
    with ServerThread(app) as srv:
        async def read_all() -> list[list[str]]:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as hc:
                async def one(i: int) -> list[str]:
                    async with hc.stream("POST", "/chat/completions", json={
                            "model": MODEL, "stream": True,
                            "messages": [{"role": "user", "content": f"Timed-out stream {i}?"}]}) as resp:
                        return [line async for line in resp.aiter_lines() if line.startswith("data: ")]

                return await asyncio.gather(*(one(i) for i in range(n)))

        streams = asyncio.run(read_all())
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={
            "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Still there?"}]})
    for lines in streams:  # each stream ended in the OpenAI error shape, then [DONE]
        assert json.loads(lines[-2][6:])["error"]["code"] == "timeout" and lines[-1] == "data: [DONE]"
    assert r.status_code == 200, r.text  # not a 504 behind the timed-out generations
    # a row past its deadline stopped generating within two steps (or, still queued, never started)
    assert stats.stopped_rows >= 1 and stats.stopped_rows + stats.cancelled == n
    assert stats.max_steps_after_cancel <= 2


# -- item 7: a 5 MB upstream answer is tokenised and truncated off the event loop ----------------
def test_a_5mb_answer_is_fitted_off_the_event_loop_while_health_answers(tiny_causal_path, caplog):
    huge = ("The quick brown fox jumps over the lazy dog; then it naps. " * 90_000)[:5_000_000]
    events: list[str] = []  # the order things happened in, as the test saw them
    with FakeOpenAI(responder=lambda req: huge) as up:
        al = _aligner(up, str(tiny_causal_path), max_new_tokens=4)
        with ServerThread(create_app(al, ServeConfig(upstream_model=MODEL, request_timeout=300))) as srv, \
                caplog.at_level(logging.WARNING, logger="aligner"):
            stop = threading.Event()

            def poll_health() -> None:
                with httpx.Client(timeout=60) as hc:
                    while not stop.is_set():
                        if hc.get(srv.url + "/health").status_code == 200:
                            events.append("health")

            poller = threading.Thread(target=poll_health)
            poller.start()
            try:
                while "health" not in events:  # the poller is up before the big request goes
                    threading.Event().wait(0.01)
                events.append("request")
                r = httpx.post(srv.base_url + "/chat/completions", timeout=300, json={
                    "model": MODEL, "messages": [{"role": "user", "content": "Tell me everything."}]})
                events.append("response")
            finally:
                stop.set()
                poller.join()
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["aligner"]["original"]) == 5_000_000
    truncations = [rec for rec in caplog.records if rec.getMessage().startswith("answer truncated")]
    assert len(truncations) == 1
    # fitted in a worker thread, not on the server's event loop (the uvicorn thread) ...
    assert truncations[0].threadName != "aligner-uvicorn"
    # ... by tokenising a bounded head of the answer, not all 5 MB of it
    assert "more than" in truncations[0].getMessage() and "5,000,000 characters" in truncations[0].getMessage()
    between = events[events.index("request"):events.index("response")]
    assert between.count("health") >= 1  # /health kept answering while the answer was processed
