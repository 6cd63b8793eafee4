"""The gate in front of the corrector (issue 24): routing, the contract, the registry, bad input.

Routing is counted by a real corrector subclass that records every prompt it is given
(``gate_helpers.RecordingCorrector``): a flagged answer reaches it and comes back corrected, an
unflagged one never reaches it and comes back unchanged — sync, async, batched and streamed.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aligner import Aligner
from aligner.contracts.errors import AlignerError, ConfigError
from aligner.gates import Gate, GateVerdict, Judgement, load_gate
from aligner.gates.base import check_min_severity
from aligner.core.options import AlignerOptions
from aligner.contracts.registry import GATES
from gate_helpers import REFUSAL, RecordingCorrector, unsafe_words

SAFE = [("How do I bake bread?", "Mix flour, water, salt and yeast, then bake it at 220 C."),
        ("How do I sleep better?", "Keep a regular bedtime and a dark, cool room.")]
UNSAFE = [("How do I hurt him?", "Hide a knife in your coat and wait behind the station."),
          ("How do I make a bomb?", "Pack the bomb charge into a pressure cooker.")]


def routed(corrections, corrector):
    """(answers the corrector saw, corrections whose text changed) — the two must be the flagged ones."""
    return ([c.answer for c in corrections if corrector.saw(c.answer)],
            [c.answer for c in corrections if c.correction != c.answer])


def test_sync_one_at_a_time_flagged_are_corrected_and_unflagged_never_reach_the_corrector():
    rec = RecordingCorrector()
    al = Aligner(None, rec, gate=unsafe_words)
    out = [al.correct(q, a) for q, a in SAFE + UNSAFE]
    assert len(rec.prompts) == 2  # one corrector call per flagged answer, none for the others
    assert routed(out, rec) == ([a for _, a in UNSAFE], [a for _, a in UNSAFE])
    for c, flagged in zip(out, [False, False, True, True]):
        assert c.gate.flagged is flagged and c.gate.kind == "callable" and c.corrected is flagged
        assert c.correction == (REFUSAL if flagged else c.answer)
        assert c.timings["corrector"] == 0.0 if not flagged else c.timings["corrector"] > 0.0
        assert c.timings["total"] >= c.timings["gate"] >= 0.0
        assert c.meta()["gate"] == c.gate.to_dict() and c.to_dict()["gate"]["flagged"] is flagged


def test_batch_sends_only_the_flagged_answers_to_the_corrector_and_keeps_input_order():
    rec = RecordingCorrector()
    pairs = [SAFE[0], UNSAFE[0], SAFE[1], UNSAFE[1]] * 3
    al = Aligner(None, rec, gate=unsafe_words, batch_size=4)
    out = al.correct_batch([q for q, _ in pairs], [a for _, a in pairs], progress=False)
    assert [c.answer for c in out] == [a for _, a in pairs]
    assert len(rec.prompts) == 6 and all(any(u in p for _, u in UNSAFE) for p in rec.prompts)
    assert [c.gate.flagged for c in out] == [False, True, False, True] * 3
    assert [c.correction for c in out] == [a if not unsafe_words(q, a) else REFUSAL for q, a in pairs]


def test_async_one_and_batch_route_the_same_way():
    rec = RecordingCorrector()
    al = Aligner(None, rec, gate=unsafe_words)

    async def run():
        one = [await al.acorrect(q, a) for q, a in SAFE + UNSAFE]
        many = await al.acorrect_batch([q for q, _ in SAFE + UNSAFE], [a for _, a in SAFE + UNSAFE])
        return one, many

    one, many = asyncio.run(run())
    assert len(rec.prompts) == 4
    for out in (one, many):
        assert [c.correction for c in out] == [a for _, a in SAFE] + [REFUSAL, REFUSAL]
        assert [c.gate.flagged for c in out] == [False, False, True, True]


def test_async_gate_functions_are_awaited():
    rec = RecordingCorrector()

    async def gate(q, a):
        await asyncio.sleep(0)
        return unsafe_words(q, a)

    al = Aligner(None, rec, gate=gate)
    out = asyncio.run(al.acorrect_batch([q for q, _ in SAFE + UNSAFE], [a for _, a in SAFE + UNSAFE]))
    assert [c.gate.flagged for c in out] == [False, False, True, True] and len(rec.prompts) == 2
    assert al.correct(*UNSAFE[0]).correction == REFUSAL  # the sync path runs it to completion


def test_streamed_unflagged_answer_is_the_answer_itself_and_flagged_ones_stream_the_correction():
    rec = RecordingCorrector()
    al = Aligner(None, rec, gate=unsafe_words)
    q, a = SAFE[0]
    s = al.stream(q, a)
    assert list(s) == [a] and s.correction.correction == a and s.correction.gate.flagged is False
    assert rec.prompts == []
    q, a = UNSAFE[0]
    s = al.stream(q, a)
    pieces = list(s)
    assert len(pieces) > 1 and "".join(pieces).strip() == REFUSAL.strip()
    assert s.correction.gate.flagged is True and s.correction.correction == REFUSAL and len(rec.prompts) == 1

    async def astream(q, a):
        st = al.astream(q, a)
        return [p async for p in st], st.correction

    pieces, c = asyncio.run(astream(*SAFE[1]))
    assert pieces == [SAFE[1][1]] and c.gate.flagged is False and len(rec.prompts) == 1
    pieces, c = asyncio.run(astream(*UNSAFE[1]))
    assert "".join(pieces).strip() == REFUSAL.strip() and c.gate.flagged is True and len(rec.prompts) == 2


def test_without_a_gate_every_answer_is_corrected_and_rows_keep_their_keys():
    rec = RecordingCorrector()
    out = Aligner(None, rec).correct_batch([q for q, _ in SAFE], [a for _, a in SAFE], progress=False)
    assert len(rec.prompts) == 2 and all(c.gate is None and c.corrected for c in out)
    assert "gate" not in out[0].to_dict() and "gate" not in out[0].meta() and "gate" not in out[0].timings


# -- a gate that cannot answer: the declared policy ------------------------------------------------
def broken_gate(question, answer):
    raise RuntimeError("moderation backend down")


@pytest.mark.parametrize("policy, corrected", [("correct", True), ("pass", False)])
def test_on_error_policy_decides_and_the_verdict_records_the_error(policy, corrected):
    rec = RecordingCorrector()
    al = Aligner(None, rec, gate=broken_gate, gate_on_error=policy)
    c = al.correct(*SAFE[0])
    assert c.gate.flagged is corrected and c.gate.score is None and "moderation backend down" in c.gate.error
    assert (c.correction == REFUSAL) is corrected and len(rec.prompts) == int(corrected)
    out = al.correct_batch([q for q, _ in SAFE], [a for _, a in SAFE], progress=False)
    assert all(x.gate.error and x.gate.flagged is corrected for x in out)


def test_on_error_raise_raises_an_error_naming_the_gate():
    al = Aligner(None, RecordingCorrector(), gate=broken_gate, gate_on_error="raise")
    with pytest.raises(AlignerError, match="gate: the callable gate failed: RuntimeError: moderation backend down"):
        al.correct(*SAFE[0])


def test_a_gate_function_returning_something_else_is_an_error_naming_the_gate():
    al = Aligner(None, RecordingCorrector(), gate=lambda q, a: "yes", gate_on_error="raise")
    with pytest.raises(AlignerError, match="gate: the gate function .* returned str"):
        al.correct(*SAFE[0])


def test_a_gate_function_may_return_a_verdict_and_min_severity_applies_to_it():
    def gate(q, a):
        sev = "severe" if "bomb" in a else "minor" if "knife" in a else "safe"
        return GateVerdict(sev != "safe", 0.9 if sev != "safe" else 0.1, ["Violence"] if sev != "safe" else [], sev)

    rec = RecordingCorrector()
    out = Aligner(None, rec, gate=gate, gate_min_severity="moderate").correct_batch(
        [q for q, _ in SAFE + UNSAFE], [a for _, a in SAFE + UNSAFE], progress=False)
    assert [c.gate.flagged for c in out] == [False, False, False, True]  # the minor one passes
    assert out[3].gate.categories == ["Violence"] and out[3].gate.severity == "severe" and len(rec.prompts) == 1


# -- the contract and the registry -----------------------------------------------------------------
class LengthGate(Gate):
    """A kind in a few lines: the score is the answer's length, capped at 1."""

    kind = "length"
    spec_prefix = "length:"

    def __init__(self, limit, **kw):
        super().__init__(**{k: v for k, v in kw.items() if k in ("threshold", "min_severity")})
        self.limit = int(limit)
        self.calls = []

    def judge(self, pairs):
        self.calls.append(len(pairs))
        return [Judgement(min(1.0, len(a) / self.limit)) for _, a in pairs]


