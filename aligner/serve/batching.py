"""Dynamic batching: concurrent corrections — plain and streamed — share one corrector call.

A local model decodes a batch of 16 in barely more time than a batch of 1 (one decode step reads
all weights once, whatever the batch), so a server that corrects requests one at a time wastes
almost all of its throughput. Requests here wait at most ``max_wait`` for company, then the whole
group goes to the corrector's row primitive (``Corrector.generate_rows``) in one worker thread.
A streamed request is a row like any other whose text is handed to it step by step, so streams
batch together (and with plain requests) instead of queueing one at a time.

Every request owns its row's cancel handle (:class:`~aligner.rows.RowControl`): a client that
disconnects or a request past its deadline cancels it, and the row stops at the next decoding
step while the rest of its batch goes on — an abandoned stream does not keep the model busy.

Only the corrector step is batched: each request has fetched its upstream answer on its own before
it gets here, so no request ever waits on another request's upstream. Rendering the prompt (which
tokenises the answer to fit it, however long) runs in a worker thread, never on the event loop.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..correction import AsyncCorrectionStream
from ..correctors.base import Corrector, CorrectorResult, ShownRow
from ..decoding import DecodingConfig
from ..rows import RowControl

log = logging.getLogger("aligner.serve")


@dataclass
class BatchStats:
    """What the batcher did (served on ``/health``; the benchmark and tests read it)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    #: requests whose caller had gone (timed out, disconnected) before their batch started.
    cancelled: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    #: streamed requests among ``requests``.
    streams: int = 0
    #: rows cancelled while generating (a client gone, a deadline passed) and stopped early.
    stopped_rows: int = 0
    #: the most tokens any cancelled row generated after its cancel (the promise: at most 2).
    max_steps_after_cancel: int = 0
    #: corrections replaced by the original answer, by reason (see ``aligner.guard``).
    fallbacks: dict[str, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "batches": self.batches, "largest_batch": self.largest_batch,
                "mean_batch": round(self.mean_batch, 2), "cancelled": self.cancelled, "streams": self.streams,
                "stopped_rows": self.stopped_rows, "max_steps_after_cancel": self.max_steps_after_cancel,
                "fallbacks": dict(self.fallbacks)}

    def count_fallback(self, reason: str | None) -> None:
        if reason:
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1


_END = object()


@dataclass(eq=False)
class _Item:
    prompt: str
    answer: str
    row: RowControl
    decoding: DecodingConfig
    enqueued: float
    #: plain requests: resolved with the CorrectorResult by the batch.
    future: asyncio.Future | None = None
    #: streamed requests: text pieces, then _END (or an exception).
    pieces: asyncio.Queue | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def gone(self) -> bool:
        return self.row.cancelled or (self.future is not None and self.future.done())


