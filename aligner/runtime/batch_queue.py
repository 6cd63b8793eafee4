"""The queue between the pipeline's stages: rows wait here until the next stage is free, and leave
in batches by one rule (:class:`Batching`).

Its own module because more than the pipeline queue rows by this rule: the server's
:class:`~aligner.serve.batching.DynamicBatcher` (requests' rows, with the in-flight count as who
may still join) and :class:`~aligner.gates.batching.GateBatcher` (gate calls) hold theirs here too,
and neither needs the stages of :mod:`aligner.runtime.pipeline`.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")


@dataclass
class Batching:
    """How the corrector's batches are formed from the rows waiting for it."""

    #: most rows in one corrector call.
    size: int
    #: seconds the first waiting row waits for company (``math.inf``: until no more may join).
    max_wait: float = 0.0
    #: how many rows could be in this batch, those already waiting included (a server's requests
    #: in flight, a gathering run's rows not yet corrected); at that count the batch goes at once.
    may_join: Callable[[], int] | None = None
    #: a row's length: when given, the shortest waiting rows go first (every row waits for the
    #: others to be answered), so a batch pads and decodes rows of similar length together.
    length: Callable[[Any], int] | None = None


_CLOSED = object()


class BatchQueue(Generic[T]):
    """Rows waiting for the corrector, handed out in batches by a :class:`Batching` rule.
    ``maxsize`` bounds what producers may put before the corrector catches up (0: no bound)."""

    def __init__(self, batching: Batching, maxsize: int = 0):
        self.batching = batching
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._waiting: list[T] = []  # taken off the queue, not yet in a batch
        self._closed = False

    async def put(self, item: T) -> None:
        await self._queue.put(item)

    def put_nowait(self, item: T) -> None:
        self._queue.put_nowait(item)

    async def close(self) -> None:
        """No more rows will come: a batch forms from what is there, then ``take`` returns []."""
        await self._queue.put(_CLOSED)

    def _pull(self, item: Any) -> bool:
        """Keep ``item`` waiting; False when it is the end of the rows."""
        if item is _CLOSED:
            self._closed = True
            return False
        self._waiting.append(item)
        return True

    def _pull_ready(self) -> None:
        """Everything already queued joins the waiting rows (in arrival order up to a batch's
        worth, or all when the shortest go first)."""
        limit = math.inf if self.batching.length is not None else self.batching.size
        while len(self._waiting) < limit and not self._closed and not self._queue.empty():
            self._pull(self._queue.get_nowait())

    def _full(self) -> bool:
        rule = self.batching
        if self._closed or (rule.length is None and len(self._waiting) >= rule.size):
            return True
        return rule.may_join is not None and rule.may_join() <= len(self._waiting)

    async def take(self) -> list[T]:
        """The next batch: waits for a first row, then for company as the rule says; [] once the
        queue is closed and empty."""
        rule = self.batching
        if not self._waiting and (self._closed or not self._pull(await self._queue.get())):
            return []
        deadline = time.perf_counter() + rule.max_wait
        while True:
            self._pull_ready()
            remaining = deadline - time.perf_counter()
            if self._full() or remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), None if math.isinf(remaining) else remaining)
            except asyncio.TimeoutError:
                break
            if not self._pull(item):
                break
        order = list(range(len(self._waiting)))
        if rule.length is not None:  # equal lengths keep their arrival order
            order = shortest_first(self._waiting, rule.length)
        chosen = set(order[:rule.size])
        batch = [self._waiting[i] for i in order[:rule.size]]
        self._waiting = [item for i, item in enumerate(self._waiting) if i not in chosen]
        return batch

    def qsize(self) -> int:
        """Rows waiting for a batch (queued, or taken off the queue and not yet in a batch)."""
        return len(self._waiting) + self._queue.qsize()

    def idle(self) -> bool:
        """Nothing waiting and nothing queued (a collector that stops when idle checks this)."""
        return not self._waiting and self._queue.empty()

    def drain(self) -> list[T]:
        """Every row still waiting (a server shutting down fails them rather than let them hang)."""
        out, self._waiting = self._waiting, []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _CLOSED:
                out.append(item)
        return out


def shortest_first(items: Sequence[T], length: Callable[[T], int]) -> list[int]:
    """Positions of ``items`` by ``length``, equal lengths in input order (a stable sort)."""
    return sorted(range(len(items)), key=lambda i: length(items[i]))
