"""Conversation-aware correction (aligner.contracts.conversation): a chat's messages rendered into the question
format a corrector records — byte for byte what the HH-RLHF reader trains it on — and cut from the
oldest turns to fit its budget; through the Aligner, the wrapped client and the server."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from aligner import Aligner, ConfigError
from aligner.contracts.conversation import QuestionFormat, question_for, render, starts, trained_format, turns_of
from aligner.data import load
from aligner.data.hh_rlhf import split_last_turn, turns
from aligner.contracts.templates import get_template
from fake_openai import COMPLETIONS, FakeOpenAI
from hh_data import SAMPLE

CONVERSATION = {"kind": "conversation", "rendering": "hh-rlhf", "system": False}
ROLE = {"Human": "user", "Assistant": "assistant"}
GREEDY = {"max_new_tokens": 8, "fallback": False}


def tiny(path: Path, *, context: int = 512, question_format: dict | None = None) -> Path:
    """A tiny causal corrector (tokenizer from the shipped HH rows), its question format recorded."""
    from aligner.correctors.checkpoint import save_corrector
    from aligner.train.tiny import build_model, train_tokenizer
    from fixed_tiny import fixed_corpus

    tok = train_tokenizer(fixed_corpus(), vocab_size=512)
    extra = {"question_format": question_format} if question_format else {}
    return save_corrector(build_model(tok, "causal", context=context, init_scale=10.0), tok, path,
                          template="aligner-v1.0", **extra)


@pytest.fixture(scope="module")
def conv_path(tmp_path_factory) -> Path:
    return tiny(tmp_path_factory.mktemp("conv"), context=320, question_format=CONVERSATION)


@pytest.fixture(scope="module")
def plain_path(tmp_path_factory) -> Path:
    return tiny(tmp_path_factory.mktemp("plain"), context=320)


MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "My neighbour Maria keeps parking in my spot."},
    {"role": "assistant", "content": "That sounds frustrating. Have you talked to her?"},
    {"role": "user", "content": [{"type": "text", "text": "Not yet. "}, {"type": "text", "text": "Should I?"}]},
    {"role": "assistant", "content": "Yes, a friendly word first is usually best."},
    {"role": "tool", "content": "ignored", "tool_call_id": "c1"},
    {"role": "user", "content": "  Yes, do that. How can I get in touch with Maria?  "},
]
TRANSCRIPT = ("Human: My neighbour Maria keeps parking in my spot.\n\nAssistant: That sounds frustrating. Have you "
              "talked to her?\n\nHuman: Not yet. Should I?\n\nAssistant: Yes, a friendly word first is usually best."
              "\n\nHuman: Yes, do that. How can I get in touch with Maria?")
ANSWER = "You can email Maria at maria.lopez@example.com."


# -- the rendering -----------------------------------------------------------------------------
def test_every_shipped_hh_rlhf_row_renders_byte_for_byte_as_the_reader_wrote_it():
    """The reader's question for each HH-RLHF row equals the rendering of that row's turns given as
    chat messages: what the corrector trained on is what it gets when correcting."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh]
    rows = load(SAMPLE, "hh-rlhf", lenient=True).rows
    assert len(rows) >= 20
    multi = 0
    for row in rows:
        prefix, _ = split_last_turn(raw[row.row - 1]["chosen"])
        messages = [{"role": ROLE[who], "content": text} for who, text in turns(prefix)]
        assert question_for(messages, QuestionFormat("conversation")) == row.question
        multi += len(messages) > 1
    assert multi >= 5  # multi-turn rows are among them, not only bare single messages


def test_a_chat_renders_as_the_transcript_the_last_message_or_with_its_system_prompt():
    assert question_for(MESSAGES, QuestionFormat("conversation")) == TRANSCRIPT
    assert question_for(MESSAGES, QuestionFormat()) == "  Yes, do that. How can I get in touch with Maria?  "
    with_system = question_for(MESSAGES, QuestionFormat("conversation", system=True))
    assert with_system == "System: You are a helpful assistant.\n\n" + TRANSCRIPT
    # one user turn is the bare message (stripped), as the reader writes a single-turn row
    assert question_for([{"role": "user", "content": " Hi there "}], QuestionFormat("conversation")) == "Hi there"
    # what follows the last user message (the answer itself, sent to an upstream-less server) is not the question
    assert question_for([*MESSAGES, {"role": "assistant", "content": ANSWER}], QuestionFormat("conversation")) \
        == TRANSCRIPT


