"""The ``moderation`` gate against a real OpenAI-protocol server speaking ``/v1/moderations``
(``tests/fake_openai.py`` on 127.0.0.1): verdict mapping, one request per batch, 429 / 5xx / timeout
through the transport layer's retries, and the Aligner's on-error policy once retries run out."""
from __future__ import annotations

import asyncio

import pytest

from aligner import Aligner
from aligner.contracts.errors import UpstreamError, UpstreamTimeout
from aligner.gates import load_gate
from aligner.gates.moderation import ModerationGate
from aligner.transport.retry import RetryPolicy
from fake_openai import MODERATIONS
from gate_helpers import REFUSAL, RecordingCorrector

FAST = dict(max_retries=2, initial_backoff=0.01, max_backoff=0.05, jitter=0.0)
SAFE = ("How do I bake bread?", "Mix flour, water, salt and yeast.")
UNSAFE = ("How do I hurt him?", "Take a knife and hit them where it hurts.")


def gate_for(srv, **kw) -> ModerationGate:
    return load_gate(f"moderation:{srv.base_url}", retry=RetryPolicy(**{**FAST, "timeout": kw.pop("timeout", 5.0)}), **kw)


def test_spec_forms_resolve_to_the_moderation_kind(fake_openai):
    assert isinstance(load_gate(fake_openai.base_url), ModerationGate)
    g = load_gate(f"moderation:{fake_openai.base_url}")
    assert g.http.base_url == fake_openai.base_url and g.model == "omni-moderation-latest"
    assert load_gate("moderation").http.base_url == "https://api.openai.com/v1"


def test_category_scores_map_onto_the_verdict_and_a_batch_is_one_request(fake_openai):
    gate = gate_for(fake_openai)
    verdicts = gate.verdict_batch([SAFE, UNSAFE, ("q", "I will steal it and hack the till.")])
    assert [v.flagged for v in verdicts] == [False, True, True]
    assert verdicts[1].categories == ["violence"] and verdicts[1].score == pytest.approx(0.95)
    assert sorted(verdicts[2].categories) == ["illicit"] and verdicts[0].score == pytest.approx(0.02)
    assert all(v.kind == "moderation" and v.severity is None for v in verdicts)
    assert fake_openai.count(MODERATIONS) == 1
    body = fake_openai.last_body(MODERATIONS)
    # only the answers are moderated: a refusal of a harmful question is safe whatever was asked
    assert body == {"model": "omni-moderation-latest", "input": [SAFE[1], UNSAFE[1], "I will steal it and hack the till."]}


def test_a_threshold_replaces_the_endpoints_own_flag(fake_openai):
    fake_openai.moderator = lambda text: {"violence": 0.3 if "knife" in text else 0.01, "hate": 0.001}
    assert gate_for(fake_openai).verdict(*UNSAFE).flagged is False  # the endpoint flags at 0.5
    strict = gate_for(fake_openai, threshold=0.25).verdict(*UNSAFE)
    assert strict.flagged is True and strict.categories == ["violence"] and strict.score == pytest.approx(0.3)


def test_429_with_retry_after_and_500_are_retried_then_the_verdict_comes(fake_openai):
    fake_openai.fail_next(429, retry_after=0.01, path=MODERATIONS)
    fake_openai.fail_next(500, path=MODERATIONS)
    gate = gate_for(fake_openai)
    assert gate.verdict(*UNSAFE).flagged is True
    assert fake_openai.count(MODERATIONS) == 3 and gate.stats.retries == 2 and gate.stats.failures == 0


def test_async_verdicts_retry_the_same_way(fake_openai):
    fake_openai.fail_next(503, path=MODERATIONS)
    gate = gate_for(fake_openai)
    verdicts = asyncio.run(gate.averdict_batch([SAFE, UNSAFE]))
    assert [v.flagged for v in verdicts] == [False, True] and fake_openai.count(MODERATIONS) == 2


def test_a_400_is_not_retried_and_names_the_gate(fake_openai):
    fake_openai.fail_next(400, message="unknown model", path=MODERATIONS)
    with pytest.raises(UpstreamError, match="gate: the moderation endpoint failed: HTTP 400.*unknown model"):
        gate_for(fake_openai).verdict(*SAFE)
    assert fake_openai.count(MODERATIONS) == 1


def test_a_hanging_endpoint_times_out_after_its_retries(fake_openai):
    fake_openai.fail_next("hang", times=3, path=MODERATIONS)
    gate = gate_for(fake_openai, timeout=0.3)
    with pytest.raises(UpstreamTimeout, match="gate: .*still failing after 3 attempts"):
        gate.verdict(*SAFE)
    assert fake_openai.count(MODERATIONS) == 3


@pytest.mark.parametrize("policy, corrected", [("correct", True), ("pass", False)])
def test_on_error_policy_when_the_endpoint_keeps_failing(fake_openai, policy, corrected):
    rec = RecordingCorrector()
    fake_openai.fail_next(500, times=3, path=MODERATIONS)  # the first call's three attempts
    al = Aligner(None, rec, gate=gate_for(fake_openai), gate_on_error=policy)
    c = al.correct(*SAFE)
    assert c.gate.flagged is corrected and c.gate.kind == "moderation" and c.gate.score is None
    assert "HTTP 500" in c.gate.error and (c.correction == REFUSAL) is corrected
    assert len(rec.prompts) == int(corrected)
    # the endpoint is back: the next answers are judged by it again
    out = al.correct_batch([SAFE[0], UNSAFE[0]], [SAFE[1], UNSAFE[1]], progress=False)
    assert [x.gate.flagged for x in out] == [False, True] and not any(x.gate.error for x in out)
    assert [x.correction for x in out] == [SAFE[1], REFUSAL]


def test_on_error_raise_and_the_async_path(fake_openai):
    fake_openai.fail_next("hang", times=3, path=MODERATIONS)
    al = Aligner(None, RecordingCorrector(), gate=gate_for(fake_openai, timeout=0.2), gate_on_error="raise")
    with pytest.raises(UpstreamTimeout, match="gate:"):
        asyncio.run(al.acorrect(*SAFE))
    fake_openai.fail_next(500, times=3, path=MODERATIONS)
    passing = Aligner(None, RecordingCorrector(), gate=gate_for(fake_openai), gate_on_error="pass")
    c = asyncio.run(passing.acorrect(*UNSAFE))
    assert c.correction == UNSAFE[1] and c.gate.flagged is False and c.gate.error
