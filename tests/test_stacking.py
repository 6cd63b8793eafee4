"""Stacked correctors (aligner.correctors.stack): applied in order, each step recorded on the
Correction and in meta(); through the CLI, ``aligner serve``, ``aligner generate`` and the demo."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from aligner import Aligner, ConfigError
from aligner.correctors.stack import StackedCorrector, step_edits

GREEDY = {"max_new_tokens": 10, "fallback": False}
Q, A = "How do I bake bread?", "Mix flour and water, then bake it."


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_causal_path) -> tuple[str, str]:
    """Two different tiny correctors (another seed, another template)."""
    from aligner.train.tiny import make_tiny_corrector
    from conftest import corpus_texts

    other = make_tiny_corrector(tmp_path_factory.mktemp("tiny-b"), corpus_texts(), "causal", context=512,
                                template="qac", init_scale=10.0, seed=7)
    return str(tiny_causal_path), str(other)


def test_stages_apply_in_order_and_each_step_is_recorded(pair):
    a, b = pair
    stack = Aligner(None, [a, b], decoding=GREEDY)
    assert isinstance(stack.corrector, StackedCorrector)
    c = stack.correct(Q, A)
    first = Aligner(None, a, decoding=GREEDY).correct(Q, A)
    second = Aligner(None, b, decoding=GREEDY).correct(Q, first.correction)
    assert [s.text for s in c.steps] == [first.correction, second.correction]
    assert c.correction == second.correction and c.answer == A
    assert [s.corrector for s in c.steps] == [a, b] and [s.template for s in c.steps] == ["aligner-v1.0", "qac"]
    assert c.corrector == f"{a} > {b}" and c.template == "aligner-v1.0 > qac"
    assert all(s.timings["corrector"] > 0 and not s.fallback for s in c.steps)
    meta = c.meta()
    assert [s["text"] for s in meta["steps"]] == [first.correction, second.correction]
    assert meta["steps"][0]["corrector"] == a and meta["steps"][1]["fallback"] is False
    assert "steps" in c.to_dict() and "steps" not in first.to_dict() and "steps" not in first.meta()
    # the other order is another stack
    flipped = Aligner(None, [b, a], decoding=GREEDY).correct(Q, A)
    assert flipped.steps[0].text == Aligner(None, b, decoding=GREEDY).correct(Q, A).correction


def test_a_step_that_falls_back_hands_its_input_on(pair, tmp_path):
    from fixed_tiny import fixed_tiny

    looping = str(fixed_tiny(tmp_path / "loops", init_scale=1.0))  # writes ':' for ever: the guard stops it
    guarded = None  # the corrector's own decoding: guarded, capped relative to the answer
    c = Aligner(None, [looping, pair[0]], decoding=guarded).correct(Q, A)
    assert c.steps[0].fallback and c.steps[0].fallback_reason and c.steps[0].text == A
    assert c.steps[1].text == Aligner(None, pair[0], decoding=guarded).correct(Q, A).correction
    assert c.fallback == c.steps[1].fallback  # the stack falls back only when every step did
    both = Aligner(None, [looping, looping], decoding=guarded).correct(Q, A)
    assert both.fallback and both.correction == A and both.fallback_reason == both.steps[-1].fallback_reason
    assert [s["fallback"] for s in both.meta()["steps"]] == [True, True]


def test_stream_batch_and_async_agree_with_correct(pair):
    import asyncio

    stack = Aligner(None, list(pair), decoding=GREEDY)
    one = stack.correct(Q, A)
    stream = stack.stream(Q, A)
    shown = "".join(stream)
    assert shown == one.correction and [s.text for s in stream.correction.steps] == [s.text for s in one.steps]
    batch = stack.correct_batch([Q, "Is tea healthy?"], [A, "Yes, in moderation."], progress=False)
    assert batch[0].correction == one.correction and len(batch[1].steps) == 2

    async def run():
        return await stack.acorrect(Q, A), await stack.astream(Q, A).collect()

    got, streamed = asyncio.run(run())
    assert got.correction == streamed.correction == one.correction


def test_an_empty_list_is_a_clear_error_and_one_corrector_is_no_stack(pair):
    with pytest.raises(ConfigError, match="corrector.*empty list") as err:
        Aligner(None, [])
    assert "Fix:" in str(err.value)
    assert not isinstance(Aligner(None, [pair[0]]).corrector, StackedCorrector)


def test_cli_takes_the_corrector_several_times(pair):
    a, b = pair
    cmd = [sys.executable, "-m", "aligner", "correct", Q, "--answer", A, "--corrector", a, "--corrector", b,
           "--max-new-tokens", "10"]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    stack = Aligner(None, [a, b], decoding={"max_new_tokens": 10}).correct(Q, A)
    assert [s["text"] for s in row["steps"]] == [s.text for s in stack.steps]
    assert row["correction"] == stack.correction
    diff = subprocess.run([*cmd, "--diff"], capture_output=True, text=True, timeout=300)
    assert diff.returncode == 0 and "step 1 " in diff.stderr and "step 2 " in diff.stderr


def test_serve_batches_each_stage_and_serves_the_steps(pair, fake_openai):
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    cfg = ServeConfig(upstream=fake_openai.base_url, upstream_model="fake-model", corrector=list(pair),
                      max_new_tokens=10)
    here = Aligner(None, list(pair), decoding=cfg.decoding())
    with ServerThread(create_app(cfg)) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=120,
                       json={"model": "fake-model", "messages": [{"role": "user", "content": Q}]})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = here.correct(Q, body["aligner"]["original"])
        assert body["choices"][0]["message"]["content"] == expected.correction
        assert [s["text"] for s in body["aligner"]["steps"]] == [s.text for s in expected.steps]
        health = httpx.get(srv.url + "/health").json()
        assert [s["requests"] for s in health["batching_stages"]] == [1, 1]  # each stage batched its own row


def test_generate_writes_each_step(pair, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"question": Q, "answer": A}) + "\n")
    out = tmp_path / "out.jsonl"
    a, b = pair
    r = subprocess.run([sys.executable, "-m", "aligner", "generate", "--prompts", str(prompts), "--out", str(out),
                        "--corrector", a, "--corrector", b, "--max-new-tokens", "10", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text().splitlines()[0])
    stack = Aligner(None, [a, b], decoding={"max_new_tokens": 10}).correct(Q, A)
    assert [s["text"] for s in row["steps"]] == [s.text for s in stack.steps] and row["correction"] == stack.correction
    assert json.loads(Path(f"{out}.meta.json").read_text())["settings"]["corrector"] == [a, b]


def test_the_demo_shows_each_steps_edits(pair):
    pytest.importorskip("gradio")
    from aligner.demo.page import BUILTIN, builtin_upstream, create_demo

    stack = Aligner(None, list(pair), decoding=GREEDY)
    demo = create_demo(stack)
    try:
        outputs = list(demo.ask(Q, BUILTIN))
    finally:
        demo.close()
    final = outputs[-1]
    c = stack.correct(Q, builtin_upstream(Q))
    assert final[1] == c.correction
    html = final[5]
    assert html.count('class="step"') == 2 and 'id="step-1"' in html and 'id="step-2"' in html
    for step, given, made in step_edits(c):
        assert step.corrector in html
