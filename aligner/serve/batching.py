"""Dynamic batching: concurrent corrections — plain and streamed — share one corrector call.

A local model decodes a batch of 16 in barely more time than a batch of 1 (one decode step reads
all weights once, whatever the batch), so a server that corrects requests one at a time wastes
almost all of its throughput. Requests here wait at most ``max_wait`` for company (the pipeline's
:class:`~aligner.runtime.pipeline.BatchQueue`, with the server's in-flight count as who may still join),
then the whole group goes to the backend's row primitive (``generate_rows``) in one worker thread.
A streamed request is a row like any other whose text is handed to it step by step, so streams
batch together (and with plain requests) instead of queueing one at a time.

Every request owns its row's cancel handle (:class:`~aligner.contracts.rows.RowControl`): a client that
disconnects or a request past its deadline cancels it, and the row stops at the next decoding
step while the rest of its batch goes on — an abandoned stream does not keep the model busy.

Only the corrector step is batched: each request has fetched its upstream answer on its own before
it gets here, so no request ever waits on another request's upstream. The batcher is a
:class:`~aligner.correctors.backend.RowDecoder` wrapping the corrector's own rows and nothing else:
the server corrects through ``corrector.through(batcher)``, the same corrector (its template, ``fit``,
guard, parsing, token counts) with its async rows gathered here. Rendering the prompt (which
tokenises the answer to fit it, however long) and judging the output happen in that corrector's
pipeline, in worker threads, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from ..contracts.decoding import DecodingConfig
from ..contracts.rows import RowControl
from ..correctors.backend import RowDecoder
from ..runtime.pipeline import Batching, BatchQueue

log = logging.getLogger("aligner.serve")


@dataclass
class BatchStats:
    """What the batcher did (served on ``/health``; the benchmark and tests read it)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    #: how many batches ran at each size (size -> count): with ``largest_batch``, the batches' spread.
    sizes: dict[int, int] = field(default_factory=dict)
    #: requests whose caller had gone (timed out, disconnected) before their batch started.
    cancelled: int = 0
    #: streamed requests among ``requests``.
    streams: int = 0
    #: rows cancelled while generating (a client gone, a deadline passed) and stopped early.
    stopped_rows: int = 0
    #: the most tokens any cancelled row generated after its cancel (the promise: at most 2).
    max_steps_after_cancel: int = 0
    #: corrections replaced by the original answer, by reason (see ``aligner.runtime.guard``), counted by
    #: the server as it serves them.
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
    row: RowControl
    decoding: DecodingConfig
    enqueued: float
    #: plain rows: resolved with the raw text by the batch.
    future: asyncio.Future | None = None
    #: streamed requests: text pieces, then _END (or an exception).
    pieces: asyncio.Queue | None = None

    @property
    def gone(self) -> bool:
        return self.row.cancelled or (self.future is not None and self.future.done())


class DynamicBatcher(RowDecoder):
    """A row decoder that gathers its async rows — ``agenerate_rows`` and ``astream_row`` — into
    batches of at most ``max_batch_size`` (``1`` = unbatched) for the backend it wraps.

    The server corrects through ``corrector.through(batcher)``: the prompt is rendered, parsed and
    guarded by the corrector's own pipeline, as for every other caller; only the generation step is
    shared. Each row's ``timings`` get the stage times a client sees in ``aligner.timings``
    (``queue``, ``batch_size`` and, for a plain row, ``corrector``: its batch's time); results
    decoded here carry the corrector's token ``usage``. Sync rows go straight to the backend.
    Must be used from one event loop; the model runs in a single worker thread so the loop stays
    free to accept requests (which is what lets the next batch fill while this one decodes).
    """

    reports_usage = True

    def __init__(self, backend: RowDecoder, *, max_batch_size: int = 16, max_wait: float = 0.010,
                 may_join: Callable[[], int] | None = None):
        self.backend = backend
        #: how many requests could still join a batch (the server's in-flight count). When all of
        #: them are already in the batch, waiting longer only adds latency: a lone request at
        #: concurrency 1 then pays no batching delay at all.
        self.may_join = may_join
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait))
        self.stats = BatchStats()
        self._queue: BatchQueue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- not batched: sync callers (a thread of their own) decode as they would without it -------
    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        return self.backend.generate_rows(prompts, decoding, rows)

    def stream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> Iterator[str]:
        return self.backend.stream_row(prompt, decoding, row)

    # -- batched ------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting for a batch (``aligner_corrector_queue_depth`` on ``/metrics``)."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the collector on the running loop (idempotent; every batched call does it too)."""
        if self._task is None or self._task.done():
            self._queue = BatchQueue(Batching(self.max_batch_size, max_wait=self.max_wait, may_join=self.may_join))
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
            for item in self._queue.drain():
                _fail(item, RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _enqueue(self, prompt: str, row: RowControl, decoding: DecodingConfig, *, stream: bool) -> _Item:
        """Queue one row: a plain one is resolved with its raw text, a streamed one gets its
        pieces through a queue the event loop reads."""
        self.start()
        loop = asyncio.get_running_loop()
        item = _Item(prompt, row, decoding, time.perf_counter())
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

    async def agenerate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                             rows: Sequence[RowControl]) -> list[str]:
        """Each row's raw text, generated in whatever batch it lands in. Cancelling the awaiting
        task (a deadline, a client gone) cancels the rows: each stops at the next decoding step,
        or is never generated if its batch has not started."""
        items = [self._enqueue(p, r, decoding, stream=False) for p, r in zip(prompts, rows)]
        try:
            return list(await asyncio.gather(*(it.future for it in items)))  # type: ignore[misc]
        except asyncio.CancelledError:
            for it in items:
                it.row.cancel()
            raise

    async def astream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> AsyncIterator[str]:
        """The raw pieces of a row that joins a batch like a plain one, as its batch generates
        them; the row is cancelled when its reader stops early (closes, is cancelled, or the
        parser has seen the end)."""
        item = self._enqueue(prompt, row, decoding, stream=True)
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
                row.cancel()

    def _generate(self, items: list[_Item]) -> list[str]:
        """In the worker thread: one guarded batch."""
        return self.backend.generate_rows([it.prompt for it in items], items[0].decoding, [it.row for it in items])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._queue.take()  # type: ignore[union-attr]
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
                    it.row.timings.update(queue=t0 - it.enqueued, batch_size=n)
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
                for it, raw in zip(items, results):
                    row = it.row
                    if it.pieces is None:  # a stream's corrector time is its own, from its first to last piece
                        row.timings = {"queue": row.timings["queue"], "corrector": took, "batch_size": n}
                    if row.stop_reason == "cancelled" and row.steps_after_cancel is not None:
                        self.stats.stopped_rows += 1
                        self.stats.max_steps_after_cancel = max(self.stats.max_steps_after_cancel,
                                                                row.steps_after_cancel)
                    if it.future is not None and not it.future.done():
                        it.future.set_result(raw)


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
