"""``aligner serve`` end to end: real clients → real uvicorn on 127.0.0.1 → the app → a real fake
OpenAI HTTP server as upstream. Fakes sit only at the network edge (the upstream server)."""
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
from fake_openai import upstream_answer

# fallback off: these tests compare the raw streamed and batch text of tiny untrained models, which
# loop or echo the template in a plain clone (their tokenizer is then trained on two sentences);
# a stream cannot take back what it showed, so the guard (tests/test_guard.py) would make them differ.
GREEDY = {"max_new_tokens": 16, "fallback": False}
MODEL = "fake-model"
AUTH = {"Authorization": "Bearer sk-good"}  # /health shows its details only to key holders


@pytest.fixture(scope="module")
def aligner(fake, tiny_causal_path):
    # A server-like policy: quick retries (connection resets under load), then the error.
    return Aligner(fake.base_url, corrector=str(tiny_causal_path), upstream_model=MODEL, decoding=GREEDY,
                   retry=RetryPolicy(max_retries=2, initial_backoff=0.05, timeout=30))


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("keys") / "keys.txt"
    p.write_text("# accepted keys\nsk-good\n")
    return p


@pytest.fixture(scope="module")
def server(aligner, keyfile, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    cfg = ServeConfig(upstream_model=MODEL, api_keys_file=str(keyfile), max_body_bytes=60_000,
                      request_timeout=120.0, log_corrections=str(logs / "corrections.jsonl"), allow_bypass=True)
    with ServerThread(create_app(aligner, cfg)) as srv:
        srv.log_path = logs / "corrections.jsonl"
        yield srv


def client(server, **kw):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="sk-good", max_retries=0, **kw)


def expected(aligner, question: str) -> str:
    return aligner.correct(question, upstream_answer(question)).correction


# -- clients ---------------------------------------------------------------------------------
def test_openai_sync_client_gets_the_corrected_answer(server, aligner, fake):
    q = "How do I reset my router?"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": q}]
    resp = client(server).chat.completions.create(model=MODEL, messages=messages)
    assert fake.last_body()["messages"] == messages  # the whole conversation went upstream
    meta = resp.model_extra["aligner"]
    assert meta["original"] == upstream_answer(q)
    assert resp.choices[0].message.content == expected(aligner, q)
    assert meta["corrector"] == aligner.corrector.name and meta["bypassed"] is False
    assert set(meta["timings"]) >= {"upstream", "corrector", "total"}
    assert resp.model == MODEL and resp.choices[0].finish_reason == "stop"


def test_openai_stream_reassembles_to_the_non_streamed_text(server, aligner):
    q = "Explain DNS in one line."
    pieces, final = [], None
    for chunk in client(server).chat.completions.create(model=MODEL, stream=True,
                                                         messages=[{"role": "user", "content": q}]):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            final = chunk
    assert len(pieces) > 1  # streamed as generated, not in one piece
    assert "".join(pieces) == expected(aligner, q)
    assert final.model_extra["aligner"]["original"] == upstream_answer(q)


async def test_openai_async_client_json_and_stream(server, aligner):
    import openai

    q = "What is a good name for a cat?"
    ac = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-good", max_retries=0)
    resp = await ac.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
    stream = await ac.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}],
                                              stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    await ac.close()
    assert resp.choices[0].message.content == text == expected(aligner, q)
    assert usage is not None and usage.completion_tokens >= 1


def test_litellm_through_the_proxy(server, aligner):
    import litellm

    q = "Is tea healthier than coffee?"
    common = dict(model=f"openai/{MODEL}", api_base=server.base_url, api_key="sk-good",
                  messages=[{"role": "user", "content": q}], num_retries=0)
    resp = litellm.completion(**common)
    assert resp.choices[0].message.content == expected(aligner, q)
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm.completion(stream=True, **common))
    assert streamed == expected(aligner, q)


def test_bypass_header_returns_the_upstream_answer(server):
    q = "Tell me a joke."
    resp = client(server).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}],
                                                  extra_headers={"X-Aligner-Bypass": "1"})
    assert resp.choices[0].message.content == upstream_answer(q)
    assert resp.model_extra["aligner"]["bypassed"] is True


