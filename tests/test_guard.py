"""Degenerate corrections fall back to the original answer (issue 10 item 19).

Real correctors produce the degenerate outputs: tiny local models that loop (a causal one repeats
``:`` for ever, a seq2seq one an invisible token, one never writes EOS), the embedded demo
corrector on the issue's kind of input, and a real completions server (the fake at the network
edge) scripted to loop, echo the template, return nothing or run to its token limit. Every path —
sync, async, batch, stream, the server — must return the answer flagged, and leave good
corrections byte for byte as they were.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from aligner import Aligner
from aligner.correctors import load_corrector
from aligner.correctors.remote import RemoteCorrector
from aligner.runtime.decode_loop import greedy_decode
from aligner.contracts.decoding import DecodingConfig
from aligner.adapters import RetryPolicy
from aligner.runtime.guard import (EMPTY, REPETITION, TEMPLATE_MARKER, TOO_LONG, Guard, find_repetition, new_token_cap,
                           repeated_tail, template_markers)
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.records import CorrectionsLog
from aligner.serve.runner import ServerThread
from aligner.contracts.templates import get_template
from fake_openai import COMPLETIONS, FakeOpenAI

Q, A = "How are you?", "I am fine, thanks."


# -- the rules --------------------------------------------------------------------------------
def test_runaway_repetition_is_found_and_ordinary_text_is_not():
    assert repeated_tail("Sure: " + "so " * 20) is not None
    assert repeated_tail("x" + "2" * 60) is not None  # the issue's 2222…
    assert repeated_tail("Il a dit " + "os" * 30) is not None  # … and ososos…
    assert find_repetition("A " + "hold the sky " * 6 + "and then it stopped.") is not None  # a loop it left
    prose = ("Paris is the capital of France. It sits on the Seine, and its museums draw visitors "
             "from all over the world; ha ha, no, no, no — it is not cheap.")
    assert repeated_tail(prose) is None and find_repetition(prose) is None
    table = "| a | b |\n|---|---|\n| 1 | 2 |"
    assert find_repetition(table) is None


def test_a_run_copied_from_the_answer_is_not_runaway():
    answer = "Row: " + "=" * 60 + " end"
    assert find_repetition("Row: " + "=" * 60, reference=answer) is None
    assert find_repetition("Row: " + "=" * 200, reference=answer) is not None  # far past the answer's run


def test_markers_come_from_each_template():
    assert {"BEGINNING OF CONVERSATION:", "USER:", "ASSISTANT:", "CONVERSATION"} <= set(
        template_markers(get_template("aligner-v1.0")))
    assert {"##Question", "##Answer", "##Correction"} <= set(template_markers(get_template("qac")))
    assert {"| Context:", "| Answer:", "| Edit:"} <= set(template_markers(get_template("metaaligner")))
    guard = Guard(get_template("aligner-v1.0"), "What does USER: mean?", "It is a prefix.")
    assert "USER:" not in guard.markers  # the user wrote it: not a leak


def test_verdicts():
    g = Guard(get_template("aligner-v1.0"), Q, A, eos_token="</s>", cap=40)
    assert g.verdict(" I am well.</s>USER: more", "I am well.") is None  # a new turn is a normal end
    assert g.verdict(" I am well. ASSISTANT: I am", "I am well.") == TEMPLATE_MARKER
    assert g.verdict(" The CONVERSATION is fine", "The CONVERSATION is fine") == TEMPLATE_MARKER
    assert g.verdict(" ok " + "no " * 30, "ok") == REPETITION
    assert g.verdict(" I am", "I am", "cap") == TOO_LONG
    assert g.verdict("</s>", "") == EMPTY
    assert Guard(get_template("aligner-v1.0"), Q, A, enabled=False).verdict("no " * 30, "no") is None
    assert new_token_cap(10) == 84


def test_a_correction_that_introduces_replacement_characters_is_degenerate():
    """U+FFFD is what a decoder writes for bytes that are no text: one the answer did not have is
    the corrector's invention (issue 21 item 8); copying the answer's own is not."""
    g = Guard(get_template("aligner-v1.0"), "What is x?", "x=5", eos_token="</s>")
    assert g.verdict(" x\ufffd5</s>", "x\ufffd5") == "replacement_char"
    assert g.verdict(" x=5</s>", "x=5") is None
    assert g.replacement_at("So x\ufffd5") == 4
    copied = Guard(get_template("aligner-v1.0"), "Why?", "caf\ufffd ok")
    assert copied.verdict(" Caf\ufffd ok.", "Caf\ufffd ok.") is None  # the answer's own
    assert copied.verdict(" Caf\ufffd \ufffdk.", "Caf\ufffd \ufffdk.") == "replacement_char"  # one more
    assert Guard(get_template("aligner-v1.0"), "Q", "x=5", enabled=False).verdict("x\ufffd5", "x\ufffd5") is None


# -- local correctors ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def looping(tmp_path_factory):
    """Untrained models at the default init: the causal one writes ``:`` for ever, the seq2seq
    one an invisible token (an empty text that only the length cap can stop)."""
    from fixed_tiny import fixed_tiny

    return {kind: fixed_tiny(tmp_path_factory.mktemp(kind), kind, init_scale=1.0) for kind in ("causal", "seq2seq")}


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Varied text of whole characters (no lone bytes, which decode as U+FFFD and fall back)."""
    from fixed_tiny import fixed_tiny

    return {kind: fixed_tiny(tmp_path_factory.mktemp(kind), kind, init_scale=10.0, whole_characters=True)
            for kind in ("causal", "seq2seq")}


