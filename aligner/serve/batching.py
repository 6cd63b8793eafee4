"""Dynamic batching: concurrent corrections share one corrector call.

A local model decodes a batch of 16 in barely more time than a batch of 1 (one decode step reads
all weights once, whatever the batch), so a server that corrects requests one at a time wastes
almost all of its throughput. Requests here wait at most ``max_wait`` for company, then the whole
group goes to the corrector's batch primitive (``Corrector.generate``) in one worker thread.
Only the corrector step is batched: each request has fetched its upstream answer on its own before
it gets here, so no request ever waits on another request's upstream.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..decoding import DecodingConfig

log = logging.getLogger("aligner.serve")


@dataclass
class BatchStats:
    """What the batcher did (served on ``/health``; the benchmark reads it)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    cancelled: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "batches": self.batches, "largest_batch": self.largest_batch,
                "mean_batch": round(self.mean_batch, 2), "cancelled": self.cancelled}


@dataclass
class _Item:
    prompt: str
    decoding: DecodingConfig
    future: asyncio.Future
    enqueued: float


class DynamicBatcher:
    """Gathers ``correct`` calls into batches of at most ``max_batch_size`` (``1`` = unbatched).

    Must be used from one event loop; the model runs in a single worker thread so the loop stays
    free to accept requests (which is what lets the next batch fill while this one decodes).
    """

    def __init__(self, corrector: Any, *, max_batch_size: int = 16, max_wait: float = 0.010,
                 may_join: Callable[[], int] | None = None):
        self.corrector = corrector
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

    def start(self) -> None:
        """Start the collector on the running loop (idempotent; ``correct`` calls it too)."""
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
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def correct(self, question: str, answer: str, decoding: DecodingConfig,
                      *, aspects: str | None = None) -> tuple[str, dict[str, float]]:
        """The parsed correction and ``{"queue", "corrector", "batch_size"}`` for this request."""
        self.start()
        prompt = self.corrector.render(question, answer, aspects=aspects)
        loop = asyncio.get_running_loop()
        item = _Item(prompt, decoding, loop.create_future(), time.perf_counter())
        assert self._queue is not None
        self._queue.put_nowait(item)
        raw, info = await item.future
        return self.corrector.parse(raw), info

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

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [it for it in batch if not it.future.done()]  # timed-out/cancelled callers
            self.stats.cancelled += len(batch) - len(live)
            groups: dict[tuple, list[_Item]] = {}
            for it in live:  # one generate() call needs one decoding config
                groups.setdefault(tuple(sorted(it.decoding.to_dict().items())), []).append(it)
            for items in groups.values():
                t0 = time.perf_counter()
                try:
                    raws = await loop.run_in_executor(self._executor, self.corrector.generate,
                                                      [it.prompt for it in items], items[0].decoding)
                except asyncio.CancelledError:
                    for it in items:
                        if not it.future.done():
                            it.future.set_exception(RuntimeError("the server is shutting down"))
                    raise
                except Exception as exc:  # the model failed: every caller of this batch gets the error
                    log.exception("corrector batch of %d failed", len(items))
                    for it in items:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    continue
                took = time.perf_counter() - t0
                n = len(items)
                self.stats.requests += n
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, n)
                self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
                for it, raw in zip(items, raws):
                    if not it.future.done():
                        it.future.set_result((raw, {"queue": t0 - it.enqueued, "corrector": took,
                                                    "batch_size": n}))
