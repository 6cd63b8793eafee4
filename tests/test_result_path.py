"""One result path (issue 11 item 3): a streamed correction is an object you iterate for its pieces
and then read ``.correction`` from (sync and async twins agree with ``correct()``); every way of
correcting times the upstream the same way; the proxy and ``aligner.wrap`` serve one ``aligner``
object built by ``Correction.meta``. Tiny real models, real servers, no mocks."""
from __future__ import annotations

import asyncio

import pytest

from aligner import Aligner, Correction
from aligner.contracts.correction import AsyncCorrectionStream, CorrectionStream
from aligner.contracts.errors import AlignerError

QUESTIONS = ["How are you?", "What is 2+2?", "Where is Paris?"]
#: the upstream: a plain function (a dict's lookup) answering each question
ANSWERS = {q: f"My answer to '{q}' is short." for q in QUESTIONS}
echo = ANSWERS.__getitem__


@pytest.fixture(scope="module")
def aligner(tiny_causal_path):
    greedy = {"max_new_tokens": 12, "fallback": False}
    return Aligner(echo, corrector=str(tiny_causal_path), decoding=greedy, batch_size=2)


# -- upstream timing: the same rule for correct, correct_batch, acorrect_batch (and acorrect) --------
def test_upstream_time_is_zero_when_the_answer_was_given_and_counted_when_asked(aligner):
    q = QUESTIONS[0]
    given, asked = aligner.correct(q, answer=echo(q)), aligner.correct(q)
    assert given.timings["upstream"] == 0.0 and asked.timings["upstream"] > 0
    agiven, aasked = asyncio.run(aligner.acorrect(q, answer=echo(q))), asyncio.run(aligner.acorrect(q))
    assert agiven.timings["upstream"] == 0.0 and aasked.timings["upstream"] > 0
    answers = [None, "a given answer", None]
    for batch in (aligner.correct_batch(QUESTIONS, answers, progress=False),
                  asyncio.run(aligner.acorrect_batch(QUESTIONS, answers))):
        assert [c.timings["upstream"] == 0.0 for c in batch] == [False, True, False]
        assert all(c.timings["upstream"] > 0 for c in (batch[0], batch[2]))
        for c in batch:
            assert c.timings["total"] == pytest.approx(c.timings["upstream"] + c.timings["corrector"])


# -- the stream object ---------------------------------------------------------------------------
def test_a_stream_yields_pieces_then_its_correction_like_correct(aligner):
    q = QUESTIONS[1]
    want = aligner.correct(q)
    stream = aligner.stream(q)
    assert isinstance(stream, CorrectionStream) and stream.correction is None  # nothing yet
    pieces = list(stream)
    c = stream.correction
    assert isinstance(c, Correction) and "".join(pieces) == stream.text == c.correction == want.correction
    assert (c.question, c.answer, c.corrector, c.template) == (q, want.answer, want.corrector, want.template)
    assert c.changed == want.changed and c.fallback is False and stream.result.text == c.correction
    assert c.timings["upstream"] > 0 and c.timings["corrector"] > 0
    assert set(c.timings) == set(want.timings) == {"upstream", "corrector", "total"}
    given = aligner.stream(q, answer=want.answer).collect()  # collect(): the rest, then the Correction
    assert given.correction == want.correction and given.timings["upstream"] == 0.0


def test_the_async_stream_is_the_twin_of_the_sync_one(aligner):
    q = QUESTIONS[2]
    sync = aligner.stream(q)
    sync_pieces = list(sync)

    async def run() -> tuple[list[str], AsyncCorrectionStream, Correction]:
        stream = aligner.astream(q)
        assert isinstance(stream, AsyncCorrectionStream) and stream.correction is None
        pieces = [p async for p in stream]
        collected = await aligner.astream(q, answer=echo(q)).collect()
        return pieces, stream, collected

    pieces, astream, collected = asyncio.run(run())
    assert pieces == sync_pieces and astream.text == sync.text
    a, s = astream.correction, sync.correction
    assert (a.question, a.answer, a.correction, a.changed, a.fallback) == \
        (s.question, s.answer, s.correction, s.changed, s.fallback)
    assert collected.correction == s.correction and collected.timings["upstream"] == 0.0


def test_a_stream_closed_early_has_no_correction(aligner):
    stream = aligner.stream(QUESTIONS[0], answer="A long enough answer to be streamed in pieces.")
    next(stream)
    stream.close()
    assert stream.correction is None
    with pytest.raises(AlignerError, match="stream: the stream was closed before its end"):
        stream.collect()


