"""One result path (issue 11 item 3): a streamed correction is an object you iterate for its pieces
and then read ``.correction`` from (sync and async twins agree with ``correct()``); every way of
correcting times the upstream the same way; the proxy and ``aligner.wrap`` serve one ``aligner``
object built by ``Correction.meta``. Tiny real models, real servers, no mocks."""
from __future__ import annotations

import asyncio

import pytest

from aligner import Aligner, Correction
from aligner.correction import AsyncCorrectionStream, CorrectionStream
from aligner.errors import AlignerError

GREEDY = {"max_new_tokens": 12, "fallback": False}
QUESTIONS = ["How are you?", "What is 2+2?", "Where is Paris?"]


def echo(question: str) -> str:
    return f"My answer to '{question}' is short."


@pytest.fixture(scope="module")
def aligner(tiny_causal_path):
    return Aligner(echo, corrector=str(tiny_causal_path), decoding=GREEDY, batch_size=2)


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
                        "timings": {"upstream": 0.123457, "corrector": 0.5}}
    served = c.meta(upstream="label", bypassed=False)
    assert list(served)[:4] == ["original", "corrector", "template", "upstream"]  # replaced in place
    assert served["upstream"] == "label" and served["bypassed"] is False
