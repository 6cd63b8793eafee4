"""Local correctors: a tiny Llama and a tiny T5 saved with save_pretrained and loaded back by path,
the same from_pretrained path a hub id takes."""
import asyncio

import pytest

from aligner.correctors import StreamParser, load_corrector
from aligner.correctors.local import LocalCorrector
from aligner.contracts.errors import ConfigError

PAIRS = [("How are you?", "I am fine, thanks."), ("What is 2+2?", "It is 5."),
         ("Tell me a joke", "Why did the chicken cross the road? To get to the other side.")]
# fallback off: these tests compare the raw streamed and batch text of tiny untrained models, which
# loop or echo the template in a plain clone (their tokenizer is then trained on two sentences);
# a stream cannot take back what it showed, so the guard (tests/test_guard.py) would make them differ.
GREEDY = {"max_new_tokens": 16, "fallback": False}


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def corrector(request, tiny_causal_path, tiny_seq2seq_path):
    path = tiny_causal_path if request.param == "causal" else tiny_seq2seq_path
    return load_corrector(str(path), decoding=GREEDY)


def test_loads_by_path_with_the_saved_template(tiny_causal_path):
    c = load_corrector(str(tiny_causal_path))
    assert isinstance(c, LocalCorrector) and c.template.name == "aligner-v1.0"
    assert load_corrector(str(tiny_causal_path), template="qac").template.name == "qac"


def test_sync_async_stream_parity(corrector):
    q, a = PAIRS[2]
    sync = corrector.correct(q, a)
    assert sync  # an untrained-but-spread model writes varied text: the comparison means something
    assert asyncio.run(corrector.acorrect(q, a)) == sync
    assert "".join(corrector.stream(q, a)) == sync

    async def collect():
        return "".join([p async for p in corrector.astream(q, a)])

    assert asyncio.run(collect()) == sync


def test_batch_keeps_input_order_and_equals_one_by_one(corrector):
    batch = corrector.correct_batch(PAIRS)
    assert batch == [corrector.correct(q, a) for q, a in PAIRS]
    assert corrector.correct_batch(list(reversed(PAIRS))) == list(reversed(batch))


def test_prompt_lookup_gives_the_same_greedy_text(tiny_causal_path):
    plain = load_corrector(str(tiny_causal_path), decoding=GREEDY)
    lookup = load_corrector(str(tiny_causal_path), decoding={**GREEDY, "prompt_lookup": 4})
    assert lookup.correct_batch(PAIRS) == plain.correct_batch(PAIRS)


def test_overlong_answer_is_truncated_with_a_warning(tiny_causal_path, caplog):
    c = load_corrector(str(tiny_causal_path), decoding={"max_new_tokens": 4})
    long_answer = "word " * 2000
    with caplog.at_level("WARNING", logger="aligner"):
        out = c.correct("q?", long_answer)
    assert c.truncations == 1
    assert [r.getMessage()[:16] for r in caplog.records if r.name == "aligner"] == ["answer truncated"]
    # the cut is deterministic (the answer's head that fits), so the same call corrects the same text
    assert c.correct("q?", long_answer) == out and c.truncations == 2
    with pytest.raises(ConfigError, match="question.*shorten the question"):
        c.correct("why " * 2000, "a")


def test_bad_corrector_specs_name_the_argument():
    with pytest.raises(ConfigError, match=r"corrector: cannot load corrector '/does/not/exist'.*Fix:"):
        load_corrector("/does/not/exist")
    with pytest.raises(ConfigError, match="corrector"):
        load_corrector(42)  # type: ignore[arg-type]


def test_bad_question_and_answer(tiny_causal_path):
    c = load_corrector(str(tiny_causal_path), decoding=GREEDY)
    with pytest.raises(ConfigError, match="question: is empty"):
        c.correct("  ", "a")
    with pytest.raises(ConfigError, match="question: expected a string, got int"):
        c.correct(3, "a")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="answer: expected a string"):
        c.correct("q", None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="decoding.*unknown decoding option 'temprature'"):
        c.correct("q", "a", decoding={"temprature": 0.3})


def test_stream_parser_holds_back_partial_stop_markers():
    p = StreamParser(("</s>",))
    out = [p.feed(x) for x in [" Hello", " world", "</", "s> trailing"]]
    assert "".join(out) + p.finish() == "Hello world"
    assert p.stopped
    p = StreamParser(())
    pieces = [p.feed(x) for x in ["  a", " b  ", "", " c "]] + [p.finish()]
    assert "".join(pieces) == "a b   c"