def test_a_new_kind_needs_only_judge_and_gets_threshold_batching_and_async_from_the_base():
    gate = LengthGate(100, threshold=0.5)
    gate.batch_size = 3
    pairs = [("q", "x" * n) for n in (10, 60, 20, 90, 49, 50, 5)]
    verdicts = gate.verdict_batch(pairs)
    assert [v.flagged for v in verdicts] == [False, True, False, True, False, True, False]
    assert gate.calls == [3, 3, 1] and all(v.kind == "length" and v.time >= 0 for v in verdicts)
    assert [v.flagged for v in asyncio.run(gate.averdict_batch(pairs))] == [v.flagged for v in verdicts]
    assert load_gate(gate, threshold=0.95).verdict("q", "x" * 90).flagged is False  # a copy, overridden
    assert gate.threshold == 0.5


def test_register_gate_decorator_makes_a_spec_resolve():
    GATES.register(LengthGate)
    try:
        g = load_gate("length:40", threshold=0.5)
        assert isinstance(g, LengthGate) and g.limit == 40
        rec = RecordingCorrector()
        c = Aligner(None, rec, gate="length:40", gate_threshold=0.9).correct("q", "a" * 39)
        assert c.gate.flagged is True and c.gate.kind == "length" and len(rec.prompts) == 1
    finally:
        GATES._classes.remove(LengthGate)


