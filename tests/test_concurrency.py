"""Shared state under concurrency (issue 21, item 0): one corrector serves many threads at once.

A fast tokenizer keeps its padding and truncation settings on one shared backend object, and
transformers sets them on every call (padding on for a batch, off for a count). A server tokenises
in several threads at once — ``prepare`` (fit and cap) in worker threads, the batch encode in the
corrector thread, the usage count after an answer — so a padded batch sometimes came back ragged
(``Unable to create tensor``) and every request in it failed. These tests run the real pieces in
real threads, and a real server under the real ``openai`` client.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any, Callable, Iterator

import httpx
import pytest

from aligner import Aligner
from aligner.adapters import RetryPolicy
from aligner.correctors import demo_corrector_path
from aligner.correctors.local import LocalCorrector
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.serve.runner import ServerThread
from fake_openai import upstream_answer

MODEL = "fake-model"


def _question(i: int) -> str:
    """Questions (and so answers and prompts) of many lengths: a batch always needs padding."""
    return f"Question {i}: " + "why is the sky blue, and what about sunsets " * (i % 7) + "?"


@contextlib.contextmanager
def _busy_threads(targets: list[Callable[[], Any]]) -> Iterator[list[BaseException]]:
    """Run each target in a loop in its own thread until the block ends; the errors they raised."""
    stop, errors = threading.Event(), []

    def loop(fn: Callable[[], Any]) -> None:
        try:
            while not stop.is_set():
                fn()
        except BaseException as exc:  # noqa: BLE001 - collected for the test to assert on
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(fn,), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    try:
        yield errors
    finally:
        stop.set()
        for t in threads:
            t.join(60)


@contextlib.contextmanager
def _frequent_thread_switches() -> Iterator[None]:
    """Let Python switch threads every microsecond instead of every 5 ms, so threads interleave at
    many more points of their code (Python's own scheduling setting; nothing is replaced)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture(scope="module")
def demo() -> LocalCorrector:
    return LocalCorrector.from_pretrained(str(demo_corrector_path()))


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_batch_encode_pads_like_the_tokenizer_and_leaves_it_untouched(kind, tiny_causal_path, tiny_seq2seq_path):
    """The runtime pads batches itself (left for decoder-only, right for encoder-decoder models)
    exactly as ``tokenizer(padding=True)`` would, and no encode switches the shared tokenizer's
    backend to padding or truncation."""
    corrector = LocalCorrector.from_pretrained(str(tiny_causal_path if kind == "causal" else tiny_seq2seq_path))
    gen, tok = corrector.generator, corrector.generator.tokenizer
    prompts = [_question(i) for i in range(5)]
    got = gen._encode(prompts)
    want = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=True)  # the test's own call
    tok.backend_tokenizer.no_padding()  # undo what that call did, then check the runtime's calls
    assert got["input_ids"].tolist() == want["input_ids"].tolist()
    assert got["attention_mask"].tolist() == want["attention_mask"].tolist()
    assert got["attention_mask"][0, 0 if kind == "causal" else -1].item() == 0  # the shortest row is padded
    gen._encode(prompts)
    gen.count_tokens(prompts[0])
    corrector.prepare(prompts[0], prompts[1] * 30)  # truncated: fit encodes and decodes
    assert tok.backend_tokenizer.padding is None and tok.backend_tokenizer.truncation is None


def test_the_decoding_config_every_request_reads_cannot_be_edited_in_place(demo):
    """The corrector's decoding config is read by every request of a server at once: a request's
    own settings are a new config, and an edit in place (which all threads would see) is refused."""
    import dataclasses

    from aligner.contracts.decoding import DecodingConfig

    before = demo.decoding.max_new_tokens
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.decoding.max_new_tokens = 1  # type: ignore[misc]
    mine = DecodingConfig.from_any({"max_new_tokens": 1}, demo.decoding.to_dict())
    assert mine.max_new_tokens == 1 and demo.decoding.max_new_tokens == before