def test_cuts_start_at_user_turns_and_never_drop_the_last_question():
    t = turns_of(MESSAGES)
    cuts = [render(t[i:], QuestionFormat("conversation")) for i in starts(t)]
    assert cuts[0] == TRANSCRIPT
    assert cuts[1] == TRANSCRIPT  # the system prompt goes first (it is not rendered here anyway)
    assert cuts[2].startswith("Human: Not yet. Should I?")
    assert cuts[-1] == "Yes, do that. How can I get in touch with Maria?"


def test_a_conversation_without_a_user_message_is_a_clear_error(plain_path):
    aligner = Aligner(None, str(plain_path), decoding=GREEDY)
    for bad in ([{"role": "assistant", "content": "Hello"}], [{"role": "user", "content": "   "}], []):
        with pytest.raises(ConfigError, match="messages") as err:
            aligner.correct(bad, ANSWER)
        assert "Fix:" in str(err.value)


def test_training_records_the_question_format():
    assert trained_format(None, "hh-rlhf", []) == CONVERSATION
    assert trained_format(None, "qac", ["Plain question?", "Human: a\n\nAssistant: b\n\nHuman: c"]) == CONVERSATION
    assert trained_format(None, "qac", ["Plain question?"]) == {"kind": "last_message"}
    assert trained_format("last_message", "hh-rlhf", []) == {"kind": "last_message"}
    assert QuestionFormat.from_record({"question_format": CONVERSATION}) == QuestionFormat("conversation")
    assert QuestionFormat.from_record({"template": "aligner-v1.0"}) == QuestionFormat()  # released checkpoints
    with pytest.raises(ConfigError, match="question_format"):
        QuestionFormat.from_record({"question_format": "paragraphs"})


# -- the Aligner ---------------------------------------------------------------------------------
def test_the_aligner_reads_the_record_and_context_overrides_it(conv_path, plain_path):
    long_enough = Aligner(None, str(tiny(plain_path.parent / "roomy", question_format=CONVERSATION)),
                          decoding=GREEDY)
    assert long_enough.correct(MESSAGES, ANSWER).question == TRANSCRIPT
    assert Aligner(None, str(plain_path), decoding=GREEDY).correct(MESSAGES, ANSWER).question == MESSAGES[-1]["content"]
    assert Aligner(None, str(conv_path), decoding=GREEDY, context="last").correct(MESSAGES, ANSWER).question \
        == MESSAGES[-1]["content"]
    with pytest.raises(ConfigError, match="context"):
        Aligner(None, str(plain_path), context="everything")


def test_the_prompt_a_remote_corrector_gets_is_the_template_around_the_transcript(fake_openai):
    aligner = Aligner(None, fake_openai.base_url, context="conversation")
    aligner.correct(MESSAGES, ANSWER)
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == get_template("aligner-v1.0").render(TRANSCRIPT, ANSWER)


def _fitting(corrector, messages, answer) -> list[tuple[str, bool]]:
    """Each cut of the conversation, longest first, and whether its prompt with ``answer`` fits."""
    fmt = QuestionFormat("conversation")
    t = turns_of(messages)
    out = []
    for i in starts(t):
        q = render(t[i:], fmt)
        tokens = corrector.generator.count_tokens(corrector.template.render(q, answer))
        out.append((q, tokens <= corrector.input_budget()))
    return out


def test_the_oldest_turns_are_dropped_first_to_fit_the_budget(conv_path):
    aligner = Aligner(None, str(conv_path), decoding=GREEDY)
    answer = "Knock on her door."
    cuts = _fitting(aligner.corrector, MESSAGES, answer)
    assert not cuts[0][1] and cuts[-1][1]  # the whole conversation does not fit, the last question does
    expected = next(q for q, fits in cuts if fits)
    assert expected != cuts[-1][0]  # some earlier turns still fit: the cut is in the middle
    c = aligner.correct(MESSAGES, answer)
    assert c.question == expected and c.question.endswith("Human: Yes, do that. How can I get in touch with Maria?")
    assert "neighbour" not in c.question  # the oldest exchange went first
    assert aligner.corrector.truncations == 0  # the answer was kept whole