def test_models_health_and_corrections_log(server):
    assert [m.id for m in client(server).models.list()] == [MODEL, "aligner"]
    health = httpx.get(server.url + "/health", headers=AUTH).json()
    assert health["status"] == "ok" and health["upstream"]
    rows = list(CorrectionsLog(server.log_path).read())
    assert rows and {"question", "answer", "correction", "model", "timings", "timestamp"} <= set(rows[0])
    assert any(r["question"] == "How do I reset my router?" for r in rows)
    assert not any(r["question"] == "Tell me a joke." for r in rows)  # bypassed: nothing corrected


# -- load ------------------------------------------------------------------------------------
def test_64_concurrent_requests_are_all_answered_and_never_mixed_up(server, aligner):
    questions = [f"Question number {i}: what is {i} squared?" for i in range(64)]

    async def run() -> list[dict]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120,
                                     headers={"Authorization": "Bearer sk-good"}) as hc:
            async def one(q: str) -> dict:
                r = await hc.post("/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": q}]})
                assert r.status_code == 200, r.text
                return r.json()

            return await asyncio.gather(*(one(q) for q in questions))

    before = httpx.get(server.url + "/health", headers=AUTH).json()["batching"]
    results = asyncio.run(run())
    for q, body in zip(questions, results):
        assert body["aligner"]["original"] == upstream_answer(q)  # its own upstream answer
        assert body["choices"][0]["message"]["content"] == expected(aligner, q)  # its own correction
    health = httpx.get(server.url + "/health", headers=AUTH).json()
    assert health["status"] == "ok" and health["in_flight"] == 0
    done = health["batching"]["requests"] - before["requests"]
    batches, cap = health["batching"]["batches"] - before["batches"], ServeConfig().max_batch_size
    assert done == 64 and 64 // cap <= batches <= 64 and health["batching"]["largest_batch"] <= cap  # any schedule


# -- errors ----------------------------------------------------------------------------------
def _post(server, body=None, *, content=None, key="sk-good", headers=None):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    return httpx.post(server.base_url + "/chat/completions", json=body, content=content, headers=h, timeout=30)


@pytest.mark.parametrize("case, status, code", [
    ("malformed", 400, "invalid_json"), ("no_messages", 400, "missing_required_parameter"),
    ("empty_content", 400, "invalid_value"), ("not_a_list", 400, "invalid_value"),
    ("no_key", 401, "invalid_api_key"), ("wrong_key", 401, "invalid_api_key"),
    ("unknown_model", 404, "model_not_found"), ("oversize", 413, "request_too_large"),
    ("max_tokens", 400, "invalid_value"), ("long_prompt", 400, "context_length_exceeded"),
])
def test_bad_requests_get_openai_style_errors(server, case, status, code):
    msgs = [{"role": "user", "content": "hi"}]
    r = {
        "malformed": lambda: _post(server, content=b'{"model": "fake-model", "messages": [', headers={"content-type": "application/json"}),
        "no_messages": lambda: _post(server, {"model": MODEL}),
        "empty_content": lambda: _post(server, {"model": MODEL, "messages": [{"role": "user", "content": "  "}]}),
        "not_a_list": lambda: _post(server, {"model": MODEL, "messages": "hi"}),
        "no_key": lambda: _post(server, {"model": MODEL, "messages": msgs}, key=None),
        "wrong_key": lambda: _post(server, {"model": MODEL, "messages": msgs}, key="sk-bad"),
        "unknown_model": lambda: _post(server, {"model": "gpt-17", "messages": msgs}),
        "oversize": lambda: _post(server, {"model": MODEL, "messages": [{"role": "user", "content": "x" * 70_000}]}),
        "max_tokens": lambda: _post(server, {"model": MODEL, "messages": msgs, "max_tokens": 10**6}),
        # under the 60 kB body limit, over the 32,000-character prompt limit
        "long_prompt": lambda: _post(server, {"model": MODEL, "messages": [{"role": "user", "content": "y" * 33_000}]}),
    }[case]()
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"]


