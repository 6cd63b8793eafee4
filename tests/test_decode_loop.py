"""The lean decode loop and copy-aware speculative decoding (issue 15): greedy output token-identical
to transformers' ``generate`` and to itself without speculation — causal and seq2seq, batch 1 and
batched with padding, EOS mid-batch, an empty answer, drafts accepted in full, edited, rewritten
entirely — and streaming gives the same text. Real tiny models; no timing assertions."""
from __future__ import annotations

import pytest

from aligner.correctors import load_corrector
from aligner.runtime.decode_loop import greedy_decode
from aligner.contracts.decoding import DecodingConfig
from aligner.runtime.local_runtime import _RowStreamer
from aligner.contracts.rows import RowControl

PAIRS = [("How are you?", "I am fine, thanks."), ("What is 2+2?", "It is 5."),
         ("Tell me a joke", "Why did the chicken cross the road? To get to the other side."),
         ("Where is Paris?", "Paris is in France, on the Seine."), ("Anything?", "")]
NEW = 40


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def corrector(request, tiny_causal_path, tiny_seq2seq_path):
    path = tiny_causal_path if request.param == "causal" else tiny_seq2seq_path
    return load_corrector(str(path), decoding={"max_new_tokens": NEW, "fallback": False})


def _config(**kw) -> DecodingConfig:
    return DecodingConfig.from_any({"max_new_tokens": NEW, "fallback": False, **kw})


def _hf_ids(gen, prompts, eos=None):
    """transformers' greedy ``generate``: new token ids per row, up to and including EOS."""
    import torch

    enc = gen._encode(prompts)
    eos = gen.tokenizer.eos_token_id if eos is None else eos
    with torch.inference_mode():
        out = gen.model.generate(**enc, max_new_tokens=NEW, do_sample=False, eos_token_id=eos,
                                 pad_token_id=gen.tokenizer.pad_token_id)
    new = out[:, 1:] if gen.is_encoder_decoder else out[:, enc["input_ids"].shape[1]:]
    rows = []
    for r in new.tolist():
        cut = r.index(eos) + 1 if eos in r else len(r)
        rows.append(r[:cut])
    return rows


def _loop_ids(gen, prompts, *, copy=True, eos=None, sources=None, rows=None, streamer=None):
    enc = gen._encode(prompts)
    rows = rows or [RowControl() for _ in prompts]
    return greedy_decode(gen.model, gen.tokenizer, enc["input_ids"], enc["attention_mask"], rows,
                         max_new_tokens=NEW, eos_token_id=gen.tokenizer.eos_token_id if eos is None else eos,
                         pad_token_id=gen.tokenizer.pad_token_id, copy_draft=copy, sources=sources,
                         streamer=streamer)