# -- one metadata dict -------------------------------------------------------------------------
def test_meta_is_the_one_aligner_object():
    c = Correction("q", "The answer. ", "The answer.", timings={"upstream": 0.1234567891, "corrector": 0.5},
                   corrector="c", template="t", upstream="u", metadata={"demo": True},
                   fallback=True, fallback_reason="repetition")
    assert c.meta() == {"original": "The answer. ", "corrector": "c", "template": "t", "upstream": "u",
                        "changed": False, "demo": True, "fallback": True, "fallback_reason": "repetition",
                        "skipped": None, "timings": {"upstream": 0.123457, "corrector": 0.5}}
    served = c.meta(upstream="label", bypassed=False)
    assert list(served)[:4] == ["original", "corrector", "template", "upstream"]  # replaced in place
    assert served["upstream"] == "label" and served["bypassed"] is False


# -- the server's batcher wraps the corrector's rows; the proxy corrects through the Aligner ---------
def test_the_batcher_is_a_corrector_the_aligner_calls_like_any_other(tiny_causal_path):
    from aligner.correctors import Corrector, load_corrector
    from aligner.serve.batching import DynamicBatcher

    inner = load_corrector(str(tiny_causal_path), decoding={"max_new_tokens": 12, "fallback": False})
    plain = Aligner(None, corrector=inner)
    want = [plain.correct(q, echo(q)) for q in QUESTIONS]
    joining = [len(QUESTIONS)]  # how many requests may still join a batch (the server's in-flight count)

    async def run():
        batcher = DynamicBatcher(inner, max_batch_size=8, max_wait=60, may_join=lambda: joining[0])
        served = plain.with_corrector(inner.through(batcher))
        got = await asyncio.gather(*(served.acorrect(q, echo(q)) for q in QUESTIONS))
        joining[0] = 1
        stream = served.astream(QUESTIONS[0], echo(QUESTIONS[0]))
        pieces = [p async for p in stream]
        while batcher.stats.batches < 2:  # stats land when the batch's generate() returns
            await asyncio.sleep(0.01)
        await batcher.stop()
        return batcher, served, got, stream, pieces

    batcher, served, got, stream, pieces = asyncio.run(run())
    assert isinstance(served.corrector, Corrector) and served.corrector.decoder is batcher
    assert served.upstream is plain.upstream
    assert [c.correction for c in got] == [c.correction for c in want]
    assert (batcher.stats.batches, batcher.stats.largest_batch, batcher.stats.streams) == (2, 3, 1)
    for q, c in zip(QUESTIONS, got):
        assert c.timings["batch_size"] == 3 and c.timings["queue"] >= 0 and c.timings["upstream"] == 0.0
        assert c.corrector == inner.name and c.template == inner.template.name
        prompt = inner.prepare(q, echo(q))[0]
        completion = len(inner.generator.tokenizer(c.correction, add_special_tokens=False)["input_ids"])
        assert c.metadata["usage"] == {"prompt_tokens": inner.generator.count_tokens(prompt),
                                       "completion_tokens": completion,
                                       "total_tokens": inner.generator.count_tokens(prompt) + completion}
    s = stream.correction
    assert "".join(pieces) == s.correction == want[0].correction and s.timings["batch_size"] == 1
    assert s.timings["upstream"] == 0.0 and stream.result.text == s.correction