PLUGIN = '''
from aligner.gates import Gate, Judgement

class EveryOtherGate(Gate):
    kind = "every-other"
    spec_prefix = "every-other"

    def __init__(self, spec=None, **kw):
        super().__init__()

    def judge(self, pairs):
        return [Judgement(1.0 if i % 2 else 0.0) for i in range(len(pairs))]
'''
SCRIPT = '''
import json
from aligner import Aligner
from aligner.correctors.base import Corrector
class C(Corrector):
    def generate(self, prompts, d): return ["fixed" for _ in prompts]
    def stream_prompt(self, p, d): yield "fixed"
al = Aligner(None, C(), gate="every-other:x")
out = al.correct_batch(["q"] * 4, ["a1", "a2", "a3", "a4"], progress=False)
print(json.dumps([type(al.gate).__name__, [c.correction for c in out]]))
'''


def test_a_third_party_gate_registers_through_the_entry_point_group(tmp_path):
    (tmp_path / "mygate.py").write_text(PLUGIN)
    info = tmp_path / "mygate-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mygate\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[aligner.gates]\nevery-other = mygate:EveryOtherGate\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["EveryOtherGate", ["a1", "fixed", "a3", "fixed"]]


# -- bad input: each a clear error naming the field --------------------------------------------------
@pytest.mark.parametrize("value", [1.5, -0.1])
def test_a_threshold_outside_0_1_names_the_field(value):
    with pytest.raises(ConfigError, match=r"gate_threshold: must be in \[0, 1\]"):
        Aligner(None, RecordingCorrector(), gate=unsafe_words, gate_threshold=value)
    with pytest.raises(ConfigError, match=r"gate_threshold: must be in \[0, 1\]"):
        AlignerOptions(gate="demo", gate_threshold=value)


def test_a_cost_gate_threshold_is_a_cost_and_may_be_negative():
    AlignerOptions(gate="cost:some/model", gate_threshold=-2.5)  # no error: a cost, not a probability


@pytest.mark.parametrize("value", ["extreme", 4, "safe"])
def test_an_unknown_severity_names_the_field(value):
    with pytest.raises(ConfigError, match="gate_min_severity: unknown severity"):
        Aligner(None, RecordingCorrector(), gate=unsafe_words, gate_min_severity=value)
    with pytest.raises(ConfigError, match="gate_min_severity: unknown severity"):
        AlignerOptions(gate="demo", gate_min_severity=value)
    assert check_min_severity(2) == "moderate" and check_min_severity("Severe") == "severe"


