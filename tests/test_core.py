"""Aligner end to end on a tiny real corrector, with plain-function upstreams (no network)."""
import asyncio

import pytest

from aligner import Aligner, Correction
from aligner.contracts.errors import ConfigError, TemplateError, UpstreamError

GREEDY = {"max_new_tokens": 12}
QUESTIONS = ["How are you?", "What is 2+2?", "Name a colour.", "Where is Paris?", "Why is the sky blue?"]


def echo(question: str) -> str:
    return f"My answer to '{question}' is short."


@pytest.fixture(scope="module")
def aligner(tiny_causal_path):
    return Aligner(echo, corrector=str(tiny_causal_path), decoding=GREEDY, batch_size=2)


def test_correct_asks_the_upstream_then_corrects(aligner):
    c = aligner.correct("How are you?")
    assert isinstance(c, Correction)
    assert c.answer == echo("How are you?")
    assert c.correction == aligner.corrector.correct("How are you?", c.answer)
    assert c.changed == (c.answer.strip() != c.correction.strip())
    assert set(c.timings) == {"upstream", "corrector", "total"} and c.timings["corrector"] > 0
    assert c.template == "aligner-v1.0" and c.corrector.endswith(aligner.corrector.name)


def test_given_answer_skips_the_upstream(tiny_causal_path):
    al = Aligner(None, corrector=str(tiny_causal_path), decoding=GREEDY)
    c = al.correct("q?", answer="the given answer")
    assert c.answer == "the given answer" and c.timings["upstream"] < 0.01
    with pytest.raises(ConfigError, match="answer: no upstream model.*Fix: pass answer="):
        al.correct("q?")


def test_sync_async_stream_parity(aligner):
    """Every path gives the same Correction. The tiny model's text depends on the corpus its
    tokenizer learnt (HH-RLHF rows where ../shared has them, a fixed sample on a bare clone); where
    it writes a degenerate correction, every path falls back alike and a stream has shown only
    what it wrote before the fault (it cannot take that back)."""
    for q in QUESTIONS:
        sync = aligner.correct(q)
        assert asyncio.run(aligner.acorrect(q)).correction == sync.correction
        s = aligner.stream(q)
        shown = "".join(s)
        assert (s.correction.correction, s.correction.fallback_reason) == (sync.correction, sync.fallback_reason)

        async def collect():
            a = aligner.astream(q)
            return a, "".join([p async for p in a])

        a, ashown = asyncio.run(collect())
        assert (a.correction.correction, a.correction.fallback_reason) == (sync.correction, sync.fallback_reason)
        assert ashown == shown
        if sync.fallback:  # found before anything was sent: the answer streamed; after: the text so far
            assert sync.correction == sync.answer
            assert shown == sync.answer or (shown and (s.result.raw or "").lstrip().startswith(shown.lstrip())), (shown, s.result)
        else:
            assert shown == sync.correction


def test_batch_order_and_mixed_answers(aligner):
    answers = [None, "given answer", None, None, "another given one"]
    batch = aligner.correct_batch(QUESTIONS, answers, progress=False)
    assert [c.question for c in batch] == QUESTIONS
    assert [c.answer for c in batch] == [a or echo(q) for q, a in zip(QUESTIONS, answers)]
    assert [c.correction for c in batch] == [aligner.correct(q, a).correction for q, a in
                                             zip(QUESTIONS, [c.answer for c in batch])]
    abatch = asyncio.run(aligner.acorrect_batch(QUESTIONS, answers))
    assert [c.correction for c in abatch] == [c.correction for c in batch]


def test_async_upstream_function(tiny_causal_path):
    async def answer(q: str) -> str:
        await asyncio.sleep(0)
        return echo(q)

    al = Aligner(answer, corrector=str(tiny_causal_path), decoding=GREEDY)
    assert asyncio.run(al.acorrect("Hi?")).answer == echo("Hi?")
    assert al.correct("Hi?").answer == echo("Hi?")


