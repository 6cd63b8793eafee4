"""aligner.wrap: the real openai client, talking to a real local OpenAI-protocol server, comes back
with corrected answers (sync, async, streamed)."""
import asyncio

import openai
import pytest

import aligner
from aligner import Aligner
from aligner.contracts.errors import ConfigError

#: fallback off: the tiny random model writes lone bytes (U+FFFD), a correction the guard rejects
#: once a stream has shown part of it; these tests check what wrap does, not the guard.
GREEDY = {"max_new_tokens": 12, "fallback": False}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I reset a router?"}]


@pytest.fixture
def reference(tiny_causal_path):
    return Aligner(None, corrector=str(tiny_causal_path), decoding=GREEDY)


def _clients(srv):
    return (openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0),
            openai.AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0))


def test_sync_answers_come_back_corrected(fake_openai, tiny_causal_path, reference):
    sync, _ = _clients(fake_openai)
    client = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY)
    r = client.chat.completions.create(model="m", messages=MESSAGES)
    original = r.choices[0].message.original_content
    assert original.startswith("Answer to 'How do I reset a router?'")
    assert r.choices[0].message.content == reference.correct("How do I reset a router?", original).correction
    assert r.aligner["original"] == original and r.aligner["corrector"] == str(tiny_causal_path)
    assert fake_openai.last_body("/v1/chat/completions")["messages"] == MESSAGES  # sent through untouched
    assert client.models.list().data  # everything else passes through to the real client


def test_stream_reassembles_to_the_non_streamed_text(fake_openai, tiny_causal_path):
    sync, _ = _clients(fake_openai)
    client = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY)
    whole = client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].aligner["corrector"]


def test_async_client_and_async_stream(fake_openai, tiny_causal_path):
    sync, aclient = _clients(fake_openai)
    whole = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY).chat.completions.create(
        model="m", messages=MESSAGES).choices[0].message.content
    client = aligner.wrap(aclient, corrector=str(tiny_causal_path), decoding=GREEDY)

    async def run():
        r = await client.chat.completions.create(model="m", messages=MESSAGES)
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream]
        return r.choices[0].message.content, "".join(pieces)

    content, streamed = asyncio.run(run())
    assert content == whole and streamed == whole


def test_bad_arguments(fake_openai, tiny_causal_path):
    sync, _ = _clients(fake_openai)
    with pytest.raises(ConfigError, match="client: expected an openai.OpenAI"):
        aligner.wrap(object(), corrector=str(tiny_causal_path))
    client = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY)
    with pytest.raises(ConfigError, match="messages: has no user message"):
        client.chat.completions.create(model="m", messages=[{"role": "system", "content": "x"}])


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}


@pytest.mark.parametrize("scripted, skipped", [({"content": None, "refusal": "I can't help with that."}, "empty"),
                                               ({"content": None, "tool_calls": [CALL]}, "tool_calls")])
def test_an_answer_without_content_comes_back_as_the_upstream_gave_it(fake_openai, tiny_causal_path, scripted,
                                                                        skipped):
    """Issue 21: ``content: null`` was corrected as "" into text made up from the question."""
    fake_openai.responder = lambda req: scripted
    sync, aclient = _clients(fake_openai)
    client = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY)
    r = client.chat.completions.create(model="m", messages=MESSAGES)
    message = r.choices[0].message
    assert message.content is None and message.original_content is None
    assert message.refusal == scripted.get("refusal") and r.aligner["skipped"] == skipped
    assert [c.model_dump() for c in message.tool_calls or []] == scripted.get("tool_calls", [])

    def check(chunks: list) -> None:
        deltas = [ch.delta for c in chunks for ch in c.choices]
        assert "".join(d.content or "" for d in deltas) == ""
        assert "".join(d.refusal or "" for d in deltas) == (scripted.get("refusal") or "")
        calls = [(t.function.name, t.function.arguments) for d in deltas for t in d.tool_calls or []]
        assert calls == [(c["function"]["name"], c["function"]["arguments"]) for c in scripted.get("tool_calls", [])]
        assert chunks[-1].choices[0].finish_reason == ("tool_calls" if skipped == "tool_calls" else "stop")
        assert chunks[-1].aligner["skipped"] == skipped and chunks[-1].aligner["changed"] is False

    check(list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True)))
    aclient_wrapped = aligner.wrap(aclient, corrector=str(tiny_causal_path), decoding=GREEDY)

    async def run() -> list:
        stream = await aclient_wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        return [c async for c in stream]

    check(asyncio.run(run()))


