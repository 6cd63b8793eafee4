"""Row-by-row control of batched generation (issue 10 item 2): a row can be cancelled, capped or
streamed on its own while the rest of its batch decodes on, and streamed rows — also through the
server's dynamic batcher — give exactly the batch text. Real tiny models, no mocks."""
from __future__ import annotations

import asyncio

import pytest

from aligner.correctors import load_corrector
from aligner.contracts.rows import RowControl
from aligner.serve.batching import DynamicBatcher

PAIRS = [("How are you?", "I am fine, thanks."), ("What is 2+2?", "It is 5."),
         ("Tell me a joke", "Why did the chicken cross the road? To get to the other side."),
         ("Where is Paris?", "Paris is in France, on the Seine.")]
LONG = {"max_new_tokens": 48, "fallback": False}


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Untrained tiny models that write varied text (the same ones wherever the tests run)."""
    from fixed_tiny import fixed_tiny

    return {kind: fixed_tiny(tmp_path_factory.mktemp(kind), kind, init_scale=10.0) for kind in ("causal", "seq2seq")}


@pytest.fixture(scope="module", params=["causal", "seq2seq"])
def corrector(request, varied):
    return load_corrector(str(varied[request.param]), decoding=LONG)


def test_a_cancelled_row_stops_within_two_steps_while_its_batch_goes_on(corrector):
    prompts = [corrector.render(q, a) for q, a in PAIRS]
    alone = [corrector.generator.generate([p], corrector.decoding)[0] for p in prompts]
    rows = [RowControl() for _ in prompts]
    got: list[str] = []

    def first_piece(piece: str) -> None:  # the "client" of row 1 leaves on its first piece
        got.append(piece)
        rows[1].cancel()

    rows[1].on_text = first_piece
    texts = corrector.generator.generate(prompts, corrector.decoding, rows)
    assert rows[1].stop_reason == "cancelled" and rows[1].steps_after_cancel <= 2
    assert rows[1].steps < max(r.steps for r in rows)  # it left the batch early ...
    assert texts[1].startswith(got[0])
    for i in (0, 2, 3):  # ... and the other rows decoded exactly as they do alone
        assert texts[i] == alone[i] and rows[i].stop_reason in ("eos", "length")


def test_a_row_cancelled_before_the_batch_is_not_generated(corrector):
    rows = [RowControl(), RowControl()]
    rows[0].cancel()
    texts = corrector.generator.generate([corrector.render(q, a) for q, a in PAIRS[:2]], corrector.decoding, rows)
    assert texts[0] == "" and rows[0].stop_reason == "cancelled" and rows[0].steps == 0
    assert texts[1] == corrector.correct_results([PAIRS[1]])[0].raw


def test_per_row_caps_stop_each_row_at_its_own_length(corrector):
    prompts = [corrector.render(q, a) for q, a in PAIRS[:3]]
    rows = [RowControl(max_new_tokens=cap) for cap in (3, 7, 1000)]
    corrector.generator.generate(prompts, corrector.decoding, rows)
    for row, cap in zip(rows, (3, 7)):
        assert row.stop_reason == "eos" or (row.stop_reason == "cap" and row.steps == cap)


def test_streamed_rows_of_one_batch_each_get_their_own_batch_text(corrector):
    prompts = [corrector.render(q, a) for q, a in PAIRS]
    pieces: list[list[str]] = [[] for _ in prompts]
    ended: list[int] = []
    rows = [RowControl(on_text=pieces[i].append, on_end=lambda i=i: ended.append(i)) for i in range(len(prompts))]
    texts = corrector.generator.generate(prompts, corrector.decoding, rows)
    assert ["".join(p) for p in pieces] == texts
    assert sorted(ended) == list(range(len(prompts)))  # each row told it has ended, once
    assert sum(len(p) > 1 for p in pieces) >= 2  # streamed as generated, not in one piece


def test_streams_join_the_dynamic_batcher_and_match_correct(varied):
    """Streams queued together decode in one batch; one dropped after its first piece stops
    within two steps while the others stream their exact non-streamed correction."""
    corrector = load_corrector(str(varied["causal"]), decoding=LONG)
    want = corrector.correct_batch(PAIRS)

    async def run() -> tuple[list[str], DynamicBatcher]:
        # all four join one batch: it waits for as long as it takes the four to be queued
        batcher = DynamicBatcher(corrector, max_batch_size=8, max_wait=60, may_join=lambda: len(PAIRS))
        served = corrector.through(batcher)  # the corrector, its rows batched (as the server serves it)
        streams = [served.astream(q, a, decoding=corrector.decoding) for q, a in PAIRS]

        async def read(i: int) -> str:
            text = ""
            async for piece in streams[i]:
                text += piece
                if i == 1:
                    await streams[i].aclose()  # the client of stream 1 leaves
                    break
            return text

        texts = list(await asyncio.gather(*(read(i) for i in range(len(PAIRS)))))
        while batcher.stats.batches == 0:  # stats land when the batch's generate() returns
            await asyncio.sleep(0.01)
        await batcher.stop()
        return texts, batcher

    texts, batcher = asyncio.run(run())
    assert batcher.stats.batches == 1 and batcher.stats.largest_batch == len(PAIRS) == batcher.stats.streams
    assert [texts[i] for i in (0, 2, 3)] == [want[i] for i in (0, 2, 3)]
    assert want[1].startswith(texts[1]) and texts[1]
    assert batcher.stats.stopped_rows == 1 and batcher.stats.max_steps_after_cancel <= 2
