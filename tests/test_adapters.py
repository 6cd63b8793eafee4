"""What every upstream adapter shares, against a real HTTP server speaking the OpenAI protocol
(tests/fake_openai.py): the real ``openai`` SDK, real ``litellm`` and plain httpx all go over the
wire, and plain functions as upstreams, and resolving a spec. What is particular to one adapter is
in its own file: tests/test_adapters_openai_compatible.py, tests/test_adapters_hf_local.py.

Nothing of the project is mocked. Back-offs are tiny so retry tests stay fast; no test asserts on
timing.
"""
from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import sys
import time

import pytest

from aligner.adapters import (CallableUpstream, LiteLLMUpstream, OpenAICompatibleUpstream, OpenAIUpstream,
                              RetryPolicy, Upstream, resolve_upstream)
from aligner.contracts.errors import ConfigError, UpstreamError, UpstreamTimeout
from fake_openai import CHAT, FakeOpenAI, default_responder

KINDS = ["openai-sync", "openai-async", "litellm", "compatible"]


def fast(max_retries: int = 2, timeout: float = 10.0) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, initial_backoff=0.01, max_backoff=0.05, timeout=timeout)


def make(kind: str, base_url: str, retry: RetryPolicy | None = None, **kw) -> Upstream:
    retry = retry or fast()
    if kind.startswith("openai"):
        import openai

        cls = openai.AsyncOpenAI if kind == "openai-async" else openai.OpenAI
        return resolve_upstream(cls(base_url=base_url, api_key="sk-test"), model="fake-model", retry=retry, **kw)
    if kind == "litellm":
        return resolve_upstream("openai/fake-model", api_base=base_url, api_key="sk-test", retry=retry, **kw)
    return resolve_upstream(base_url, model="fake-model", retry=retry, **kw)


def expected(question: str) -> str:
    return default_responder({"messages": [{"role": "user", "content": question}]})


def arun(coro):
    return asyncio.run(coro)


async def acollect(agen) -> list[str]:
    return [p async for p in agen]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- parity and what goes over the wire ---------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_sync_async_stream_parity(kind, fake_openai):
    # max_retries=0: a client reused across asyncio.run loops must not fail on stale connections
    up = make(kind, fake_openai.base_url, fast(max_retries=0))
    q = "Why is the sky blue?"
    pieces = list(up.stream(q))
    assert len(pieces) > 1
    assert up.answer(q) == "".join(pieces) == expected(q)
    assert arun(up.aanswer(q)) == expected(q)
    assert "".join(arun(acollect(up.astream(q)))) == expected(q)
    assert arun(up.aanswer(q)) == expected(q)  # a second event loop
    assert fake_openai.count(CHAT) == 5 and up.stats.retries == 0
    body = fake_openai.last_body(CHAT)
    assert body["model"] == "fake-model" and body["messages"] == [{"role": "user", "content": q}]


@pytest.mark.parametrize("kind", KINDS)
def test_params_and_system_prompt_are_sent(kind, fake_openai):
    up = make(kind, fake_openai.base_url, system_prompt="Be brief.", params={"temperature": 0.2})
    up.answer("Hi?", max_tokens=7)
    body = fake_openai.last_body(CHAT)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.2 and body["max_tokens"] == 7
    assert not body.get("stream")
    list(up.stream("Hi?"))
    assert fake_openai.last_body(CHAT)["stream"] is True


# -- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_rate_limit_is_retried_then_succeeds(kind, fake_openai):
    up = make(kind, fake_openai.base_url)
    fake_openai.fail_next(429, times=2, retry_after=0.01)
    assert up.answer("q1") == expected("q1")
    assert fake_openai.count(CHAT) == 3 and up.stats.retries == 2
    fake_openai.fail_next(500)
    assert arun(up.aanswer("q2")) == expected("q2")
    fake_openai.fail_next(503)
    assert "".join(up.stream("q3")) == expected("q3")  # failure before the first piece: retried
    fake_openai.fail_next(503)
    assert "".join(arun(acollect(up.astream("q4")))) == expected("q4")
    assert fake_openai.count(CHAT) == 9 and up.stats.retries == 5