@pytest.fixture(scope="module")
def endless(tmp_path_factory):
    """Varied text that never ends: EOS suppressed in its generation config (and lone bytes)."""
    from fixed_tiny import fixed_tiny

    return fixed_tiny(tmp_path_factory.mktemp("endless"), context=4096, init_scale=10.0, never_stops=True,
                      whole_characters=True)


def test_a_looping_causal_corrector_falls_back_on_every_path(looping):
    c = load_corrector(str(looping["causal"]))
    raw = c.correct_results([(Q, A)], decoding={"fallback": False, "max_new_tokens": 100})[0]
    assert set(raw.text) == {":"} and raw.fallback_reason is None  # the degenerate output, unguarded
    res = c.correct_results([(Q, A)])[0]
    assert (res.text, res.fallback_reason, res.stop_reason) == (A, REPETITION, "repetition")
    assert len(res.raw) < len(raw.raw)  # generation stopped once the run was clear, not at the limit
    assert c.correct(Q, A) == A and asyncio.run(c.acorrect(Q, A)) == A
    assert c.correct_batch([(Q, A), ("Hi?", "Hello there.")]) == [A, "Hello there."]
    stream = c.stream(Q, A)
    shown = "".join(stream)  # shown before the loop was clear; then the stream stops, flagged
    assert set(shown) <= {":"} and stream.result.fallback_reason == REPETITION and stream.result.text == A

    async def astream() -> tuple[str, str | None]:
        s = c.astream(Q, A)
        text = "".join([p async for p in s])
        return text, s.result.fallback_reason

    assert asyncio.run(astream()) == (shown, REPETITION)
    corr = Aligner(None, corrector=c).correct(Q, A)
    assert (corr.correction, corr.fallback, corr.fallback_reason, corr.changed) == (A, True, REPETITION, False)


def test_a_seq2seq_corrector_that_never_stops_is_capped_relative_to_the_answer(looping):
    c = load_corrector(str(looping["seq2seq"]))
    res = c.correct_results([(Q, A)])[0]
    cap = new_token_cap(c.answer_tokens(A))
    assert (res.text, res.fallback_reason, res.stop_reason) == (A, TOO_LONG, "cap")
    assert cap < c.decoding.max_new_tokens
    stream = c.stream(Q, A)
    assert "".join(stream) == A  # nothing was shown before the verdict: the answer is streamed
    assert stream.result.fallback_reason == TOO_LONG


def test_the_cap_is_relative_unless_max_new_tokens_is_set(endless):
    c = load_corrector(str(endless))
    res = c.correct_results([(Q, A)])[0]
    assert res.fallback_reason == TOO_LONG and res.text == A
    assert res.stop_reason == "cap"
    chosen = c.correct_results([(Q, A)], decoding={"max_new_tokens": 120})[0]  # the user chose the length
    assert chosen.fallback_reason is None and chosen.stop_reason == "length" and chosen.text != A