def test_tokenizer_calls_from_many_threads_at_once(demo):
    """Counting, fitting and batch encoding in parallel threads, as a server does: every batch
    encode comes back padded and equal to the one made alone, every count and every prompt equal
    to the one made alone."""
    gen = demo.generator
    texts = [_question(i) for i in range(12)]
    answers = [t * (1 + i % 4) for i, t in enumerate(texts)]  # some long enough to be truncated
    batches = [texts[i:i + 4] for i in range(0, len(texts), 4)]
    want_enc = [{k: v.tolist() for k, v in gen._encode(b).items()} for b in batches]
    want_count = [gen.count_tokens(t) for t in texts]
    want_prep = [demo.prepare(t, a)[0] for t, a in zip(texts, answers)]
    wrong: list[str] = []
    start = threading.Barrier(6)
    # Before the fix an encode thread first failed within 0-53 rounds (the first of each run's three
    # within 0-11, 5 runs); 60 rounds failed the test in each of 5 runs and keep it short.
    rounds = 60

    def encode_loop() -> None:
        start.wait()
        for _ in range(rounds):
            for b, want in zip(batches, want_enc):
                if {k: v.tolist() for k, v in gen._encode(b).items()} != want:
                    wrong.append("encode")

    def count_loop() -> None:
        start.wait()
        for _ in range(rounds):
            for t, a, want, prep in zip(texts, answers, want_count, want_prep):
                if gen.count_tokens(t) != want:
                    wrong.append("count")
                if demo.prepare(t, a)[0] != prep:
                    wrong.append("prepare")

    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (encode_loop,) * 3 + (count_loop,) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} of 6 threads failed, first: {errors[0]!r}"
    assert not wrong, f"{len(wrong)} results differ from the single-threaded ones: {sorted(set(wrong))}"


def test_server_under_mixed_load_answers_every_request(fake, tiny_causal_path):
    """The issue's load on a live server: many clients at once, half of them streamed, small
    batches (many batch encodes), for two rounds. Every request is answered — a 200 whose
    ``aligner.original`` is its own upstream answer, every stream ending with ``stop`` and no
    error event.

    On a 2-core machine HTTP clients cannot start requests fast enough to overlap the server's
    tokenizer calls as a busy server does, so two more threads keep preparing rows on the same
    corrector (``Corrector.prepare``, what the server runs for every request) and Python switches
    threads more often: before the fix this lost 8-18 of the 48 requests in each of 5 runs."""
    import openai

    fake.responder = None
    al = Aligner(fake.base_url, corrector=str(tiny_causal_path), upstream_model=MODEL, decoding={"max_new_tokens": 2})
    al.upstream.retry = RetryPolicy(max_retries=0, timeout=60)
    rounds, per_round, at_once = 1, 48, 16
    failures: list[str] = []
    config = ServeConfig(upstream_model=MODEL, request_timeout=300, max_batch_size=2, access_log=False)
    with ServerThread(create_app(al, config)) as srv:
        async def one(oc: Any, gate: asyncio.Semaphore, q: str, streamed: bool) -> None:
            msgs = [{"role": "user", "content": q}]
            async with gate:
                try:
                    if streamed:
                        text, finish = "", None
                        async for chunk in await oc.chat.completions.create(model=MODEL, messages=msgs, stream=True):
                            if chunk.choices:
                                text += chunk.choices[0].delta.content or ""
                                finish = chunk.choices[0].finish_reason or finish
                        if finish != "stop" or not text:
                            failures.append(f"stream {q[:12]!r}: finish={finish!r} text={text!r}")
                    else:
                        resp = await oc.chat.completions.create(model=MODEL, messages=msgs)
                        if resp.model_extra["aligner"]["original"] != upstream_answer(q) or \
                                not resp.choices[0].message.content:
                            failures.append(f"plain {q[:12]!r}: {resp.model_dump()}")
                except Exception as exc:  # noqa: BLE001 - every lost request is reported
                    failures.append(f"{'stream' if streamed else 'plain'} {q[:12]!r}: {exc!r}"[:300])

        async def run_round(r: int) -> None:
            gate = asyncio.Semaphore(at_once)
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=300) as oc:
                await asyncio.gather(*(one(oc, gate, _question(r * per_round + i), i % 2 == 1)
                                       for i in range(per_round)))

        side_load = [lambda: al.corrector.prepare(_question(3), upstream_answer(_question(3)) * 3)] * 2
        with _frequent_thread_switches(), _busy_threads(side_load) as side_errors:
            for r in range(rounds):
                asyncio.run(run_round(r))
        health = httpx.get(srv.url + "/health").json()
    assert not side_errors, side_errors[0]
    assert not failures, f"{len(failures)} of {rounds * per_round} requests failed; first: {failures[:3]}"
    assert health["served"] == rounds * per_round and health["batching"]["largest_batch"] == 2
