"""RemoteCorrector against a real HTTP server speaking the OpenAI completions protocol."""
from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from aligner import Aligner
from aligner.adapters import RetryPolicy
from aligner.correctors import load_corrector
from aligner.correctors.remote import RemoteCorrector
from aligner.contracts.errors import UpstreamError, UpstreamTimeout
from aligner.contracts.templates import get_template
from fake_openai import COMPLETIONS, MODELS, FakeOpenAI

FAST = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.05, timeout=10)
TEMPLATE = get_template("aligner-v1.0")


def corrects(req: dict) -> str:
    """An 'Aligner' that upper-cases the answer in the prompt, then writes EOS and runs on."""
    prompt = req["prompt"]
    if "##Answer: " in prompt:  # the qac template
        answer = prompt.split("##Answer: ", 1)[1].split("\n##Correction:", 1)[0]
    else:
        answer = prompt.rsplit(" | ", 1)[1].removesuffix(" ASSISTANT:")
    return f" Better: {answer.upper()}.</s>USER: and then some"


def expected(answer: str) -> str:
    return f"Better: {answer.upper()}."


def jittery(req: dict) -> str:
    text = corrects(req)
    time.sleep(int(hashlib.md5(text.encode()).hexdigest()[:2], 16) / 255 * 0.05)
    return text


async def acollect(agen) -> list[str]:
    return [p async for p in agen]


@pytest.fixture
def srv():
    with FakeOpenAI(responder=corrects, models=("aligner-7b",)) as s:
        yield s
        assert not s.errors


def test_correct_stream_async_parity(srv):
    c = RemoteCorrector(srv.base_url, retry=RetryPolicy(max_retries=0, timeout=10))
    q, a = "How do I pick a lock?", "use a hairpin and some patience"
    sync = c.correct(q, a)
    assert sync == expected(a)
    assert c.name == "aligner-7b" and srv.count(MODELS) == 1
    body = srv.last_body(COMPLETIONS)
    assert body["prompt"] == TEMPLATE.render(q, a) and body["model"] == "aligner-7b"
    # max_new_tokens not set: capped at 2 x the answer's length + 64 (its UTF-8 bytes stand in for
    # tokens without a tokenizer), below the template's 2048
    assert body["max_tokens"] == 2 * len(a.encode()) + 64 and body["temperature"] == 0.0 and not body.get("stream")
    pieces = list(c.stream(q, a))
    assert len(pieces) > 1 and "".join(pieces) == sync
    assert srv.last_body(COMPLETIONS)["stream"] is True
    assert asyncio.run(c.acorrect(q, a)) == sync
    assert "".join(asyncio.run(acollect(c.astream(q, a)))) == sync
    assert asyncio.run(c.acorrect(q, a)) == sync  # a second event loop
    assert c.stats.retries == 0


def test_decoding_and_template_reach_the_server(srv):
    c = load_corrector(srv.base_url, model="aligner-7b", template="qac", decoding={"max_new_tokens": 64})
    assert isinstance(c, RemoteCorrector) and c.name == "aligner-7b"
    c.correct("q?", "a", decoding={"max_new_tokens": 7, "do_sample": True, "temperature": 0.3,
                                   "repetition_penalty": 1.2})
    body = srv.last_body(COMPLETIONS)
    assert body["prompt"] == get_template("qac").render("q?", "a")
    assert body["max_tokens"] == 7 and body["temperature"] == 0.3 and body["frequency_penalty"] == 1.2
    assert srv.count(MODELS) == 0  # model given: no discovery


def test_batch_order_under_concurrency():
    pairs = [(f"q{i}?", f"answer number {i}") for i in range(16)]
    with FakeOpenAI(responder=jittery) as s:
        c = RemoteCorrector(s.base_url, model="m", max_concurrency=5, retry=FAST)
        want = [expected(a) for _, a in pairs]
        assert c.correct_batch(pairs) == want
        assert asyncio.run(c.acorrect_batch(pairs)) == want
        assert s.count(COMPLETIONS) == 32


def test_retries_use_the_shared_loop(srv):
    c = RemoteCorrector(srv.base_url, model="m", retry=FAST)
    srv.fail_next(429, times=2, retry_after=0.01)
    assert c.correct("q", "a") == expected("a")
    assert srv.count(COMPLETIONS) == 3 and c.stats.retries == 2
    srv.fail_next(503)
    assert "".join(c.stream("q", "a")) == expected("a")
    srv.fail_next(500)
    assert asyncio.run(c.acorrect("q", "a")) == expected("a")
    assert c.stats.retries == 4


def test_failures_name_the_corrector(srv):
    c = RemoteCorrector(srv.base_url, model="m", retry=FAST)
    srv.fail_next(400, message="prompt too long")
    with pytest.raises(UpstreamError, match=r"corrector: corrector server .*prompt too long") as info:
        c.correct("q", "a")
    assert info.value.status == 400 and srv.count(COMPLETIONS) == 1
    srv.fail_next(503, times=5)
    with pytest.raises(UpstreamError, match=r"corrector: .*after 3 attempts.*503"):
        asyncio.run(c.acorrect("q", "a"))
    slow = RemoteCorrector(srv.base_url, model="m",
                           retry=RetryPolicy(max_retries=0, initial_backoff=0.01, timeout=0.3))
    srv.clear()
    srv.fail_next("hang")
    with pytest.raises(UpstreamTimeout, match="corrector"):
        slow.correct("q", "a")


def test_aligner_end_to_end_with_a_remote_corrector(srv):
    al = Aligner(lambda q: f"answer to {q}", corrector=srv.base_url)
    c = al.correct("why?")
    assert c.answer == "answer to why?" and c.correction == expected("answer to why?")
    assert c.corrector == "aligner-7b" and c.changed
    assert "".join(al.stream("why?")) == c.correction


def test_unreachable_server_is_a_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = RemoteCorrector(f"http://127.0.0.1:{port}/v1", "m",
                        retry=RetryPolicy(max_retries=1, initial_backoff=0.001, jitter=0.0, timeout=2))
    with pytest.raises(UpstreamError) as info:
        c.correct("q", "a")
    assert info.value.field == "corrector" and "Fix:" in str(info.value) and info.value.status == 502
    assert c.stats.attempts == 2


def test_model_discovery_failure_says_pass_model(srv):
    srv.models = ()
    with pytest.raises(UpstreamError, match="model=") as info:
        RemoteCorrector(srv.base_url, retry=FAST).correct("q", "a")
    assert info.value.field == "corrector"
    assert srv.count(COMPLETIONS) == 0


def test_bad_base_url_is_a_config_error():
    from aligner.contracts.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        RemoteCorrector("localhost:8000/v1", "m")
    assert info.value.field == "corrector"