def test_good_corrections_are_unchanged_by_the_guard(varied):
    pairs = [(Q, A), ("What is 2+2?", "It is 5."), ("Tell me a joke", "Why did the chicken cross the road?")]
    for path in varied.values():
        c = load_corrector(str(path), decoding={"max_new_tokens": 24})
        guarded = c.correct_results(pairs)
        raw = c.correct_results(pairs, decoding={"fallback": False})
        for g, r in zip(guarded, raw):
            assert g.text == (r.text if g.fallback_reason is None else g.text)
            assert g.raw.startswith(r.raw) or r.raw.startswith(g.raw)
        assert any(g.fallback_reason is None and g.text for g in guarded)


def test_the_demo_corrector_loop_from_the_issue_falls_back():
    """Embedded demo correctors have looped on real inputs: the one shipped before stage 9 on this
    haiku (``hold the skyiluddles`` until its token limit), the stage-10 one on the README's
    arithmetic demo input (the sum fixed, then the sentence repeated). With the guard the answer
    comes back, flagged. The first input this tree's demo corrector loops on is used."""
    cases = [("Write a haiku about rain.", "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky"),
             ("What is 17 + 26?", "I think 17 + 26 = 44, but check it.")]
    c = load_corrector(None)
    for q, a in cases:
        raw = c.correct_results([(q, a)], decoding={"fallback": False})[0]
        if find_repetition(raw.raw) is not None:
            break
    else:
        pytest.skip("the demo corrector in this tree loops on none of the known inputs")
    res = c.correct_results([(q, a)])[0]
    assert (res.text, res.fallback_reason) == (a, REPETITION)
    assert len(res.raw) < len(raw.raw)


def test_the_demo_corrector_writes_a_lone_byte_for_x_equals_5_and_falls_back():
    """Issue 21 item 8: the demo corrector turned ``x=5`` into ``x\ufffd5``. The model's own
    choice, not the decoding: after `` x`` its argmax is token 104, the byte-level symbol ``§``
    for the lone byte 0xA7 (a UTF-8 continuation byte), where the answer has ``=`` (token 32);
    the token ids decode to ``b' x\\xa75'``, which no decoder can make text of. With the guard,
    every path returns the answer, flagged, and a stream never shows the replacement character."""
    q, a = "What is x?", "x=5"
    c = load_corrector(None)
    raw = c.correct_results([(q, a)], decoding={"fallback": False})[0]
    if "\ufffd" not in raw.text:
        pytest.skip("the demo corrector in this tree writes no replacement character for x=5")
    gen, tok = c.generator, c.generator.tokenizer
    prompt, row = c.prepare(q, a, decoding=DecodingConfig(fallback=False))
    enc = gen._encode([prompt])
    ids = greedy_decode(gen.model, tok, enc["input_ids"], enc["attention_mask"], [row], max_new_tokens=64,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0]
    assert tok.decode(ids, skip_special_tokens=True) == raw.raw  # the very tokens behind the raw text
    assert tok.convert_ids_to_tokens(104) == "\u00a7" and tok.decode([104]) == "\ufffd"  # byte 0xA7 alone
    at = ids.index(104)  # the model wrote the lone byte where the answer has "=" (token 32)
    assert tok.decode(ids[:at]).endswith("x") and tok.decode(ids[at + 1:], skip_special_tokens=True).startswith("5")
    res = c.correct_results([(q, a)])[0]
    assert (res.text, res.fallback_reason) == (a, "replacement_char")
    assert c.correct_batch([("What is 2+2?", "It is 4."), (q, a)])[1] == a
    assert asyncio.run(c.acorrect_results([(q, a)]))[0].fallback_reason == "replacement_char"
    stream = c.stream(q, a)
    shown = "".join(stream)
    assert "\ufffd" not in shown and stream.result.fallback_reason == "replacement_char"

    async def astream() -> tuple[str, str | None]:
        s = c.astream(q, a)
        return "".join([p async for p in s]), s.result.fallback_reason

    assert asyncio.run(astream()) == (shown, "replacement_char")
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    with ServerThread(create_app(Aligner(None, corrector=c), ServeConfig())) as srv:
        plain = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={"messages": msgs}).json()
        with httpx.stream("POST", srv.base_url + "/chat/completions", timeout=60,
                          json={"messages": msgs, "stream": True}) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    assert plain["choices"][0]["message"]["content"] == a
    assert plain["aligner"]["fallback_reason"] == "replacement_char"
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert "\ufffd" not in streamed and events[-1]["aligner"]["fallback_reason"] == "replacement_char"


