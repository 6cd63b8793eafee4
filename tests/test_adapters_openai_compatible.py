"""OpenAICompatibleUpstream: any server speaking the OpenAI chat-completions protocol, over httpx
(a real local HTTP server, tests/fake_openai.py). What every upstream shares (parity, retries,
batch order across the SDK, LiteLLM and this client) is in tests/test_adapters.py; here is what is
particular to this client: its wire request, model discovery from /models, its own retry loop.

Only the network edge is faked; retries are observed from the server's side (requests received)
and from ``upstream.stats``, never by patching project code.
"""
from __future__ import annotations

import asyncio

import pytest
from conftest import closed_port
from fake_openai import CHAT, MODELS, FakeOpenAI, default_responder

from aligner.adapters.base import RetryPolicy
from aligner.adapters.openai_compatible import OpenAICompatibleUpstream
from aligner.contracts.errors import ConfigError, UpstreamError, UpstreamTimeout

FAST = RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.01, jitter=0.0, timeout=10.0)
Q = "How do I bake bread?"


def chat_answer(question: str) -> str:
    return default_responder({"messages": [{"role": "user", "content": question}]})


@pytest.fixture
def srv():
    with FakeOpenAI() as server:
        yield server


def upstream(srv: FakeOpenAI, **kw) -> OpenAICompatibleUpstream:
    kw.setdefault("retry", FAST)
    return OpenAICompatibleUpstream(srv.base_url, kw.pop("model", "fake-model"), **kw)


# -- parity and the wire request -------------------------------------------------------------------
def test_sync_async_stream_parity(srv):
    up = upstream(srv)
    expected = chat_answer(Q)
    pieces = list(up.stream(Q))
    assert up.answer(Q) == expected
    assert len(pieces) > 1 and "".join(pieces) == expected
    assert [b.get("stream", False) for b in srv.bodies(CHAT)] == [True, False]


async def test_async_and_astream_parity(srv):
    up = upstream(srv)
    pieces = [p async for p in up.astream(Q)]
    assert await up.aanswer(Q) == "".join(pieces) == chat_answer(Q)
    assert len(pieces) > 1


def test_request_carries_model_messages_params_and_key():
    with FakeOpenAI(api_key="sk-test") as srv:
        up = upstream(srv, api_key="sk-test", system_prompt="Be brief.", params={"temperature": 0.2})
        up.answer(Q, max_tokens=7)
        body = srv.last_body(CHAT)
        assert body["model"] == "fake-model"
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q}]
        assert body["temperature"] == 0.2 and body["max_tokens"] == 7
        assert srv.requests[-1].headers["authorization"] == "Bearer sk-test"


def test_wrong_key_is_a_clear_401_not_retried():
    with FakeOpenAI(api_key="sk-right") as srv:
        up = upstream(srv, api_key="sk-wrong")
        with pytest.raises(UpstreamError) as info:
            up.answer(Q)
        assert info.value.status == 401 and "API key" in str(info.value)
        assert srv.count(CHAT) == 1 and up.stats.retries == 0


def test_model_none_asks_models_once(srv):
    srv.models = ("served-llama", "other")
    up = OpenAICompatibleUpstream(srv.base_url + "/", retry=FAST)
    assert up.answer(Q) == chat_answer(Q)
    assert "".join(up.stream(Q)) == chat_answer(Q)
    assert up.model == "served-llama" and "served-llama" in up.name
    assert srv.count(MODELS) == 1
    assert {b["model"] for b in srv.bodies(CHAT)} == {"served-llama"}


async def test_model_none_async(srv):
    srv.models = ("async-model",)
    up = OpenAICompatibleUpstream(srv.base_url, retry=FAST)
    assert await up.aanswer(Q) == chat_answer(Q)
    assert srv.last_body(CHAT)["model"] == "async-model"


def test_model_none_and_no_models_listed_says_what_to_pass(srv):
    srv.models = ()
    up = OpenAICompatibleUpstream(srv.base_url, retry=FAST)
    with pytest.raises(UpstreamError) as info:
        up.answer(Q)
    assert info.value.field == "upstream_model" and "model=" in str(info.value)
    assert srv.count(CHAT) == 0


def test_retries_on_429_and_5xx_then_succeeds(srv):
    srv.fail_next(429, times=2, retry_after=0)
    srv.fail_next(503)
    up = upstream(srv)
    assert up.answer(Q) == chat_answer(Q)
    assert srv.count(CHAT) == 4
    assert up.stats.retries == 3 and up.stats.attempts == 4 and up.stats.failures == 0


def test_retries_stop_after_max_retries_with_status(srv):
    srv.fail_next(500, times=10)
    up = upstream(srv, retry=RetryPolicy(max_retries=2, initial_backoff=0.001, jitter=0.0, timeout=10))
    with pytest.raises(UpstreamError) as info:
        up.answer(Q)
    assert info.value.status == 500 and "after 3 attempts" in str(info.value)
    assert srv.count(CHAT) == 3 and up.stats.retries == 2 and up.stats.failures == 1