def test_when_nothing_fits_the_last_question_alone_goes_and_the_answer_is_cut(conv_path):
    aligner = Aligner(None, str(conv_path), decoding=GREEDY)
    answer = "Knock on her door and say hello. " * 12
    assert not any(fits for _, fits in _fitting(aligner.corrector, MESSAGES, answer))
    before = aligner.corrector.truncations
    c = aligner.correct(MESSAGES, answer)
    assert c.question == "Yes, do that. How can I get in touch with Maria?"
    assert aligner.corrector.truncations == before + 1


def test_a_last_question_too_long_by_itself_is_the_same_error_as_a_long_question(conv_path):
    aligner = Aligner(None, str(conv_path), decoding=GREEDY)
    long_question = "Please tell me everything about the history of bread making in Europe. " * 20
    with pytest.raises(ConfigError, match="question alone") as as_text:
        aligner.correct(long_question.strip(), ANSWER)  # a lone turn is rendered stripped, as the reader writes it
    with pytest.raises(ConfigError, match="question alone") as as_chat:
        aligner.correct([*MESSAGES[:-1], {"role": "user", "content": long_question}], ANSWER)
    assert str(as_chat.value) == str(as_text.value)


def test_streams_and_batches_render_the_same(conv_path):
    aligner = Aligner(None, str(conv_path), decoding=GREEDY)
    answer = "Knock on her door."
    one = aligner.correct(MESSAGES, answer)
    assert aligner.stream(MESSAGES, answer).collect().question == one.question
    batch = aligner.correct_batch([MESSAGES, "How do I bake bread?"], [answer, "Use flour."], progress=False)
    assert batch[0].question == one.question and batch[0].correction == one.correction
    assert batch[1].question == "How do I bake bread?"


async def test_async_calls_render_the_same(conv_path):
    aligner = Aligner(None, str(conv_path), decoding=GREEDY)
    answer = "Knock on her door."
    one = aligner.correct(MESSAGES, answer)
    assert (await aligner.acorrect(MESSAGES, answer)).question == one.question
    assert (await aligner.astream(MESSAGES, answer).collect()).question == one.question
    assert (await aligner.acorrect_batch([MESSAGES], [answer]))[0].question == one.question


# -- the wrapped client and the server ------------------------------------------------------------------
def test_the_wrapped_client_corrects_for_the_conversation(fake_openai, conv_path):
    import openai

    import aligner

    fake_openai.responder = lambda req: ANSWER if "messages" in req else "Edited reply."
    corrector = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0)
    client = aligner.wrap(corrector, corrector=fake_openai.base_url, context="conversation")
    resp = client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == get_template("aligner-v1.0").render(TRANSCRIPT, ANSWER)
    assert resp.choices[0].message.content == "Edited reply."
    # fitted to a local corrector's budget, as the Aligner does
    local = aligner.wrap(corrector, corrector=str(conv_path), decoding=GREEDY)
    fake_openai.responder = lambda req: "Knock on her door."
    got = local.chat.completions.create(model="fake-model", messages=MESSAGES).choices[0].message.content
    expected = Aligner(None, str(conv_path), decoding=GREEDY).correct(MESSAGES, "Knock on her door.")
    assert got == expected.correction


def test_the_server_corrects_for_the_conversation_and_logs_the_question_it_read(fake_openai, conv_path, tmp_path):
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.runtime.records import CorrectionsLog
    from aligner.serve.runner import ServerThread

    fake_openai.responder = lambda req: "Knock on her door."
    log = tmp_path / "corrections.jsonl"
    app = create_app(Aligner(fake_openai.base_url, str(conv_path), upstream_model="fake-model", decoding=GREEDY),
                     ServeConfig(log_corrections=str(log), max_new_tokens=8))
    expected = Aligner(None, str(conv_path), decoding=GREEDY).correct(MESSAGES, "Knock on her door.")
    with ServerThread(app) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", json={"model": "fake-model", "messages": MESSAGES},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == expected.correction
        assert fake_openai.last_body("/v1/chat/completions")["messages"] == MESSAGES  # the whole chat went upstream
        too_long = [*MESSAGES[:-1], {"role": "user", "content": "Tell me all about bread. " * 60}]
        r = httpx.post(srv.base_url + "/chat/completions", json={"model": "fake-model", "messages": too_long},
                       timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60,
                       json={"model": "fake-model", "messages": [{"role": "assistant", "content": "Hi"}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    rows = list(CorrectionsLog(log).read())
    assert [row["question"] for row in rows] == [expected.question]
    assert "Human: Yes, do that." in expected.question and "neighbour" not in expected.question