def test_the_upstream_the_client_asked_is_named_and_timed(fake_openai, tiny_causal_path):
    """Issue 21 item 10: ``aligner`` said ``upstream: ''`` and ``timings.upstream 0.0`` although the
    wrapped client had called the upstream; now it names the model asked and times the call, plain,
    streamed, sync and async, as the proxy does."""
    sync, aclient = _clients(fake_openai)
    client = aligner.wrap(sync, corrector=str(tiny_causal_path), decoding=GREEDY)
    plain = client.chat.completions.create(model="m", messages=MESSAGES).aligner
    streamed = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))[-1].aligner
    aclient_wrapped = aligner.wrap(aclient, corrector=str(tiny_causal_path), decoding=GREEDY)

    async def run():
        r = await aclient_wrapped.chat.completions.create(model="m", messages=MESSAGES)
        stream = await aclient_wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        return r.aligner, [c async for c in stream][-1].aligner

    aplain, astreamed = asyncio.run(run())
    for meta in (plain, streamed, aplain, astreamed):
        assert meta["upstream"] == "m"
        assert meta["timings"]["upstream"] > 0  # an HTTP round trip was timed (it was 0.0: not counted)
        assert meta["timings"]["total"] >= meta["timings"]["upstream"]  # the total counts the upstream's time


class CorporateClient(openai.AsyncOpenAI):
    """An async client whose class name does not start with "Async" (a company's own subclass)."""


class AsyncLookingClient(openai.OpenAI):
    """A sync client whose class name does."""


class ThinGateway:
    """A client of another library: only ``chat.completions.create``, an ``async def``."""

    def __init__(self, inner):
        self._inner = inner
        self.chat = self
        self.completions = self

    async def create(self, **kwargs):
        return await self._inner.chat.completions.create(**kwargs)


def test_sync_or_async_is_decided_by_what_the_client_is_not_its_name(fake_openai, tiny_causal_path, reference):
    """wrap once chose by ``type(client).__name__.startswith("Async")``: CorporateClient was called
    synchronously (a coroutine came back in place of a response) and AsyncLookingClient's answers
    were awaited (a TypeError)."""
    kw = {"base_url": fake_openai.base_url, "api_key": "sk-test", "max_retries": 0}
    question = "How do I reset a router?"
    sync = aligner.wrap(AsyncLookingClient(**kw), corrector=str(tiny_causal_path), decoding=GREEDY)
    assert sync.is_async is False
    r = sync.chat.completions.create(model="m", messages=MESSAGES)
    original = r.choices[0].message.original_content
    expected = reference.correct(question, original).correction
    assert original.startswith(f"Answer to '{question}'") and r.choices[0].message.content == expected

    async def ask(client):
        pending = client.chat.completions.create(model="m", messages=MESSAGES)
        assert asyncio.iscoroutine(pending)
        r = await pending
        return r.choices[0].message.original_content, r.choices[0].message.content

    for client in (CorporateClient(**kw), ThinGateway(openai.AsyncOpenAI(**kw))):
        wrapped = aligner.wrap(client, corrector=str(tiny_causal_path), decoding=GREEDY)
        assert wrapped.is_async is True
        assert asyncio.run(ask(wrapped)) == (original, expected)
    with pytest.raises(ConfigError, match="client: expected an openai.OpenAI"):
        aligner.wrap(type("ChatOnly", (), {"chat": object()})(), corrector=str(tiny_causal_path))