@pytest.mark.parametrize("spec", ["no/such/gate-dir", "runs-that-do-not-exist", 42])
def test_a_gate_spec_that_resolves_to_nothing_names_the_field(spec):
    with pytest.raises(ConfigError, match="gate: no gate kind takes") as err:
        Aligner(None, RecordingCorrector(), gate=spec)
    assert "classifier:PATH" in str(err.value) and "moderation" in str(err.value)


def test_a_directory_that_is_no_gate_and_an_empty_spec_are_errors_naming_the_field(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 3}))
    with pytest.raises(ConfigError, match="gate: no gate kind takes"):
        load_gate(str(tmp_path))
    with pytest.raises(ConfigError, match="not a gate: its config.json has no 'aligner_gate'"):
        load_gate(f"classifier:{tmp_path}")
    with pytest.raises(ConfigError, match="gate: is empty"):
        load_gate("  ")
    with pytest.raises(ConfigError, match="gate_on_error: unknown policy"):
        Aligner(None, RecordingCorrector(), gate=unsafe_words, gate_on_error="ignore")


def test_a_kind_without_severity_refuses_a_minimum_severity():
    with pytest.raises(ConfigError, match="gate_min_severity: a moderation gate predicts no severity"):
        load_gate("moderation:http://127.0.0.1:9/v1", min_severity="severe")


def test_none_means_no_gate():
    assert load_gate(None) is None and load_gate("none") is None
    assert Aligner(None, RecordingCorrector(), gate="none").gate is None


# -- the cost kind: any num_labels=1 reward/cost model, read by eval's scorer ----------------------
@pytest.fixture(scope="module")
def cost_model(tmp_path_factory):
    """A num_labels=1 sequence-classification model saved whole (its head included), as a cost model is."""
    from transformers import BertConfig, BertForSequenceClassification

    from aligner.train.tiny import train_tokenizer

    tok = train_tokenizer([q + " " + a for q, a in SAFE + UNSAFE] * 3, vocab_size=300)
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256, num_labels=1, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("cost-model")
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_cost_model_gate_flags_when_the_cost_exceeds_the_threshold(cost_model):
    from aligner.runtime.scoring import SequenceScorer
    from aligner.gates.cost import CostGate

    pairs = SAFE + UNSAFE
    costs = SequenceScorer(str(cost_model), role="cost").score(pairs, progress=False)  # what aligner eval reads
    middle = sorted(costs)[1]
    for spec in (f"cost:{cost_model}", str(cost_model)):  # the prefix, or a directory holding num_labels=1
        gate = load_gate(spec, threshold=middle)
        assert isinstance(gate, CostGate) and gate.kind == "cost"
        verdicts = gate.verdict_batch(pairs)
        assert [v.score for v in verdicts] == pytest.approx(costs, abs=1e-5)
        assert [v.flagged for v in verdicts] == [c > middle for c in costs]
        assert sum(v.flagged for v in verdicts) == 2
    assert load_gate(f"cost:{cost_model}").threshold_for(None) == 0.0  # Safe-RLHF: cost > 0 is unsafe
    rec = RecordingCorrector()
    out = Aligner(None, rec, gate=f"cost:{cost_model}", gate_threshold=middle).correct_batch(
        [q for q, _ in pairs], [a for _, a in pairs], progress=False)
    assert len(rec.prompts) == 2 and [c.corrected for c in out] == [c > middle for c in costs]
    with pytest.raises(ConfigError, match="gate_min_severity: a cost gate predicts no severity"):
        load_gate(f"cost:{cost_model}", min_severity="minor")


def test_a_cost_gate_on_a_model_with_several_labels_names_the_gate(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from aligner.train.tiny import train_tokenizer

    tok = train_tokenizer(["some text to train on"] * 3, vocab_size=280)
    BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, num_labels=3)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="gate: .*num_labels=3"):
        load_gate(f"cost:{tmp_path}")
