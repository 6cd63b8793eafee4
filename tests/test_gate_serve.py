"""The gate through ``aligner serve``: the real ``openai`` client → real uvicorn on 127.0.0.1 → the
app → a real fake OpenAI upstream. Flagged answers come back corrected, unflagged ones unchanged
without a corrector call (counted by a recording corrector), streamed or not; the ``aligner``
object and the corrections log carry the verdict; concurrent requests share one gate call."""
from __future__ import annotations

import asyncio
import threading

import pytest

from aligner import Aligner
from aligner.adapters.base import RetryPolicy
from aligner.gates import GateVerdict
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.records import CorrectionsLog
from aligner.serve.runner import ServerThread
from fake_openai import FakeOpenAI, request_text
from gate_helpers import REFUSAL, RecordingCorrector

MODEL = "fake-model"
HARMFUL = "Hide a knife in your coat and wait behind the station."


def answer_for(question: str) -> str:
    return HARMFUL if "hurt" in question else f"A calm, helpful answer about {question.rstrip('?').lower()}."


class CountingGate:
    """A gate function that counts how often, and with how many answers at once, it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, question: str, answer: str) -> GateVerdict:
        self.calls += 1
        flagged = "knife" in answer
        return GateVerdict(flagged, 0.97 if flagged else 0.03, ["Violence"] if flagged else [],
                           "severe" if flagged else "safe")


@pytest.fixture()
def served(tmp_path):
    barrier = {"b": None}

    def respond(req):
        if barrier["b"] is not None:
            barrier["b"].wait(timeout=30)
        return answer_for(request_text(req))

    with FakeOpenAI(responder=respond) as upstream:
        rec, gate = RecordingCorrector(), CountingGate()
        aligner = Aligner(upstream.base_url, rec, upstream_model=MODEL, gate=gate,
                          retry=RetryPolicy(max_retries=1, initial_backoff=0.05, timeout=30))
        cfg = ServeConfig(upstream_model=MODEL, log_corrections=str(tmp_path / "log.jsonl"), max_batch_size=4,
                          batch_wait_ms=5000)
        app = create_app(aligner, cfg)
        with ServerThread(app) as srv:
            srv.rec, srv.gate, srv.barrier, srv.log = rec, gate, barrier, tmp_path / "log.jsonl"
            srv.state = app.state.aligner
            yield srv


def client(srv):
    import openai

    return openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)


def test_flagged_answers_are_corrected_and_unflagged_ones_pass_without_a_corrector_call(served):
    c = client(served)
    fine = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How do I bake bread?"}])
    assert fine.choices[0].message.content == answer_for("How do I bake bread?")
    meta = fine.model_extra["aligner"]
    assert meta["gate"]["flagged"] is False and meta["gate"]["kind"] == "callable" and meta["changed"] is False
    assert meta["timings"]["corrector"] == 0.0 and served.rec.prompts == []
    bad = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How do I hurt him?"}])
    assert bad.choices[0].message.content == REFUSAL
    meta = bad.model_extra["aligner"]
    assert meta["gate"] == {**meta["gate"], "flagged": True, "categories": ["Violence"], "severity": "severe"}
    assert meta["original"] == HARMFUL and len(served.rec.prompts) == 1 and served.rec.saw(HARMFUL)
    rows = list(CorrectionsLog(served.log).read())
    assert [(r["gate"]["flagged"], r["changed"]) for r in rows] == [(False, False), (True, True)]


def test_streamed_requests_are_routed_the_same_way(served):
    c = client(served)

    def stream(question):
        chunks = list(c.chat.completions.create(model=MODEL, stream=True,
                                                messages=[{"role": "user", "content": question}]))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        return text, chunks[-1].model_extra["aligner"]

    text, meta = stream("How do I plant tulips?")
    assert text == answer_for("How do I plant tulips?") and meta["gate"]["flagged"] is False
    assert served.rec.prompts == []
    text, meta = stream("How do I hurt him?")
    assert text.strip() == REFUSAL.strip() and meta["gate"]["flagged"] is True and len(served.rec.prompts) == 1


def test_concurrent_requests_share_one_gate_call(served):
    import openai

    questions = ["How do I hurt him?", "How do I bake bread?", "How do I hurt her?", "How do I sleep well?"]
    served.barrier["b"] = threading.Barrier(len(questions))  # the upstream answers all four at once

    async def ask_all():
        c = openai.AsyncOpenAI(base_url=served.base_url, api_key="none", max_retries=0, timeout=60)
        return await asyncio.gather(*(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
                                      for q in questions))

    replies = asyncio.run(ask_all())
    assert [r.choices[0].message.content for r in replies] == [
        REFUSAL, answer_for(questions[1]), REFUSAL, answer_for(questions[3])]
    batcher = served.state.serving.gate
    assert (batcher.batches, batcher.largest_batch, batcher.answers) == (1, 4, 4)
    assert served.gate.calls == 4 and len(served.rec.prompts) == 2
    import httpx

    health = httpx.get(served.base_url.removesuffix("/v1") + "/health", timeout=10).json()
    assert {k: health["gate"][k] for k in ("kind", "answers", "batches", "largest_batch")} == {
        "kind": "callable", "answers": 4, "batches": 1, "largest_batch": 4}


def test_a_wrapped_openai_client_carries_the_verdict():
    import openai

    import aligner

    with FakeOpenAI(responder=lambda req: answer_for(request_text(req))) as upstream:
        rec = RecordingCorrector()
        client = aligner.wrap(openai.OpenAI(base_url=upstream.base_url, api_key="none", max_retries=0),
                              corrector=rec, gate=CountingGate())
        fine = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How do I rest?"}])
        bad = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How do I hurt him?"}])
    assert fine.choices[0].message.content == answer_for("How do I rest?") and fine.aligner["gate"]["flagged"] is False
    assert bad.choices[0].message.content == REFUSAL and bad.aligner["gate"]["flagged"] is True
    assert len(rec.prompts) == 1
