"""``aligner serve`` in production: ``aligner.id`` on every response, ``POST /v1/feedback``, and
``/metrics`` parsed with prometheus-client's own parser. Real uvicorn on 127.0.0.1, the real
``openai`` and httpx clients, a real fake OpenAI upstream; the corrector is a
:class:`~aligner.correctors.base.Corrector` subclass with scripted outputs, so every outcome
(changed, unchanged, fallback, skipped) is produced on purpose and counted exactly."""
from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

import httpx
import pytest

from aligner import Aligner
from aligner.adapters.base import RetryPolicy
from aligner.correctors.base import Corrector
from aligner.gates import GateVerdict
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.logs import read_log
from aligner.serve.runner import ServerThread
from fake_openai import FakeOpenAI, request_text

MODEL = "fake-model"
KEY = "sk-prod"
AUTH = {"Authorization": f"Bearer {KEY}"}
ANSWER = "The router resets when you hold its button for ten seconds, then it reboots."
FIXED = "Hold the reset button for ten seconds; the router then restarts with factory settings."
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]


class ScriptedCorrector(Corrector):
    """Writes ``FIXED``, or the answer itself for a question with "keep it", or nothing for a
    question with "blank" (which the guard replaces by the answer: a fallback)."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__("aligner-v1.0", {"max_new_tokens": 64})

    def _output(self, prompt: str) -> str:
        return ANSWER if "keep it" in prompt else "" if "blank" in prompt else FIXED

    def generate(self, prompts: Sequence[str], decoding: Any) -> list[str]:
        return [self._output(p) for p in prompts]

    def stream_prompt(self, prompt: str, decoding: Any) -> Iterator[str]:
        for word in self._output(prompt).split(" "):
            yield word + " "


def respond(req: dict) -> Any:
    return {"content": None, "tool_calls": [TOOL_CALL]} if "weather" in request_text(req) else ANSWER


def make_aligner(upstream: FakeOpenAI, **kw: Any) -> Aligner:
    return Aligner(upstream.base_url, ScriptedCorrector(), upstream_model=MODEL,
                   retry=RetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.02, timeout=30), **kw)


@pytest.fixture()
def served(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(KEY + "\n")
    with FakeOpenAI(responder=respond) as upstream:
        cfg = ServeConfig(upstream_model=MODEL, log_corrections=str(tmp_path / "log.sqlite"),
                          api_keys_file=str(keys), allow_bypass=True)
        with ServerThread(create_app(make_aligner(upstream), cfg)) as srv:
            srv.upstream, srv.log = upstream, tmp_path / "log.sqlite"
            yield srv


def chat(srv, question: str, *, key: str | None = KEY, headers: dict | None = None, **body: Any) -> httpx.Response:
    h = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    return httpx.post(srv.base_url + "/chat/completions", headers=h, timeout=60,
                      json={"model": MODEL, "messages": [{"role": "user", "content": question}], **body})


def stream(srv, question: str) -> list[dict]:
    """A streamed request read to its end: its events."""
    events = []
    with httpx.stream("POST", srv.base_url + "/chat/completions", headers=AUTH, timeout=60, json={
            "model": MODEL, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": question}]}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def feedback(srv, body: Any, *, key: str | None = KEY, content_type: str = "application/json") -> httpx.Response:
    h = {"content-type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(srv.base_url + "/feedback", headers=h, content=json.dumps(body), timeout=30)


def scrape(srv, key: str | None = KEY) -> dict[tuple[str, tuple], float]:
    """``/metrics`` read with prometheus-client's parser: ``{(sample name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_every_outcome_route_status_retry_and_token(served):
    up = served.upstream
    plain = [chat(served, f"How do I reset router {i}?") for i in range(3)]
    streams = [stream(served, f"How do I reset modem {i}?") for i in range(2)]
    kept = chat(served, "Is this fine, keep it?")
    blank = chat(served, "Say something blank?")
    bypassed = chat(served, "Bypass me?", headers={"X-Aligner-Bypass": "1"})
    tool = chat(served, "What is the weather in Oslo?", tools=TOOLS)
    up.fail_next(429, retry_after=0.01)
    retried = chat(served, "Retried question?")
    up.fail_next(500, times=2)
    failed = chat(served, "Failing question?")
    unauthorized = chat(served, "No key?", key=None)
    assert [r.status_code for r in [*plain, kept, blank, bypassed, tool, retried]] == [200] * 8
    assert (failed.status_code, unauthorized.status_code) == (502, 401)
    assert [r.json()["aligner"]["changed"] for r in plain + [kept]] == [True] * 3 + [False]
    assert blank.json()["aligner"]["fallback_reason"] == "empty"

    m = scrape(served)
    chat_route = "/v1/chat/completions"
    assert value(m, "aligner_requests_total", route=chat_route, status="200") == 10
    assert value(m, "aligner_requests_total", route=chat_route, status="502") == 1
    assert value(m, "aligner_requests_total", route=chat_route, status="401") == 1
    assert value(m, "aligner_request_seconds_count", route=chat_route) == 12
    assert value(m, "aligner_corrections_total", outcome="changed", reason="") == 6  # 3 + 2 streamed + retried
    assert value(m, "aligner_corrections_total", outcome="unchanged", reason="") == 1
    assert value(m, "aligner_corrections_total", outcome="fallback", reason="empty") == 1
    assert value(m, "aligner_corrections_total", outcome="skipped", reason="bypass") == 1
    assert value(m, "aligner_corrections_total", outcome="skipped", reason="tool_calls") == 1
    assert value(m, "aligner_corrector_seconds_count") == 8 and value(m, "aligner_correction_seconds_count") == 10
    assert value(m, "aligner_upstream_seconds_count") == 10
    assert value(m, "aligner_upstream_retries_total", kind="rate_limited") == 1
    assert value(m, "aligner_upstream_retries_total", kind="server_error") == 1
    assert value(m, "aligner_upstream_errors_total", kind="server_error") == 1
    assert value(m, "aligner_time_to_first_piece_seconds_count") == 2
    # the upstream's tokens as it reported them to the proxy's clients
    usages = [r.json()["usage"] for r in [*plain, kept, blank, bypassed, tool, retried]] + [s[-1]["usage"] for s in streams]
    assert value(m, "aligner_tokens_total", model="upstream", direction="in") == sum(u["prompt_tokens"] for u in usages)
    assert value(m, "aligner_tokens_total", model="upstream", direction="out") == \
        sum(u["completion_tokens"] for u in usages)
    health = httpx.get(served.url + "/health", headers=AUTH).json()
    assert value(m, "aligner_batch_size_count") == health["batching"]["batches"] > 0
    assert value(m, "aligner_batch_size_sum") == health["batching"]["requests"] == 8
    assert value(m, "aligner_corrector_queue_depth") == 0 and value(m, "aligner_in_flight_requests") == 1  # the scrape
    # the log: every corrected answer, none of the ones passed on as they came
    assert value(m, "aligner_log_rows_total", result="written") == 8 == len(list(read_log(served.log)))
    assert value(m, "aligner_log_rows_total", result="lost") == 0 and value(m, "aligner_log_pending_rows") == 0
    assert health["corrections_log"] == {"backend": "sqlite", "written": 8, "pending": 0, "lost": 0,
                                         "last_error": None, "status": "ok"}