# -- a remote corrector -------------------------------------------------------------------------
def degenerate_server(req: dict) -> "str | dict":
    answer = req["prompt"].rsplit(" | ", 1)[1].removesuffix(" ASSISTANT:")
    if answer == "loop":
        return " so" * 80
    if answer == "bytes":  # a lone byte token, decoded by the server as U+FFFD mid-answer
        return " Sure: x\ufffd5 and then some more words.</s>"
    if answer == "echo":
        return " Fine. ASSISTANT: Fine."
    if answer == "nothing":
        return "</s>"
    if answer == "long":  # runs to max_tokens, as a real server does
        return {"content": " " + " ".join(f"w{i}" for i in range(req["max_tokens"])), "finish_reason": "length"}
    return f" Better: {answer}.</s>"


@pytest.fixture(scope="module")
def remote():
    with FakeOpenAI(responder=degenerate_server, models=("aligner-7b",)) as srv:
        yield srv, RemoteCorrector(srv.base_url, "aligner-7b", retry=RetryPolicy(max_retries=0, timeout=10))


@pytest.mark.parametrize("answer, reason", [("loop", REPETITION), ("echo", TEMPLATE_MARKER), ("nothing", EMPTY),
                                            ("long", TOO_LONG), ("bytes", "replacement_char"), ("fine", None),
                                            ("caf\ufffd", None)])
def test_a_remote_corrector_falls_back_sync_async_batch_and_stream(remote, answer, reason):
    srv, c = remote
    want = answer if reason else f"Better: {answer}."
    res = c.correct_results([(Q, answer)])[0]
    assert (res.text, res.fallback_reason) == (want, reason)
    if answer == "long":
        assert srv.last_body(COMPLETIONS)["max_tokens"] == new_token_cap(len(answer))
    assert asyncio.run(c.acorrect_results([(Q, answer)]))[0].fallback_reason == reason
    assert c.correct_batch([(Q, answer), (Q, "fine")]) == [want, "Better: fine."]
    stream = c.stream(Q, answer)
    shown = "".join(stream)
    assert stream.result.fallback_reason == reason and stream.result.text == want
    if reason in (None, EMPTY):
        assert shown == want  # nothing degenerate was shown: stream and correct() agree
    if reason == "replacement_char":
        assert shown == "Sure: x"  # shown up to the replacement character, not from it on

    async def astream() -> str | None:
        s = c.astream(Q, answer)
        async for _ in s:
            pass
        return s.result.fallback_reason

    assert asyncio.run(astream()) == reason


def test_a_remote_stream_is_closed_once_it_loops(remote):
    srv, c = remote
    stream = c.stream(Q, "loop")
    shown = "".join(stream)
    assert stream.result.fallback_reason == REPETITION and stream.result.stop_reason == "repetition"
    assert len(shown) < len(" so" * 80) - 10  # stopped reading once the run was clear


# -- the server ---------------------------------------------------------------------------------
def test_the_server_flags_fallbacks_in_the_aligner_object_the_log_and_health(looping, tmp_path):
    al = Aligner(None, corrector=str(looping["causal"]))
    log_path = tmp_path / "c.sqlite"
    app = create_app(al, ServeConfig(log_corrections=str(log_path)))
    msgs = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    with ServerThread(app) as srv:
        plain = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={"messages": msgs})
        with httpx.stream("POST", srv.base_url + "/chat/completions", timeout=60,
                          json={"messages": msgs, "stream": True}) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines()
                      if line.startswith("data: {")]
        health = httpx.get(srv.url + "/health").json()
        rows = list(CorrectionsLog(log_path).read())
    body = plain.json()
    assert body["choices"][0]["message"]["content"] == A
    assert body["aligner"]["fallback"] is True and body["aligner"]["fallback_reason"] == REPETITION
    final = events[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["aligner"]["fallback"] is True and final["aligner"]["fallback_reason"] == REPETITION
    assert health["batching"]["fallbacks"] == {REPETITION: 2}
    assert [(r["correction"], r["fallback"]) for r in rows] == [(A, REPETITION), (A, REPETITION)]
