"""aligner.wrap: the real openai client, talking to a real local OpenAI-protocol server, comes back
with corrected answers (sync, async, streamed)."""
import asyncio

import openai
import pytest

import aligner
from aligner import Aligner
from aligner.errors import ConfigError

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
