"""A row's correction independent of its batch (issue 21 item 9).

Batched greedy decoding can flip a near-tie when the batch changes (padding, the batch's shape,
the other rows' drafts change floating-point sums): a resumed ``aligner generate`` differed from
an uninterrupted run in 2 of 200 rows. ``decoding={"batch_invariant": True}`` (``--batch-invariant``
on correct/generate/eval) decodes each row on its own; these tests pin that a row then comes out
byte for byte the same alone, first or last in a batch, beside other neighbours, through every
engine and both model kinds, and through the CLI at different batch sizes. Tiny real models.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from aligner import Aligner
from aligner.cli import main
from aligner.correctors import load_corrector
from aligner.correctors.remote import RemoteCorrector
from aligner.contracts.errors import ConfigError
from aligner.contracts.rows import RowControl
from conftest import read_rows, write_rows

TARGET = ("How do I reset my router?", "Unplug it, wait ten seconds, then plug it back in and wait for the lights.")
OTHERS = [(f"Question {i}: what about {'this and ' * i}that?", "It depends " + "on many things, " * (i % 4) + "really.")
          for i in range(7)]


def _model(kind: str, tiny_causal_path, tiny_seq2seq_path) -> str:
    return str(tiny_causal_path if kind == "causal" else tiny_seq2seq_path)


@pytest.mark.parametrize("engine", ["auto", "hf"])
@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_a_row_is_byte_identical_alone_and_in_any_batch(kind, engine, tiny_causal_path, tiny_seq2seq_path):
    c = load_corrector(_model(kind, tiny_causal_path, tiny_seq2seq_path),
                       decoding={"max_new_tokens": 24, "fallback": False, "engine": engine, "batch_invariant": True})
    alone = c.correct_results([TARGET])[0]
    assert alone.raw.strip()  # the model wrote something to compare
    batches = [[TARGET, *OTHERS[:1]], [*OTHERS[:3], TARGET], [*OTHERS[3:], TARGET, *OTHERS[:3]],
               [OTHERS[6], TARGET, OTHERS[0]]]
    for batch in batches:
        got = c.correct_results(batch)[batch.index(TARGET)]
        assert (got.raw, got.stop_reason) == (alone.raw, alone.stop_reason)
    # the others too: each equal to itself alone
    together = c.correct_results([TARGET, *OTHERS])
    assert [r.raw for r in together[1:]] == [c.correct_results([o])[0].raw for o in OTHERS]
    # streamed rows of one batch (the server's batcher calls generate_rows so) stream the same text
    rows = [RowControl() for _ in range(4)]
    pieces: list[list[str]] = [[] for _ in rows]
    for row, sink in zip(rows, pieces):
        row.on_text = sink.append
    prompts = [c.prepare(q, a)[0] for q, a in [OTHERS[2], TARGET, OTHERS[5], OTHERS[1]]]
    raws = c.generate_rows(prompts, c.decoding, rows)
    assert raws[1] == alone.raw and "".join(pieces[1]) == alone.raw


def test_aligner_batches_of_any_size_and_order_give_the_same_corrections(tiny_causal_path):
    pairs = [TARGET, *OTHERS]
    invariant = {"max_new_tokens": 16, "batch_invariant": True}
    one = Aligner(None, corrector=str(tiny_causal_path), decoding=invariant, batch_size=1)
    want = [c.correction for c in one.correct_batch([q for q, _ in pairs], [a for _, a in pairs], progress=False)]
    for size, order in ((3, pairs), (8, pairs[::-1])):
        al = Aligner(None, corrector=one.corrector, batch_size=size)
        got = al.correct_batch([q for q, _ in order], [a for _, a in order], progress=False)
        assert {(c.question, c.correction) for c in got} == set(zip([q for q, _ in pairs], want))
        agot = asyncio.run(al.acorrect_batch([q for q, _ in order], [a for _, a in order]))
        assert [c.correction for c in agot] == [c.correction for c in got]


def test_the_cli_flag_makes_files_independent_of_the_batch_size(tmp_path, tiny_causal_path):
    rows = [{"question": q, "answer": a} for q, a in [TARGET, *OTHERS]]
    src = write_rows(tmp_path / "in.jsonl", rows)
    outs = []
    for size in ("1", "5"):
        out = tmp_path / f"out-{size}.jsonl"
        assert main(["correct", "--input", str(src), "--output", str(out), "--corrector", str(tiny_causal_path),
                     "--max-new-tokens", "16", "--batch-size", size, "--batch-invariant"]) == 0
        outs.append({r["question"]: r["correction"] for r in read_rows(out)})
    assert outs[0] == outs[1] and len(outs[0]) == len(rows)


def test_a_remote_corrector_refuses_batch_invariant():
    """A server batches every client's requests as it likes: the promise cannot be kept, so it is
    refused with the fix, not silently dropped."""
    with pytest.raises(ConfigError, match="batch_invariant") as err:
        RemoteCorrector("http://127.0.0.1:9/v1", "m", decoding={"batch_invariant": True})
    assert "local corrector" in str(err.value) and "VLLM_BATCH_INVARIANT" in str(err.value)
    c = RemoteCorrector("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ConfigError, match="batch_invariant"):
        c.correct("Q?", "A.", decoding={"batch_invariant": True})
    assert json.dumps(c.decoding.to_dict())  # the default stays serialisable, off
    assert c.decoding.batch_invariant is False