def test_bad_inputs_name_the_argument(aligner, tiny_causal_path):
    with pytest.raises(ConfigError, match="question: is empty"):
        aligner.correct("")
    with pytest.raises(ConfigError, match="question: expected a string, got NoneType"):
        aligner.correct(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="questions: must be a list"):
        aligner.correct_batch("one question")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"questions\[1\]: is empty"):
        aligner.correct_batch(["ok", " "])
    with pytest.raises(ConfigError, match="answers: has 1 items but questions has 2"):
        aligner.correct_batch(["a", "b"], ["x"])
    with pytest.raises(TemplateError, match="template: unknown template 'v9'"):
        Aligner(None, corrector=str(tiny_causal_path), template="v9")
    with pytest.raises(TemplateError, match=r"template.*no \{answer\} placeholder"):
        Aligner(None, corrector=str(tiny_causal_path), template="USER: {question} ASSISTANT:")
    with pytest.raises(ConfigError, match="batch_size"):
        Aligner(None, corrector=str(tiny_causal_path), batch_size=0)


def test_unreachable_upstream_is_one_clear_error(tiny_causal_path):
    from aligner.adapters import RetryPolicy

    al = Aligner("http://127.0.0.1:9/v1", corrector=str(tiny_causal_path), upstream_model="m",
                 retry=RetryPolicy(max_retries=1, initial_backoff=0.01, timeout=2))
    with pytest.raises(UpstreamError, match=r"upstream: .*(reach|connect).*Fix:"):
        al.correct("q?")


def test_diff_marks_words():
    c = Correction("q", "Call me at 555-1234 today.", "Call me at [PHONE] today.")
    ops = c.diff()
    assert ("-", "555-1234") in ops and ("+", "[PHONE]") in ops
    assert "".join(t for op, t in ops if op != "+") == c.answer
    assert "".join(t for op, t in ops if op != "-") == c.correction
    assert not Correction("q", "same ", " same").changed


def test_an_empty_answer_is_passed_back_not_corrected(tiny_causal_path):
    """Issue 21: given no answer text, the corrector wrote one from the question alone (seen:
    ``ault\\ufffd…``, ``changed: true``). Every call now returns the answer as it came."""
    al = Aligner(lambda q: "" if "silent" in q else echo(q), corrector=str(tiny_causal_path), decoding=GREEDY,
                 batch_size=2)
    for answer in ("", "   \n"):
        c = al.correct("Tell me a secret.", answer)
        assert (c.correction, c.skipped, c.changed, c.fallback) == (answer, "empty", False, False)
        assert c.timings["corrector"] == 0.0 and "usage" not in c.metadata and c.meta()["skipped"] == "empty"
    asked = al.correct("Stay silent?")  # the upstream's own empty answer
    assert (asked.answer, asked.correction, asked.skipped) == ("", "", "empty")
    assert asyncio.run(al.acorrect("Stay silent?")).skipped == "empty"
    stream = al.stream("Stay silent?")
    assert list(stream) == [] and (stream.correction.correction, stream.correction.skipped) == ("", "empty")

    async def astream() -> tuple[list[str], Correction]:
        s = al.astream("Stay silent?")
        return [p async for p in s], s.correction

    pieces, c = asyncio.run(astream())
    assert pieces == [] and c.skipped == "empty"
    questions, answers = ["Stay silent?", "How are you?", "Name a colour.", "q?"], [None, None, "Red.", " "]
    for batch in (al.correct_batch(questions, answers, progress=False),
                  asyncio.run(al.acorrect_batch(questions, answers))):
        assert [c.skipped for c in batch] == ["empty", None, None, "empty"]
        assert [c.correction for c in batch] == ["", al.correct("How are you?").correction,
                                                 al.correct("Name a colour.", "Red.").correction, " "]
    assert al.correct("How are you?").skipped is None