def test_the_proxy_counts_the_correctors_tokens_on_the_prompt_it_was_given(tiny_causal_path):
    """An answer too long for the corrector is cut to fit; ``aligner.usage.prompt_tokens`` counts
    that prompt, not the one the whole answer would have made (which was re-rendered before)."""
    import httpx

    from aligner.correctors.local import LocalCorrector
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    corrector = LocalCorrector.from_pretrained(str(tiny_causal_path), decoding={"max_new_tokens": 8, "fallback": False})
    corrector.max_input_tokens = 160  # a short context, so the answer below is cut to fit
    q, long_answer = "What happened?", "Then the long story went on and on. " * 80
    fitted = corrector.prepare(q, long_answer)[0]
    whole = corrector.template.render(q, long_answer)
    assert corrector.generator.count_tokens(fitted) < corrector.generator.count_tokens(whole)
    with ServerThread(create_app(Aligner(None, corrector=corrector), ServeConfig())) as srv:
        body = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": long_answer}]}
        r = httpx.post(srv.base_url + "/chat/completions", json=body, timeout=120)
        streamed = httpx.post(srv.base_url + "/chat/completions", json={**body, "stream": True}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    meta = r.json()["aligner"]
    assert meta["usage"]["prompt_tokens"] == corrector.generator.count_tokens(fitted)
    # the one aligner object: the same keys as before this change, streamed or not (no usage on a stream);
    # ``id`` (the response id feedback is given for) since issue 25
    keys = {"original", "corrector", "template", "upstream", "changed", "bypassed", "demo", "fallback",
            "fallback_reason", "skipped", "timings", "id"}
    assert set(meta) == keys | {"usage"}
    assert set(meta["timings"]) == {"upstream", "queue", "corrector", "batch_size", "total"}
    events = [line[len("data: "):] for line in streamed.text.splitlines() if line.startswith("data: {")]
    import json

    final = json.loads(events[-1])["aligner"]
    assert set(final) == keys and set(final["timings"]) == {"upstream", "queue", "corrector", "batch_size", "total"}
    assert final["original"] == meta["original"] == long_answer and final["timings"]["upstream"] == 0.0


def test_validation_returns_a_typed_request(tiny_causal_path):
    from aligner.contracts.decoding import DecodingConfig
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.request import ChatRequest, validate

    app = create_app(Aligner(None, corrector=str(tiny_causal_path)), ServeConfig())
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    req = validate({"messages": messages, "stream": True, "max_tokens": 5,
                    "stream_options": {"include_usage": True}}, app.state.aligner)
    assert isinstance(req, ChatRequest) and isinstance(req.decoding, DecodingConfig)
    assert (req.question, req.model, req.stream, req.include_usage, req.json_mode, req.params) == \
        ("Hi?", "aligner", True, True, False, {})
    assert req.messages == messages and req.decoding.max_new_tokens == 5
    assert req.decoding.cap_to_answer == app.state.aligner.aligner.corrector.decoding.cap_to_answer
    with pytest.raises(AttributeError):
        req.question = "changed"  # type: ignore[misc]  # frozen: nothing edits a checked request


def test_the_wrapped_client_serves_the_same_aligner_object_streamed_or_not(fake_openai, tiny_causal_path):
    import openai

    import aligner as aligner_kit

    client = aligner_kit.wrap(openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0),
                              corrector=str(tiny_causal_path), decoding={"max_new_tokens": 12, "fallback": False})
    messages = [{"role": "user", "content": "How do I reset a router?"}]
    whole = client.chat.completions.create(model="m", messages=messages)
    last = list(client.chat.completions.create(model="m", messages=messages, stream=True))[-1]
    plain, streamed = whole.aligner, last.aligner
    keys = {"original", "corrector", "template", "upstream", "changed", "demo", "fallback", "fallback_reason",
            "skipped", "timings"}
    assert set(plain) == set(streamed) == keys
    assert set(plain["timings"]) == set(streamed["timings"]) == {"upstream", "corrector", "total"}
    # the client asked the upstream (not the Aligner): its model and time are counted all the same
    assert plain["upstream"] == streamed["upstream"] == "m"
    assert plain["timings"]["upstream"] > 0 and streamed["timings"]["upstream"] > 0
    assert {k: plain[k] for k in keys - {"timings"}} == {k: streamed[k] for k in keys - {"timings"}}
    assert plain["original"] == whole.choices[0].message.original_content and plain["changed"] == \
        (whole.choices[0].message.content.strip() != plain["original"].strip())


def test_one_rule_for_changed_across_corrections_and_data_rows():
    """A correction, a Q-A-C row's stats and an eval report all say "changed" by one rule: only
    whitespace at the ends differing is not an edit; anything inside is."""
    from aligner.contracts.correction import Correction, is_edit
    from aligner.data.base import QAC
    from aligner.data.commands import compute_stats

    pairs = [("Fine.", " Fine.\n"), ("Fine.", "Fine!"), ("a b", "a  b"), ("", "")]
    assert [is_edit(a, c) for a, c in pairs] == [False, True, True, False]
    assert [Correction("q", a, c).changed for a, c in pairs] == [False, True, True, False]
    rows = [QAC("q", a, c) for a, c in pairs]
    assert compute_stats(rows)["changed"] == 2