class _Passes:
    """Counts the model's forward passes (a forward hook on the real model)."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_generate_texts_equal_transformers_with_and_without_speculation(corrector):
    gen = corrector.generator
    prompts = [corrector.render(q, a) for q, a in PAIRS]  # different lengths: padding; one empty answer
    hf = gen.generate(prompts, _config(engine="hf"))
    assert (gen._encode(prompts)["attention_mask"] == 0).any()  # rows really are padded
    for kw in ({"engine": "loop", "copy_draft": False}, {"engine": "loop"}, {}):
        assert gen.uses_loop(_config(**kw))
        assert gen.generate(prompts, _config(**kw)) == hf  # batched
        assert [gen.generate([p], _config(**kw))[0] for p in prompts] == hf  # batch 1
    assert any(hf) and len(set(hf)) == len(hf)


def test_eos_reached_mid_batch_stops_that_row_as_generate_does(corrector):
    gen = corrector.generator
    prompts = [corrector.render(q, a) for q, a in PAIRS[:4]]
    plain = _loop_ids(gen, prompts, copy=False)
    eos = plain[1][5]  # a token row 1 produces mid-way stands in for EOS
    hf = _hf_ids(gen, prompts, eos=eos)
    assert hf[1][-1] == eos and len(hf[1]) <= 6 < max(len(r) for r in hf)
    assert _loop_ids(gen, prompts, copy=False, eos=eos) == hf
    assert _loop_ids(gen, prompts, copy=True, eos=eos) == hf
    assert _loop_ids(gen, prompts, copy=True, eos=eos, sources=plain) == hf  # long drafts through EOS


def test_drafts_accepted_edited_or_rewritten_give_plain_greedy_output(corrector):
    """Per row: the draft is the row's own greedy output (all accepted), the same with an edit in
    the middle (rejected there, re-anchored after), tokens the model never writes (an answer the
    correction rewrites entirely), or the prompt. Rows of one batch accept different lengths."""
    gen = corrector.generator
    prompts = [corrector.render(q, a) for q, a in PAIRS[:4]]
    plain = _loop_ids(gen, prompts, copy=False)
    assert plain == _hf_ids(gen, prompts)
    edited = list(plain[1])
    edited[12:15] = [gen.tokenizer.unk_token_id] * 3
    other = [t for t in range(5, 5 + NEW) if t not in plain[2]]
    sources = [plain[0], edited, other, None]
    with _Passes(gen.model) as without:
        _loop_ids(gen, prompts, copy=False)
    with _Passes(gen.model) as spec:
        got = _loop_ids(gen, prompts, sources=sources)
    assert got == plain
    assert spec.n <= without.n  # the batch runs as long as its slowest (rewritten) row ...
    with _Passes(gen.model) as alone:
        assert _loop_ids(gen, prompts[:1], sources=[plain[0]]) == plain[:1]
    assert alone.n <= 8 < len(plain[0])  # ... a fully copied row takes a handful of passes
    with _Passes(gen.model) as copied:
        assert _loop_ids(gen, prompts[:2], sources=[plain[0], plain[1]]) == plain[:2]
    assert copied.n <= 8
    for i, p in enumerate(prompts):  # and batch 1 agrees
        assert _loop_ids(gen, [p], sources=[sources[i]]) == [plain[i]]


def test_per_row_caps_and_streaming_under_long_accepted_drafts(corrector):
    gen = corrector.generator
    prompts = [corrector.render(q, a) for q, a in PAIRS[:3]]
    plain = _loop_ids(gen, prompts, copy=False)
    rows = [RowControl(max_new_tokens=cap) for cap in (3, 17, None)]
    pieces: list[list[str]] = [[], [], []]
    for row, sink in zip(rows, pieces):
        row.on_text = sink.append
    streamer = _RowStreamer(gen.tokenizer, rows)
    got = _loop_ids(gen, prompts, sources=plain, rows=rows, streamer=streamer)
    streamer.close()
    for i, cap in enumerate((3, 17)):
        if len(plain[i]) > cap and rows[i].stop_reason != "eos":
            assert rows[i].stop_reason == "cap" and rows[i].steps == cap and got[i] == plain[i][:cap]
    assert got[2] == plain[2]
    for i in range(3):  # what was streamed is exactly the decoded row
        assert "".join(pieces[i]) == gen.tokenizer.decode(got[i], skip_special_tokens=True)


def test_stream_gives_the_batch_text_with_speculation(corrector):
    prompt = corrector.render(*PAIRS[2])
    text = corrector.generator.generate([prompt], _config())[0]
    assert "".join(corrector.generator.stream(prompt, _config())) == text
    assert text == corrector.generator.generate([prompt], _config(engine="hf"))[0]


def test_sampling_and_bad_engine_values():
    from aligner.contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="engine"):
        DecodingConfig(engine="fast")
    with pytest.raises(ConfigError, match="copy_draft"):
        DecodingConfig(copy_draft="yes")  # type: ignore[arg-type]


def test_sampling_falls_back_to_generate_and_loop_refuses_it(corrector):
    from aligner.contracts.errors import ConfigError

    gen = corrector.generator
    assert not gen.uses_loop(_config(do_sample=True, temperature=0.7))
    assert not gen.uses_loop(_config(engine="hf"))
    with pytest.raises(ConfigError, match="engine"):
        gen.uses_loop(_config(engine="loop", do_sample=True))


def test_int8_and_bf16_correctors_decode_through_the_loop_as_generate_does(tiny_causal_path):
    """The precision options load and decode; in their own precision the loop still equals
    transformers' generate (batch 1: int8 dynamic quantization scales activations per batch)."""
    from aligner.contracts.errors import ConfigError

    prompts = None
    for kw in ({"quantize": "int8"}, {"dtype": "bfloat16"}):
        corr = load_corrector(str(tiny_causal_path), decoding={"max_new_tokens": NEW, "fallback": False}, **kw)
        prompts = prompts or [corr.render(q, a) for q, a in PAIRS[:2]]
        for p in prompts:
            hf = corr.generator.generate([p], _config(engine="hf"))
            assert hf[0] and corr.generator.generate([p], _config()) == hf
    with pytest.raises(ConfigError, match="quantize"):
        load_corrector(str(tiny_causal_path), quantize="int4")


def test_drafts_of_a_wide_batch_are_cut_to_what_most_rows_use():
    """At batch > 4 a pass is as wide as its longest draft and costs about its width, so drafts are
    cut to the length 5 rows in 8 reach; the rows' tokens are kept, only shortened."""
    from aligner.runtime.decode_loop import _even_drafts

    drafts = [[1] * n for n in (0, 0, 2, 8, 8, 16, 64, 64)]
    assert [len(d) for d in _even_drafts(drafts)] == [0, 0, 2, 8, 8, 8, 8, 8]
    assert _even_drafts([[5, 6, 7], [8, 9]] * 3) == [[5, 6], [8, 9]] * 3
    assert _even_drafts([[], []]) == [[], []]


def test_int8_weight_only_corrector_decodes_batched_with_copy_drafts_as_generate_does(tiny_causal_path):
    """torchao's weight-only int8 keeps activations in the model's precision, so a pass does not
    depend on its batch: copy drafts stay on and the batched loop equals generate. Without torchao
    (it is the optional ``quant`` extra) the option is a ConfigError naming the extra."""
    import importlib.util

    from aligner.contracts.errors import ConfigError

    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(ConfigError, match=r"quantize: .*needs torchao.*aligner-kit\[quant\]"):
            load_corrector(str(tiny_causal_path), quantize="int8-weight")
        return
    corr = load_corrector(str(tiny_causal_path), decoding={"max_new_tokens": NEW, "fallback": False},
                          quantize="int8-weight")
    weight = corr.generator.model.model.layers[0].mlp.up_proj.weight
    assert "int8" in type(weight).__name__.lower() or getattr(weight, "dtype", None) == __import__("torch").int8
    assert not corr.generator._batch_dependent
    prompts = [corr.render(q, a) for q, a in PAIRS]
    gen = corr.generator
    assert _loop_ids(gen, prompts, copy=True) == _loop_ids(gen, prompts, copy=False) == _hf_ids(gen, prompts)
