"""Length-sorted buckets (issue 15): ``correct_batch`` hands the corrector batches of rows of
similar length and still returns every correction in input order, with the same text as one by one."""
from __future__ import annotations

import asyncio

from aligner import Aligner
from aligner.core.aligner import length_buckets
from aligner.correctors.base import Corrector

PAIRS = [("Q1", "a" * 90), ("Q2", "b"), ("Q3", "c" * 40), ("Q4", "d" * 5), ("Q5", "e" * 200), ("Q6", "f" * 41)]


class EchoCorrector(Corrector):
    """A corrector backend (as a plug-in would write one) that returns the answer of its prompt and
    records the batches it was given."""

    name = "echo"

    def __init__(self):
        super().__init__("{question}|{answer}")
        self.batches: list[list[str]] = []

    def generate(self, prompts, decoding):
        self.batches.append([p.split("|", 1)[0] for p in prompts])
        return [p.split("|", 1)[1] for p in prompts]

    def stream_prompt(self, prompt, decoding):
        yield prompt.split("|", 1)[1]


def test_buckets_group_similar_lengths_and_keep_ties_in_input_order():
    assert length_buckets(PAIRS, 2) == [[1, 3], [2, 5], [0, 4]]
    assert length_buckets(PAIRS, 4) == [[1, 3, 2, 5], [0, 4]]
    assert length_buckets([("q", "x")] * 5, 2) == [[0, 1], [2, 3], [4]]
    assert length_buckets([], 3) == []


def test_correct_batch_sees_sorted_batches_and_returns_input_order():
    for run in ("sync", "async"):
        corrector = EchoCorrector()
        aligner = Aligner(corrector=corrector, batch_size=2)
        qs, answers = [q for q, _ in PAIRS], [a for _, a in PAIRS]
        out = (aligner.correct_batch(qs, answers, progress=False) if run == "sync"
               else asyncio.run(aligner.acorrect_batch(qs, answers)))
        assert corrector.batches == [["Q2", "Q4"], ["Q3", "Q6"], ["Q1", "Q5"]], run
        assert [(c.question, c.answer, c.correction) for c in out] == [(q, a, a) for q, a in PAIRS], run
        assert all(c.timings["upstream"] == 0.0 and c.timings["corrector"] >= 0.0 for c in out)


def test_a_real_corrector_gives_the_same_corrections_bucketed_or_one_by_one(tiny_causal_path):
    aligner = Aligner(corrector=str(tiny_causal_path), decoding={"max_new_tokens": 12}, batch_size=3)
    qs, answers = [q for q, _ in PAIRS], [a.replace("a", "word ") for _, a in PAIRS]
    batched = aligner.correct_batch(qs, answers, progress=False)
    assert [c.correction for c in batched] == [aligner.correct(q, a).correction for q, a in zip(qs, answers)]