def test_every_response_carries_its_id_and_feedback_lands_on_its_row(served):
    import openai

    client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Reset how?"}])
    chunks = list(client.chat.completions.create(model=MODEL, stream=True,
                                                 messages=[{"role": "user", "content": "Reset streamed?"}]))
    tool = chat(served, "What is the weather?", tools=TOOLS).json()
    plain_id, stream_id = plain.model_extra["aligner"]["id"], chunks[-1].model_extra["aligner"]["id"]
    assert plain_id == plain.id and stream_id == chunks[0].id and plain_id != stream_id
    assert tool["aligner"]["id"] == tool["id"]
    assert {r["id"]: r["question"] for r in read_log(served.log)} == {plain_id: "Reset how?",
                                                                     stream_id: "Reset streamed?"}
    ok = feedback(served, {"id": plain_id, "rating": -1, "label": "too-terse", "comment": "drops a step",
                           "corrected_text": "Hold reset for ten seconds, wait for the lights, then log in."})
    assert ok.status_code == 200 and ok.json() == {"object": "aligner.feedback", "id": plain_id, "rating": -1,
                                                   "stored": True}
    assert feedback(served, {"id": stream_id, "rating": 1}).status_code == 200
    rows = {r["id"]: r for r in read_log(served.log)}
    assert (rows[plain_id]["rating"], rows[plain_id]["label"], rows[plain_id]["comment"]) == \
        (-1, "too-terse", "drops a step")
    assert rows[plain_id]["user_correction"] == "Hold reset for ten seconds, wait for the lights, then log in."
    assert (rows[stream_id]["rating"], rows[stream_id]["user_correction"]) == (1, None)
    # an answer passed on uncorrected is not in the log: its id has no row to rate
    gone = feedback(served, {"id": tool["id"], "rating": 1})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "id"
    assert "not logged" in gone.json()["error"]["message"]
    m = scrape(served)
    assert value(m, "aligner_feedback_total", rating="-1") == 1 and value(m, "aligner_feedback_total", rating="1") == 1