def test_upstream_failures_map_to_502_429_504_and_the_server_stays_up(server, fake, aligner):
    msgs = [{"role": "user", "content": "Will this work?"}]
    fake.fail_next(500, times=3)  # the first try and both retries
    r = _post(server, {"model": MODEL, "messages": msgs})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    fake.fail_next(429, times=3, retry_after=0.05)
    r = _post(server, {"model": MODEL, "messages": msgs})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    # past a request timeout: its own server with a short one (the shared server's is long, so that
    # its load test never times out on a busy machine)
    fake.fail_next("hang")
    with ServerThread(create_app(aligner, ServeConfig(upstream_model=MODEL, request_timeout=2.0))) as quick:
        r = httpx.post(quick.base_url + "/chat/completions", json={"model": MODEL, "messages": msgs}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert httpx.get(server.url + "/health", headers=AUTH).json()["status"] == "ok"
    ok = client(server).chat.completions.create(model=MODEL, messages=msgs)
    assert ok.model_extra["aligner"]["original"] == upstream_answer("Will this work?")
    import openai

    fake.fail_next(500, times=3)
    with pytest.raises(openai.InternalServerError) as info:  # the SDK sees a proper 5xx
        client(server).chat.completions.create(model=MODEL, messages=msgs)
    assert info.value.status_code == 502


# -- logs, shutdown, sqlite, no-upstream mode -------------------------------------------------
def test_access_log_is_json_without_prompts_unless_asked(aligner, caplog):
    secret = "my secret question about taxes"
    for log_prompts in (False, True):
        caplog.clear()
        app = create_app(aligner, ServeConfig(upstream_model=MODEL, log_prompts=log_prompts))
        with caplog.at_level(logging.INFO, logger="aligner.serve.access"), ServerThread(app) as srv:
            r = httpx.post(srv.base_url + "/chat/completions", timeout=30,
                           json={"model": MODEL, "messages": [{"role": "user", "content": secret}]})
            assert r.status_code == 200
        lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "aligner.serve.access"]
        line = next(x for x in lines if x["path"] == "/v1/chat/completions")
        assert line["status"] == 200 and line["model"] == MODEL and "ms" in line
        assert (secret in json.dumps(lines)) is log_prompts


def test_graceful_shutdown_finishes_in_flight_requests(aligner, fake):
    fake.fail_next("slow", seconds=1.0)
    srv = ServerThread(create_app(aligner, ServeConfig(upstream_model=MODEL))).start()
    result: dict = {}

    def call() -> None:
        result["r"] = httpx.post(srv.base_url + "/chat/completions", timeout=30,
                                 json={"model": MODEL, "messages": [{"role": "user", "content": "slow one"}]})

    t = threading.Thread(target=call)
    t.start()
    while fake.pending_faults:  # the request has reached the upstream
        threading.Event().wait(0.02)
    srv.stop()  # like SIGTERM: stop accepting, let the in-flight request finish
    t.join(30)
    assert result["r"].status_code == 200
    assert result["r"].json()["aligner"]["original"] == upstream_answer("slow one")


def test_sqlite_log_and_correct_only_mode(tiny_causal_path, tmp_path):
    """With no upstream the final assistant message is the answer to correct."""
    al = Aligner(None, corrector=str(tiny_causal_path), decoding=GREEDY)
    db = tmp_path / "c.sqlite"
    with ServerThread(create_app(al, ServeConfig(log_corrections=str(db)))) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=30, json={"model": "aligner", "messages": [
            {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 5."}]})
        bad = httpx.post(srv.base_url + "/chat/completions", timeout=30,
                         json={"messages": [{"role": "user", "content": "What is 2 + 2?"}]})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == al.correct("What is 2 + 2?", "2 + 2 = 5.").correction
    assert bad.status_code == 400 and "assistant" in bad.json()["error"]["message"]
    rows = sqlite3.connect(db).execute("SELECT question, answer, correction FROM corrections").fetchall()
    assert rows == [("What is 2 + 2?", "2 + 2 = 5.", r.json()["choices"][0]["message"]["content"])]


def test_serve_cli_flags_and_yaml(tmp_path):
    from aligner.cli import build_parser
    from aligner.contracts.config_parser import build_config
    from aligner.contracts.errors import ConfigError

    yaml_file = tmp_path / "serve.yaml"
    yaml_file.write_text("upstream: http://127.0.0.1:9/v1\nport: 9001\nmax-batch-size: 4\n")
    args = build_parser().parse_args(["serve", "--config", str(yaml_file), "--port", "9002", "--no-batching",
                                      "--upstream-model", "m", "--log-corrections", "x.jsonl"])
    cfg = build_config(ServeConfig, args, args.config)
    assert (cfg.port, cfg.max_batch_size, cfg.batching, cfg.upstream_model) == (9002, 4, False, "m")
    with pytest.raises(ConfigError, match="log_corrections"):
        ServeConfig(log_corrections="x.csv")
    with pytest.raises(ConfigError, match="api_keys_env"):
        ServeConfig(api_keys_env="ALIGNER_NO_SUCH_VAR_SET").load_api_keys()
