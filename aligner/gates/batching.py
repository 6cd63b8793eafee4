"""Dynamic batching of gate calls: concurrent requests share one gate call, as they share corrector batches.

A classifier gate scores 32 answers in barely more time than one, and a moderation endpoint takes a
list of inputs in one request. :class:`GateBatcher` is a :class:`~aligner.gates.base.Gate` around
another: an async verdict waits at most ``max_wait`` for company, then the whole group goes to the
wrapped gate's ``averdict_batch`` in one call. The group runs in a task of its own, so a caller that
gives up (a client gone) leaves the others' verdicts intact. Sync calls go straight to the wrapped
gate. No background task outlives a batch: nothing to start or stop with the server.
"""
from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from .base import Gate, GateVerdict, Judgement, Pair


class GateBatcher(Gate):
    """``inner``'s verdicts, concurrent async calls gathered into batches of at most ``max_batch_size``."""

    def __init__(self, inner: Gate, *, max_batch_size: int = 16, max_wait: float = 0.010,
                 may_join: Callable[[], int] | None = None):
        self.inner = inner
        #: how many requests could still join (the server's in-flight count): a group that holds
        #: them all closes at once, so a lone request pays no batching delay
        self.may_join = may_join
        self.kind, self.name = inner.kind, inner.name  # type: ignore[misc]
        self.threshold, self.min_severity = inner.threshold, inner.min_severity
        self.score_is_probability = inner.score_is_probability  # type: ignore[misc]
        self.predicts_severity = inner.predicts_severity  # type: ignore[misc]
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait))
        self._pending: list[tuple[Pair, asyncio.Future]] | None = None
        self._full: asyncio.Event | None = None
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        if self._pending is None:
            self._pending, self._full = [], asyncio.Event()
            asyncio.ensure_future(self._collect(self._pending, self._full))
        self._pending.append((tuple(pairs[0]), future))  # type: ignore[arg-type]
        if len(self._pending) >= self.max_batch_size or (self.may_join is not None
                                                          and self.may_join() <= len(self._pending)):
            self._full.set()  # type: ignore[union-attr]
            self._pending = None
        return [await asyncio.shield(future)]

    async def _collect(self, group: list[tuple[Pair, asyncio.Future]], full: asyncio.Event) -> None:
        """Wait for the group to fill (or ``max_wait``), close it, judge it in one call."""
        try:
            await asyncio.wait_for(full.wait(), self.max_wait)
        except asyncio.TimeoutError:
            pass
        if self._pending is group:
            self._pending = None
        try:
            verdicts = await self._run([pair for pair, _ in group])
        except BaseException as exc:  # every waiter gets the error (the Aligner's policy handles it)
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