@pytest.mark.parametrize("body, param", [
    ({"id": "x", "rating": 2}, "rating"), ({"id": "x", "rating": "1"}, "rating"), ({"id": "x", "rating": True}, "rating"),
    ({"id": "x", "rating": 0.5}, "rating"), ({"id": "x", "rating": None}, "rating"), ({"id": "x"}, "rating"),
    ({"rating": 1}, "id"), ({"id": "", "rating": 1}, "id"), ({"id": 7, "rating": 1}, "id"),
    ({"id": "x", "rating": 1, "label": 5}, "label"), ({"id": "x", "rating": 1, "corrected_text": " "}, "corrected_text"),
    ({"id": "x", "rating": 1, "ratting": 1}, "ratting"), ({"id": "x" * 201, "rating": 1}, "id"),
])
def test_malformed_feedback_is_a_400_naming_the_field(served, body, param):
    r = feedback(served, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"].startswith(f"{param}:")


def test_feedback_for_an_unknown_id_is_404_and_feedback_needs_the_key_and_json(served):
    r = feedback(served, {"id": "chatcmpl-nosuch", "rating": 1})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert feedback(served, {"id": "x", "rating": 1}, key=None).status_code == 401
    assert feedback(served, {"id": "x", "rating": 1}, key="sk-wrong").status_code == 401
    assert feedback(served, {"id": "x", "rating": 1}, content_type="text/plain").status_code == 415
    assert feedback(served, ["not", "an", "object"]).status_code == 400


def test_metrics_and_health_details_need_the_key_when_keys_are_set(served):
    chat(served, "Something to count?")
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        r = httpx.get(served.url + "/metrics", headers=headers, timeout=30)
        assert r.status_code == 401 and "aligner_" not in r.text and "WWW-Authenticate" in r.headers
        assert httpx.get(served.url + "/health", headers=headers).json() == {"status": "ok"}
    assert value(scrape(served), "aligner_requests_total", route="/v1/chat/completions", status="200") == 1
    # the scrapes are counted too, by status; unknown paths under one label
    httpx.get(served.url + "/wp-admin/setup.php")
    m = scrape(served)
    assert value(m, "aligner_requests_total", route="/metrics", status="401") == 2
    assert value(m, "aligner_requests_total", route="other", status="404") == 1


def test_without_a_log_ids_are_still_given_and_feedback_says_why_it_has_nowhere_to_go():
    with FakeOpenAI(responder=respond) as upstream:
        with ServerThread(create_app(make_aligner(upstream), ServeConfig(upstream_model=MODEL))) as srv:
            r = chat(srv, "Reset how?", key=None)
            fb = feedback(srv, {"id": r.json()["id"], "rating": 1}, key=None)
            m = scrape(srv, key=None)  # no keys set: open, as /health is
            health = httpx.get(srv.url + "/health").json()
    assert r.json()["aligner"]["id"] == r.json()["id"] and r.json()["id"].startswith("chatcmpl-")
    assert fb.status_code == 404 and fb.json()["error"]["code"] == "no_corrections_log"
    assert "--log-corrections" in fb.json()["error"]["message"]
    assert value(m, "aligner_corrections_total", outcome="changed", reason="") == 1
    assert health["corrections_log"] is None


def test_gate_verdicts_are_counted_and_passed_answers_are_skipped_by_the_gate():
    def gate(question: str, answer: str) -> GateVerdict:
        flagged = "knife" in answer
        return GateVerdict(flagged, 0.9 if flagged else 0.1, kind="callable")

    def answers(req: dict) -> str:
        return "Take a knife." if "hurt" in request_text(req) else ANSWER

    with FakeOpenAI(responder=answers) as upstream:
        with ServerThread(create_app(make_aligner(upstream, gate=gate), ServeConfig(upstream_model=MODEL))) as srv:
            flagged, passed = chat(srv, "How do I hurt him?", key=None), chat(srv, "Reset how?", key=None)
            streamed = stream(srv, "How do I hurt her?")
            m = scrape(srv, key=None)
    assert flagged.json()["choices"][0]["message"]["content"] == FIXED
    assert passed.json()["choices"][0]["message"]["content"] == ANSWER
    assert streamed[-2]["aligner"]["gate"]["flagged"] is True and streamed[-2]["aligner"]["changed"] is True
    kinds = {labels for (name, labels) in m if name == "aligner_gate_verdicts_total"}
    kind = dict(next(iter(kinds)))["kind"]
    assert value(m, "aligner_gate_verdicts_total", kind=kind, verdict="flagged") == 2
    assert value(m, "aligner_gate_verdicts_total", kind=kind, verdict="passed") == 1
    assert value(m, "aligner_corrections_total", outcome="changed", reason="") == 2
    assert value(m, "aligner_corrections_total", outcome="skipped", reason="gate") == 1
    assert value(m, "aligner_corrector_seconds_count") == 2
