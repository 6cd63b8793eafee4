"""HFUpstream: a local transformers causal LM as the upstream (``hf:PATH_OR_HUB_ID`` or a loaded
model), on the tiny real model of tests/conftest.py. Which strings are paths and which hub ids is
tested in tests/test_hub.py.
"""
from __future__ import annotations

import asyncio

import pytest

from aligner.adapters import HFUpstream, resolve_upstream
from aligner.contracts.errors import ConfigError

Q = "How do I bake bread?"


async def acollect(agen) -> list[str]:
    return [p async for p in agen]


@pytest.fixture(scope="module")
def hf_up(tiny_causal_path):
    return HFUpstream(f"{tiny_causal_path}", decoding={"max_new_tokens": 16})


def test_hf_answer_equals_stream_greedy(hf_up):
    whole = hf_up.answer(Q)
    pieces = list(hf_up.stream(Q))
    assert whole and len(pieces) > 1
    assert "".join(pieces) == whole


async def test_hf_async_parity(hf_up):
    whole = hf_up.answer(Q)
    assert await hf_up.aanswer(Q) == whole
    assert "".join([p async for p in hf_up.astream(Q)]) == whole


def test_hf_stop_cuts_answer_and_stream_alike(hf_up):
    whole = hf_up.answer(Q)
    stop = whole[len(whole) // 2: len(whole) // 2 + 2]
    assert stop.strip()
    cut = hf_up.answer(Q, stop=[stop])
    assert cut == whole[:whole.index(stop)] and len(cut) < len(whole)
    assert "".join(hf_up.stream(Q, stop=stop)) == cut


def test_hf_accepts_the_params_the_proxy_forwards(hf_up):
    # aligner serve passes these OpenAI request fields straight to upstream.aanswer
    short = hf_up.answer(Q, max_tokens=2, seed=1, frequency_penalty=0.5, presence_penalty=0.0, top_p=1.0)
    assert len(short) < len(hf_up.answer(Q))
    assert hf_up.answer(Q, temperature=0) == hf_up.answer(Q)
    assert hf_up.answer(Q, temperature=0.7, max_completion_tokens=4)  # sampling, no error


def test_hf_unknown_param_is_a_config_error_before_any_attempt(hf_up):
    attempts = hf_up.stats.attempts
    with pytest.raises(ConfigError) as info:
        hf_up.answer(Q, bogus_option=1)
    assert info.value.field == "decoding" and hf_up.stats.attempts == attempts


def test_hf_loaded_model_object_and_chat_template(tiny_causal_path, hf_up):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_path)
    same = HFUpstream(model, tok, decoding={"max_new_tokens": 16})
    assert same.answer(Q) == hf_up.answer(Q)
    assert same.prompt([{"role": "user", "content": Q}]) == f"User: {Q}\nAssistant:"

    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    chat = HFUpstream(model, tok, decoding={"max_new_tokens": 16})
    assert chat.prompt([{"role": "user", "content": Q}]) == f"<|user|>{Q}\n<|assistant|>"
    assert "".join(chat.stream(Q)) == chat.answer(Q)


def test_hf_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        HFUpstream(str(tmp_path / "no-such-model"))
    assert info.value.field == "upstream" and "Fix:" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        HFUpstream(str(tmp_path / "empty"))
    assert info.value.field == "upstream"


def test_hf_upstream_answer_stream_parity(tiny_causal_path):
    up = resolve_upstream(f"hf:{tiny_causal_path}", decoding={"max_new_tokens": 8})
    assert isinstance(up, HFUpstream)
    q = "How do I bake bread?"
    text = up.answer(q)
    assert text and "".join(up.stream(q)) == text
    assert asyncio.run(up.aanswer(q)) == text
    assert "".join(asyncio.run(acollect(up.astream(q)))) == text


def test_hf_upstream_from_a_loaded_model(tiny_causal_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_path)
    tok = AutoTokenizer.from_pretrained(tiny_causal_path)
    by_obj = resolve_upstream(model, decoding={"max_new_tokens": 6})
    assert isinstance(by_obj, HFUpstream)
    by_path = HFUpstream(str(tiny_causal_path), tokenizer=tok, decoding={"max_new_tokens": 6})
    assert by_obj.answer("Hi?") == by_path.answer("Hi?")


def test_hf_upstream_bad_path_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"upstream: .*missing.*Fix:"):
        resolve_upstream(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="upstream: 'hf:' needs a model"):
        resolve_upstream("hf:")
