"""Dynamic batching of gate calls: concurrent requests share one gate call, as they share corrector batches.

A classifier gate scores 32 answers in barely more time than one, and a moderation endpoint takes a
list of inputs in one request. :class:`GateBatcher` is a :class:`~aligner.gates.base.Gate` around
another: async verdicts queue in the pipeline's :class:`~aligner.runtime.pipeline.BatchQueue` and leave it
by the same rule as the corrector's rows (at most ``max_batch_size``, after waiting at most
``max_wait`` for company unless every request in flight has joined), then the whole group goes to
the wrapped gate's ``averdict_batch`` in one call. Each group runs in a task of its own, so a caller
that gives up (a client gone) leaves the others' verdicts intact. Sync calls go straight to the
wrapped gate. The collector stops when nothing is queued and starts again with the next call:
nothing to start or stop with the server.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from ..runtime.pipeline import Batching, BatchQueue
from .base import Gate, GateVerdict, Judgement, Pair

_Waiting = tuple[Pair, asyncio.Future]


class GateBatcher(Gate):
    """``inner``'s verdicts, concurrent async calls gathered into batches of at most ``max_batch_size``."""

    def __init__(self, inner: Gate, *, max_batch_size: int = 16, max_wait: float = 0.010,
                 may_join: Callable[[], int] | None = None):
        self.inner = inner
        self.kind, self.name = inner.kind, inner.name  # type: ignore[misc]
        self.threshold, self.min_severity = inner.threshold, inner.min_severity
        self.score_is_probability = inner.score_is_probability  # type: ignore[misc]
        self.predicts_severity = inner.predicts_severity  # type: ignore[misc]
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait))
        #: the batching rule; ``may_join`` is how many requests could still join (the server's
        #: in-flight count): a group that holds them all goes at once, so a lone request pays no delay
        self.batching = Batching(self.max_batch_size, max_wait=self.max_wait, may_join=may_join)
        self._queue: BatchQueue[_Waiting] | None = None
        self._collector: asyncio.Task | None = None
        self._groups: set[asyncio.Task] = set()
        #: gate calls made and answers judged (the tests and /health read them)
        self.batches = 0
        self.answers = 0
        self.largest_batch = 0

    @property
    def is_demo(self) -> bool:
        return bool(getattr(self.inner, "is_demo", False))

    def judge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        return self.inner.judge(pairs)

    def verdict_batch(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        return self.inner.verdict_batch(pairs)

    async def averdict_batch(self, pairs: Sequence[Pair]) -> list[GateVerdict]:
        if len(pairs) != 1 or self.max_batch_size == 1:
            return await self._run(list(pairs))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        if self._collector is None or self._collector.done():
            self._queue = BatchQueue(self.batching)
            self._collector = asyncio.ensure_future(self._collect(self._queue))
        assert self._queue is not None
        self._queue.put_nowait((tuple(pairs[0]), future))  # type: ignore[arg-type]
        return [await asyncio.shield(future)]

    async def _collect(self, queue: BatchQueue[_Waiting]) -> None:
        """Hand each group the queue forms to a task of its own, until nothing is queued."""
        while not queue.idle():
            group = await queue.take()
            task = asyncio.ensure_future(self._judge(group))
            self._groups.add(task)  # held until done: a task nobody holds may be collected
            task.add_done_callback(self._groups.discard)

    async def _judge(self, group: list[_Waiting]) -> None:
        """One gate call for the group; every waiter gets its verdict, or the error (the Aligner's
        on-error policy handles it)."""
        try:
            verdicts = await self._run([pair for pair, _ in group])
        except BaseException as exc:
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), verdict in zip(group, verdicts):
            if not fut.done():
                fut.set_result(verdict)

    async def _run(self, pairs: list[Pair]) -> list[GateVerdict]:
        self.batches += 1
        self.answers += len(pairs)
        self.largest_batch = max(self.largest_batch, len(pairs))
        return await self.inner.averdict_batch(pairs)