class DynamicBatcher(Corrector):
    """A corrector that gathers its async calls — ``acorrect_results`` and ``astream`` — into
    batches of at most ``max_batch_size`` (``1`` = unbatched) for the corrector it wraps.

    It is a :class:`~aligner.correctors.base.Corrector` like any other, so the server corrects
    through ``Aligner.acorrect`` / ``Aligner.astream`` as every other caller does: the prompt is
    rendered, parsed and guarded by the same code, only the generation step is shared. Its results
    carry the stage times a client sees in ``aligner.timings`` (``queue``, ``corrector``,
    ``batch_size``) and, from a corrector with a local tokenizer, its tokens (``usage``) counted
    on the prompt the corrector was really given (after ``fit``). Sync calls go straight to the
    wrapped corrector. Must be used from one event loop; the model runs in a single worker thread
    so the loop stays free to accept requests (which is what lets the next batch fill while this
    one decodes).
    """

    def __init__(self, corrector: Corrector, *, max_batch_size: int = 16, max_wait: float = 0.010,
                 may_join: Callable[[], int] | None = None):
        self.inner = corrector
        self.name, self.template, self.decoding = corrector.name, corrector.template, corrector.decoding
        #: how many requests could still join a batch (the server's in-flight count). When all of
        #: them are already in the batch, waiting longer only adds latency: a lone request at
        #: concurrency 1 then pays no batching delay at all.
        self.may_join = may_join
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait))
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- the wrapped corrector's contract, unchanged ------------------------------------------
    @property
    def is_demo(self) -> bool:
        return bool(getattr(self.inner, "is_demo", False))

    @property
    def eos_token(self) -> str | None:
        return self.inner.eos_token

    @property
    def stop_markers(self) -> tuple[str, ...]:
        return self.inner.stop_markers

    def generate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        return self.inner.generate(prompts, decoding)

    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        return self.inner.stream_prompt(prompt, decoding)

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        return self.inner.generate_rows(prompts, decoding, rows)

    def stream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> Iterator[str]:
        return self.inner.stream_row(prompt, decoding, row)

    def fit(self, question: str, answer: str, *, aspects: str | None = None) -> tuple[str, str]:
        return self.inner.fit(question, answer, aspects=aspects)

    def answer_tokens(self, answer: str) -> int:
        return self.inner.answer_tokens(answer)

    def prompt_fits(self, prompt: str) -> bool:
        return self.inner.prompt_fits(prompt)

    def prepare(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | None" = None) -> tuple[str, RowControl]:
        return self.inner.prepare(question, answer, aspects=aspects, decoding=decoding)

    def finish(self, raw: str, answer: str, row: RowControl) -> CorrectorResult:
        return self.inner.finish(raw, answer, row)

    # -- batched ------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting for a batch (``aligner_corrector_queue_depth`` on ``/metrics``)."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the collector on the running loop (idempotent; every batched call does it too)."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aligner-corrector")
            self._task = asyncio.get_running_loop().create_task(self._run(), name="aligner-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still queued fail rather than hang."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._queue is not None:
            while not self._queue.empty():
                _fail(self._queue.get_nowait(), RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _item(self, question: str, answer: str, decoding: DecodingConfig, aspects: str | None,
                    *, stream: bool) -> _Item:
        """Render the prompt (tokenising the answer) in a worker thread, then queue the row;
        errors in the request (a question too long for the corrector) raise here."""
        self.start()
        loop = asyncio.get_running_loop()
        prompt, row = await loop.run_in_executor(None, functools.partial(
            self.inner.prepare, question, answer, aspects=aspects, decoding=decoding))
        item = _Item(prompt, answer, row, decoding, time.perf_counter())
        if stream:
            pieces: asyncio.Queue = asyncio.Queue()
            item.pieces = pieces

            def put(value: Any) -> None:
                try:
                    loop.call_soon_threadsafe(pieces.put_nowait, value)
                except RuntimeError:  # the loop is closed: nobody is listening
                    row.cancel()

            row.on_text = put
            row.on_end = lambda: put(_END)
        else:
            item.future = loop.create_future()
        assert self._queue is not None
        self._queue.put_nowait(item)
        return item

    async def acorrect_results(self, pairs: Sequence[tuple[str, str]], *, aspects: str | None = None,
                               decoding: "DecodingConfig | Mapping[str, Any] | None" = None
                               ) -> list[CorrectorResult]:
        """Each pair's correction, generated in whatever batch it lands in. Cancelling the awaiting
        task (a deadline, a client gone) cancels the rows: each stops at the next decoding step,
        or is never generated if its batch has not started."""
        dec = self._decoding(decoding)
        return list(await asyncio.gather(*(self._one(q, a, dec, aspects) for q, a in pairs)))

    async def _one(self, question: str, answer: str, decoding: DecodingConfig,
                   aspects: str | None) -> CorrectorResult:
        item = await self._item(question, answer, decoding, aspects, stream=False)
        assert item.future is not None
        try:
            result: CorrectorResult = await item.future
        except asyncio.CancelledError:
            item.row.cancel()
            raise
        result.timings = {k: item.info[k] for k in ("queue", "corrector", "batch_size")}
        result.usage = await asyncio.to_thread(self._usage, item.prompt, result.text)
        return result

    def _usage(self, prompt: str, completion: str) -> dict[str, int] | None:
        """The corrector's own tokens — the prompt it was given (after ``fit``) and the correction
        — for a corrector with a local tokenizer; None for one without (a remote endpoint)."""
        generator = getattr(self.inner, "generator", None)
        if getattr(generator, "tokenizer", None) is None:
            return None
        prompt_tokens = generator.count_tokens(prompt)
        completion_tokens = generator.count_tokens(completion, special=False)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def astream(self, question: str, answer: str, *, aspects: str | None = None,
                decoding: "DecodingConfig | Mapping[str, Any] | None" = None) -> AsyncCorrectionStream:
        """A streamed correction whose row joins a batch like a plain one; parsed and guarded the
        way ``Corrector.astream`` does it. Leaving early (``aclose()``, a cancelled task) cancels
        its row. Its ``result.timings`` say how long it queued and the size of its batch."""
        dec = self._decoding(decoding)

        async def run(stream: AsyncCorrectionStream) -> AsyncIterator[str]:
            item = await self._item(question, answer, dec, aspects, stream=True)
            shown = ShownRow(self, question, answer, item.prompt, dec, item.row)
            shown.timings = item.info  # queue and batch_size, once its batch has started
            pieces = shown.arun(stream, self._pieces(item))
            try:
                async for out in pieces:
                    yield out
            finally:
                await pieces.aclose()  # left early: the row is cancelled now, not when collected
            self.stats.count_fallback(stream.result.fallback_reason)

        return AsyncCorrectionStream(run)

    async def _pieces(self, item: _Item) -> AsyncIterator[str]:
        """The raw pieces of a queued row, as its batch generates them; the row is cancelled
        when its reader stops early (closes, is cancelled, or the parser has seen the end)."""
        assert item.pieces is not None
        ended = False
        try:
            while True:
                piece = await item.pieces.get()
                ended = piece is _END or isinstance(piece, BaseException)
                if piece is _END:
                    return
                if ended:
                    raise piece
                yield piece
        finally:
            if not ended:
                item.row.cancel()

    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        first = await self._queue.get()
        batch = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():  # already waiting: take without delay
                batch.append(self._queue.get_nowait())
                continue
            if self.may_join is not None and self.may_join() <= len(batch):
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    def _generate(self, items: list[_Item]) -> list[CorrectorResult | None]:
        """In the worker thread: one guarded batch, then each plain row parsed and judged."""
        raws = self.inner.generate_rows([it.prompt for it in items], items[0].decoding,
                                        [it.row for it in items])
        return [None if it.pieces is not None else self.inner.finish(raw, it.answer, it.row)
                for it, raw in zip(items, raws)]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = []
            for it in batch:
                if it.gone:  # timed out / disconnected while queued: never generated
                    self.stats.cancelled += 1
                    _fail(it, None)
                else:
                    live.append(it)
            groups: dict[tuple, list[_Item]] = {}
            for it in live:  # one generate() call needs one decoding config
                groups.setdefault(tuple(sorted(it.decoding.to_dict().items())), []).append(it)
            for items in groups.values():
                t0 = time.perf_counter()
                n = len(items)
                for it in items:
                    it.info.update(queue=t0 - it.enqueued, batch_size=n)
                try:
                    results = await loop.run_in_executor(self._executor, self._generate, items)
                except asyncio.CancelledError:
                    for it in items:
                        it.row.cancel()
                        _fail(it, RuntimeError("the server is shutting down"))
                    raise
                except Exception as exc:  # the model failed: every caller of this batch gets the error
                    log.exception("corrector batch of %d failed", n)
                    for it in items:
                        _fail(it, exc)
                    continue
                took = time.perf_counter() - t0
                self.stats.requests += n
                self.stats.streams += sum(it.pieces is not None for it in items)
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, n)
                self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
                for it, result in zip(items, results):
                    if it.pieces is None:  # a stream's corrector time is its own, from its first to last piece
                        it.info["corrector"] = took
                    row = it.row
                    if row.stop_reason == "cancelled" and row.steps_after_cancel is not None:
                        self.stats.stopped_rows += 1
                        self.stats.max_steps_after_cancel = max(self.stats.max_steps_after_cancel,
                                                                row.steps_after_cancel)
                    if result is not None:
                        self.stats.count_fallback(result.fallback_reason)
                        if it.future is not None and not it.future.done():
                            it.future.set_result(result)


def _fail(item: _Item, exc: BaseException | None) -> None:
    """End a request that will not be generated (``exc`` None: its caller has already gone)."""
    if exc is None:
        item.row.stop_reason = item.row.stop_reason or "cancelled"
    if item.future is not None and not item.future.done():
        if exc is None:
            item.future.cancel()
        else:
            item.future.set_exception(exc)
    if item.pieces is not None:
        item.pieces.put_nowait(exc if exc is not None else _END)
