"""Sampling through the project's local runtime keeps transformers' distribution (issue 15).

The lean loop is greedy only, so sampling runs in transformers' ``generate``: with the same seed
the project's path must give the very tokens ``generate`` gives, and the first sampled token's
frequencies must follow softmax(logits / temperature) restricted to the top k. Seeded, so every
run draws the same samples: the bounds below are checks of the distribution, not of luck.
"""
from __future__ import annotations

import pytest

from aligner.correctors import load_corrector
from aligner.contracts.decoding import DecodingConfig
from aligner.contracts.rows import RowControl

PROMPTS = ["How are you? I am fine, thanks.", "What is 2+2? It is 5.", "Where is Paris?"]


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def gen(request, tiny_causal_path, tiny_seq2seq_path):
    path = tiny_causal_path if request.param == "causal" else tiny_seq2seq_path
    return load_corrector(str(path)).generator


def _sampling(**kw) -> DecodingConfig:
    return DecodingConfig.from_any({"max_new_tokens": 12, "fallback": False, "do_sample": True,
                                    "temperature": 0.8, "top_p": 0.95, "top_k": 20, **kw})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeded_sampling_is_what_transformers_generate_samples(gen, seed):
    import torch

    decoding = _sampling()
    assert not gen.uses_loop(decoding)  # sampling stays with generate
    torch.manual_seed(seed)
    ours = gen.generate(PROMPTS, decoding, [RowControl() for _ in PROMPTS])
    enc = gen._encode(PROMPTS)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = gen.model.generate(**enc, max_new_tokens=12, do_sample=True, temperature=0.8, top_p=0.95, top_k=20,
                                 pad_token_id=gen.tokenizer.pad_token_id, eos_token_id=gen.tokenizer.eos_token_id)
    new = out[:, 1:] if gen.is_encoder_decoder else out[:, enc["input_ids"].shape[1]:]
    assert ours == gen.tokenizer.batch_decode(new, skip_special_tokens=True)


def test_sampling_samples(gen):
    """Different seeds give different texts: the path samples, it did not fall back to greedy."""
    import torch

    decoding = _sampling(temperature=1.5, top_k=0, top_p=1.0)
    texts = set()
    for seed in range(6):
        torch.manual_seed(seed)
        texts.add(tuple(gen.generate(PROMPTS, decoding, [RowControl() for _ in PROMPTS])))
    assert len(texts) > 1


def _distinct_top_k(gen, k: int):
    """A prompt whose k likeliest next tokens decode to k distinct, whole texts (so the sampled
    texts name the sampled tokens), with those token ids' logits."""
    import torch

    candidates = PROMPTS + [f"Question {i}: name a colour. Answer: blue {i}." for i in range(40)]
    for prompt in candidates:
        enc = gen._encode([prompt])
        with torch.inference_mode():
            if gen.is_encoder_decoder:
                start = torch.full((1, 1), gen.model.config.decoder_start_token_id)
                logits = gen.model(**enc, decoder_input_ids=start).logits[0, -1]
            else:
                logits = gen.model(**enc).logits[0, -1]
        top = torch.topk(logits, k)
        texts = [gen.tokenizer.decode([t], skip_special_tokens=True) for t in top.indices.tolist()]
        if len(set(texts)) == k and all(t and "\ufffd" not in t for t in texts):
            return prompt, texts, top.values
    pytest.fail("no prompt whose top tokens decode distinctly")


@pytest.mark.parametrize("temperature", [0.7, 2.0])
def test_first_sampled_token_follows_the_tempered_top_k_distribution(gen, temperature):
    import torch

    k, n = 5, 16000
    prompt, texts, top_logits = _distinct_top_k(gen, k)
    expected = dict(zip(texts, torch.softmax(top_logits / temperature, dim=-1).tolist()))
    torch.manual_seed(1234)
    decoding = _sampling(max_new_tokens=1, temperature=temperature, top_k=k, top_p=1.0)
    got = gen.generate([prompt] * n, decoding, [RowControl() for _ in range(n)])
    seen = {t: got.count(t) / n for t in set(got)}
    assert set(seen) <= set(expected), (seen, expected)  # nothing outside the top k
    for text, p in expected.items():
        # binomial standard deviation at n = 16000 is at most 0.004: 0.02 is five of them (sampling
        # the tiny causal model at temperature 1.0 instead of 0.7 moves its top token by ~0.04)
        assert abs(seen.get(text, 0.0) - p) < 0.02, (text, seen.get(text, 0.0), p)