def test_400_is_not_retried_and_shows_server_message(srv):
    srv.fail_next(400, message="max_tokens is too large")
    up = upstream(srv)
    with pytest.raises(UpstreamError) as info:
        up.answer(Q)
    assert info.value.status == 400 and "max_tokens is too large" in str(info.value)
    assert srv.count(CHAT) == 1 and up.stats.retries == 0


def test_stream_retried_before_first_piece(srv):
    srv.fail_next(502)
    up = upstream(srv)
    assert "".join(up.stream(Q)) == chat_answer(Q)
    assert srv.count(CHAT) == 2 and up.stats.retries == 1


async def test_astream_retried_before_first_piece(srv):
    srv.fail_next(429, retry_after=0)
    up = upstream(srv)
    assert "".join([p async for p in up.astream(Q)]) == chat_answer(Q)
    assert srv.count(CHAT) == 2 and up.stats.retries == 1


def test_slow_server_past_timeout_is_upstream_timeout(srv):
    srv.fail_next("slow", times=5, seconds=5)
    up = upstream(srv, retry=RetryPolicy(max_retries=1, initial_backoff=0.001, jitter=0.0, timeout=0.3))
    with pytest.raises(UpstreamTimeout) as info:
        up.answer(Q)
    assert "timed out" in str(info.value) and srv.count(CHAT) == 2


async def test_slow_server_past_timeout_async(srv):
    srv.fail_next("hang")
    up = upstream(srv, retry=RetryPolicy(max_retries=0, timeout=0.3))
    with pytest.raises(UpstreamTimeout):
        await up.aanswer(Q)


def test_slow_but_within_timeout_is_fine(srv):
    srv.fail_next("slow", seconds=0.05)
    assert upstream(srv).answer(Q) == chat_answer(Q)


def test_unreachable_port_is_a_clear_error():
    up = OpenAICompatibleUpstream(f"http://127.0.0.1:{closed_port()}/v1", "m",
                                  retry=RetryPolicy(max_retries=1, initial_backoff=0.001, jitter=0.0, timeout=2))
    with pytest.raises(UpstreamError) as info:
        up.answer(Q)
    msg = str(info.value)
    assert "cannot reach" in msg and "Fix:" in msg and info.value.status == 502
    assert up.stats.attempts == 2


def test_bad_base_url_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleUpstream("localhost:8000/v1", "m")
    assert info.value.field == "upstream"


def test_answer_batch_keeps_input_order_under_concurrency(srv):
    srv.fail_next("slow", times=3, seconds=0.15)  # the first arrivals finish last
    up = upstream(srv, max_concurrency=6)
    questions = [f"question number {i}" for i in range(10)]
    assert up.answer_batch(questions) == [chat_answer(q) for q in questions]


async def test_aanswer_batch_keeps_input_order(srv):
    srv.fail_next("slow", times=3, seconds=0.15)
    up = upstream(srv, max_concurrency=6)
    questions = [f"question number {i}" for i in range(10)]
    assert await up.aanswer_batch(questions) == [chat_answer(q) for q in questions]


def test_messages_list_passes_through(srv):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "and now?"}]
    assert upstream(srv).answer(msgs) == chat_answer("and now?")
    assert srv.last_body(CHAT)["messages"] == msgs


# -- model discovery and the API key --------------------------------------------------------------
def test_compatible_picks_the_first_listed_model():
    with FakeOpenAI(models=("llama-3-8b", "other")) as srv:
        up = OpenAICompatibleUpstream(srv.base_url, retry=FAST)
        assert up.answer("q") == chat_answer("q")
        assert srv.last_body(CHAT)["model"] == "llama-3-8b" and up.model == "llama-3-8b"
        assert "llama-3-8b" in up.name and srv.count(MODELS) == 1
        up2 = OpenAICompatibleUpstream(srv.base_url, retry=FAST)
        assert asyncio.run(up2.aanswer("q")) == chat_answer("q") and up2.model == "llama-3-8b"


def test_compatible_model_discovery_failures_are_clear():
    with FakeOpenAI(models=()) as srv:
        with pytest.raises(UpstreamError, match="upstream_model: .*lists no models.*Fix: pass model="):
            OpenAICompatibleUpstream(srv.base_url, retry=FAST).answer("q")
        srv.fail_next(404, path=MODELS)
        with pytest.raises(UpstreamError, match="upstream_model: .*listing .*/models failed.*404"):
            OpenAICompatibleUpstream(srv.base_url, retry=FAST).answer("q")


def test_compatible_sends_the_api_key():
    with FakeOpenAI(api_key="secret") as srv:
        assert OpenAICompatibleUpstream(srv.base_url, "m", api_key="secret").answer("q") == chat_answer("q")
        with pytest.raises(UpstreamError, match="401.*API key"):
            OpenAICompatibleUpstream(srv.base_url, "m", api_key="wrong").answer("q")