@pytest.mark.parametrize("kind", KINDS)
def test_retries_stop_with_a_clear_error(kind, fake_openai):
    up = make(kind, fake_openai.base_url, fast(max_retries=2))
    fake_openai.fail_next(503, times=10)
    with pytest.raises(UpstreamError, match=r"upstream: .*after 3 attempts.*503.*Fix:") as info:
        up.answer("q")
    assert info.value.status == 503
    assert fake_openai.count(CHAT) == 3 and up.stats.retries == 2 and up.stats.failures == 1
    with pytest.raises(UpstreamError, match="after 3 attempts"):
        arun(up.aanswer("q"))
    assert fake_openai.count(CHAT) == 6


@pytest.mark.parametrize("kind", KINDS)
def test_bad_request_is_not_retried(kind, fake_openai):
    up = make(kind, fake_openai.base_url)
    fake_openai.fail_next(400, message="model 'nope' does not exist")
    with pytest.raises(UpstreamError, match="does not exist.*Fix: .*model name") as info:
        up.answer("q")
    assert info.value.status == 400 and not info.value.retryable
    assert fake_openai.count(CHAT) == 1 and up.stats.retries == 0
    fake_openai.fail_next(401)
    with pytest.raises(UpstreamError, match="API key"):
        list(up.stream("q"))
    assert fake_openai.count(CHAT) == 2 and up.stats.retries == 0


@pytest.mark.parametrize("kind", KINDS)
def test_slow_server_times_out(kind, fake_openai):
    up = make(kind, fake_openai.base_url, fast(max_retries=1, timeout=0.3))
    fake_openai.fail_next("slow", seconds=30, times=2)
    with pytest.raises(UpstreamTimeout, match="upstream: .*after 2 attempts.*timed out"):
        up.answer("q")
    assert fake_openai.count(CHAT) == 2 and up.stats.retries == 1
    fake_openai.fail_next("hang")
    assert arun(up.aanswer("q")) == expected("q")  # the retry gets through
    fake_openai.fail_next("hang", times=2)
    with pytest.raises(UpstreamTimeout):
        arun(up.aanswer("q"))


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_server_is_one_clear_error(kind):
    up = make(kind, closed_port_url(), fast(max_retries=1))
    with pytest.raises(UpstreamError, match=r"upstream: .*after 2 attempts.*reach.*Fix: check") as info:
        up.answer("q")
    assert info.value.status == 502 and up.stats.retries == 1
    with pytest.raises(UpstreamError, match="reach"):
        arun(up.aanswer("q"))


# -- concurrency --------------------------------------------------------------------------------
def jittery(req: dict) -> str:
    """Answers arrive out of order: each takes a different, deterministic time."""
    text = default_responder(req)
    time.sleep(int(hashlib.md5(text.encode()).hexdigest()[:2], 16) / 255 * 0.05)
    return text


@pytest.mark.parametrize("kind", KINDS)
def test_batch_order_equals_input_order(kind):
    questions = [f"question number {i}" for i in range(16)]
    with FakeOpenAI(responder=jittery) as srv:
        up = make(kind, srv.base_url, max_concurrency=6)
        assert up.answer_batch(questions) == [expected(q) for q in questions]
        assert arun(up.aanswer_batch(questions)) == [expected(q) for q in questions]
        assert srv.count(CHAT) == 32


def test_openai_client_own_retries_are_off(fake_openai):
    import openai

    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=5)
    up = OpenAIUpstream(client, "fake-model", retry=fast(max_retries=0))
    fake_openai.fail_next(503, times=3)
    with pytest.raises(UpstreamError):
        up.answer("q")
    assert fake_openai.count(CHAT) == 1  # the SDK did not retry behind our back


# -- plain functions ----------------------------------------------------------------------------
def echo(q: str) -> str:
    return f"echo: {q}"


async def aecho(q: str) -> str:
    await asyncio.sleep(0)
    return f"echo: {q}"


def gen_echo(q: str):
    yield "echo: "
    yield q


async def agen_echo(q: str):
    yield "echo: "
    await asyncio.sleep(0)
    yield q


@pytest.mark.parametrize("fn", [echo, aecho, gen_echo, agen_echo])
def test_callable_all_call_styles(fn):
    up = resolve_upstream(fn)
    assert isinstance(up, CallableUpstream) and up.name == fn.__name__
    assert up.answer("hi") == "echo: hi" == arun(up.aanswer("hi"))
    assert "".join(up.stream("hi")) == "echo: hi" == "".join(arun(acollect(up.astream("hi"))))
    if fn in (gen_echo, agen_echo):
        assert list(up.stream("hi")) == ["echo: ", "hi"]
    assert up.answer_batch(["a", "b", "c"]) == ["echo: a", "echo: b", "echo: c"]


async def test_sync_call_of_async_function_inside_a_running_loop():
    up = CallableUpstream(aecho)
    assert up.answer("in loop") == "echo: in loop"  # Jupyter-style: a loop is already running
    assert await up.aanswer("x") == "echo: x"


def test_callable_failures_are_upstream_errors():
    def boom(q: str) -> str:
        raise ValueError("no answer today")

    up = CallableUpstream(boom, retry=fast())
    with pytest.raises(UpstreamError, match="ValueError: no answer today"):
        up.answer("q")
    assert up.stats.retries == 0
    with pytest.raises(UpstreamError, match="returned int, not text"):
        CallableUpstream(lambda q: 42).answer("q")


# -- resolve_upstream --------------------------------------------------------------------------------
def test_resolve_each_spec_form(fake_openai):
    import openai

    up = CallableUpstream(echo)
    assert resolve_upstream(up) is up
    assert isinstance(resolve_upstream(openai.OpenAI(base_url=fake_openai.base_url, api_key="k"), model="m"),
                      OpenAIUpstream)
    assert isinstance(resolve_upstream(openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="k"),
                                       model="m"), OpenAIUpstream)
    assert isinstance(resolve_upstream(echo), CallableUpstream)
    compat = resolve_upstream(fake_openai.base_url, model="m", max_concurrency=3)
    assert isinstance(compat, OpenAICompatibleUpstream) and compat.max_concurrency == 3
    lite = resolve_upstream("anthropic/claude-3-5-haiku-latest", retry=fast(max_retries=7))
    assert isinstance(lite, LiteLLMUpstream) and lite.retry.max_retries == 7
    assert lite.name == "anthropic/claude-3-5-haiku-latest"


@pytest.mark.parametrize("spec", [42, "", "   ", None, ["openai/gpt-4o"]])
def test_resolve_bad_spec_lists_the_accepted_forms(spec):
    with pytest.raises(ConfigError, match=r"upstream: cannot use .*Fix: pass a LiteLLM model string.*"
                                          r"OpenAI client.*base URL.*hf:.*function"):
        resolve_upstream(spec)


def test_resolve_openai_client_needs_a_model(fake_openai):
    import openai

    with pytest.raises(ConfigError, match="upstream_model: an OpenAI client needs the model"):
        resolve_upstream(openai.OpenAI(base_url=fake_openai.base_url, api_key="k"))


def test_import_aligner_stays_light():
    code = ("import sys, aligner, aligner.adapters; from aligner.adapters import resolve_upstream; "
            "resolve_upstream('openai/x'); resolve_upstream('http://h/v1', model='m'); "
            "print(sorted(m for m in ('openai', 'litellm', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_user_error_inside_an_attempt_is_not_wrapped_or_retried():
    def picky(q: str) -> str:
        raise ConfigError("must be short.", field="question", fix="ask a shorter question.")

    up = CallableUpstream(picky, retry=fast())
    with pytest.raises(ConfigError, match="question: must be short") as info:
        up.answer("q")
    assert not isinstance(info.value, UpstreamError) and up.stats.retries == 0
