"""One way to answer and correct many: upstream answers → a queue → the corrector in batches.

Every caller that corrects more than one answer runs these stages, each once, here:

- the **answer** stage asks the upstream for each row without an answer, at most ``concurrency``
  calls in flight, and knows who answered and how long it took (:class:`~aligner.contracts.correction.Asked`);
  a question given as a chat's messages then becomes the corrector's question (the last user
  message, or the conversation cut to the corrector's budget with the answer: see
  :mod:`aligner.contracts.conversation`), before the gate and the corrector see it;
- the **gate** stage (:func:`judge_rows`, only when the Aligner has a gate) asks the gate about a
  batch of answered rows in one call: an answer it does not flag is passed on as it came
  (``Correction.uncorrected`` with the verdict), the flagged ones go on to the corrector;
- the **queue** (:class:`~aligner.runtime.batch_queue.BatchQueue`, its own module) holds rows until the next stage is free, and hands them out
  in batches by one rule (:class:`Batching`): at most ``size``, after waiting at most ``max_wait``
  for company unless no more rows may join (the gate's queue and the corrector's);
- the **correct** stage (:func:`correct_rows`) corrects one batch in one corrector call and makes
  each row's :class:`~aligner.contracts.correction.Correction` once, its upstream time passed in.

Who runs what:

- ``Aligner.correct_batch`` / ``acorrect_batch``: :class:`Pipeline` gathering (every answer first,
  then batches of similar length: an asked answer's upstream time is its share of those calls);
- the batch job (``aligner correct --input``, ``aligner generate``): :class:`Pipeline` streaming
  (the corrector takes whatever answers are ready while the upstream goes on; a row's upstream
  time is its own call's; a failed row is recorded and the run goes on);
- the server: its :class:`~aligner.serve.batching.DynamicBatcher` queues requests' rows in a
  :class:`BatchQueue`, and its :class:`~aligner.gates.batching.GateBatcher` their gate calls
  (each request has asked its upstream on its own);
- ``aligner generate --engine ray``: :func:`answer_rows` in Ray tasks, :func:`judge_rows` and
  :func:`correct_rows` on Ray actors, Ray Data moving the rows between them.
"""
from __future__ import annotations

import asyncio
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..contracts.correction import EMPTY_ANSWER, Asked, Correction, correction_of, is_blank
from ..contracts.errors import AlignerError, ConfigError, CorrectorError, DataError, UpstreamError
from .batch_queue import Batching, BatchQueue, shortest_first

__all__ = ["Batching", "BatchQueue", "Failure", "Outcome", "Pipeline", "Row", "acorrect_rows", "ajudge_rows",
           "answer_rows", "correct_rows", "first_error", "is_row_error", "is_transient", "judge_rows",
           "length_buckets", "run_sync", "shortest_first", "uncorrected"]

if TYPE_CHECKING:
    from ..core.aligner import Aligner

#: 4xx statuses that are about one request (its content, its length), not about the setup.
_ROW_STATUSES = frozenset(range(400, 500)) - {401, 403, 404, 408, 409, 429}


def is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` is about this row (record it and go on), False when it is about the setup
    (a bad key, model or URL: every row would fail the same way, so stop)."""
    if isinstance(exc, UpstreamError):
        return exc.status not in (401, 403, 404)
    if isinstance(exc, (DataError, CorrectorError)):
        return True
    return isinstance(exc, ConfigError) and exc.field in ("question", "answer")


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the row (server error, timeout, no connection)."""
    return isinstance(exc, UpstreamError) and exc.status not in _ROW_STATUSES


@dataclass(eq=False)
class Row:
    """One answer to correct on its way through the stages."""

    #: the question; a chat's messages until the answer stage has turned them into the
    #: corrector's question (:meth:`~aligner.core.aligner.Aligner.question_for`).
    question: Any
    #: the answer; None until the upstream has given it.
    answer: str | None
    #: the caller's own handle on the row (an input position, a job's row).
    tag: Any = None
    #: who answered and how long it took, once known.
    asked: Asked | None = None


Failure = tuple[Row, str, AlignerError]  # the row, the stage ("upstream" or "corrector"), the error


# -- the stages ---------------------------------------------------------------------------------
async def answer_rows(upstream: Any, rows: Iterable[Row], *, concurrency: int, name: str = "",
                      on_failed: Callable[[list[Failure]], None] | None = None) -> list[Row]:
    """The upstream's answer for each row without one, at most ``concurrency`` calls in flight,
    each row's ``asked`` its own call's seconds; the rows answered. A row's failure goes to
    ``on_failed`` when it is about that row (else, or without ``on_failed``, it is raised)."""
    gate = asyncio.Semaphore(concurrency)
    answered: list[Row] = []

    async def one(row: Row) -> None:
        async with gate:
            if await _answer(upstream, row, name, on_failed):
                answered.append(row)

    await asyncio.gather(*(one(r) for r in rows if r.answer is None))
    return answered


async def _answer(upstream: Any, row: Row, name: str, on_failed: Callable[[list[Failure]], None] | None) -> bool:
    t0 = time.perf_counter()
    try:
        row.answer = await upstream.aanswer(row.question)
    except AlignerError as exc:
        if on_failed is None or not is_row_error(exc):
            raise
        on_failed([(row, "upstream", exc)])
        return False
    row.asked = Asked(time.perf_counter() - t0, name)
    return True


def _verdicts_on(aligner: "Aligner", rows: Sequence[Row], verdicts: Sequence[Any]
                 ) -> tuple[list[tuple[Row, Correction]], list[Row]]:
    passed: list[tuple[Row, Correction]] = []
    flagged: list[Row] = []
    for row, verdict in zip(rows, verdicts):
        row.asked = (row.asked or Asked()).judged(verdict)
        if verdict.flagged:
            flagged.append(row)
        else:  # not flagged: passed on as it came, no corrector call
            passed.append((row, Correction.uncorrected(row.question, row.answer or "", skipped=None,
                                                       corrector=aligner.corrector, asked=row.asked)))
    return passed, flagged


def judge_rows(aligner: "Aligner", rows: Sequence[Row]) -> tuple[list[tuple[Row, Correction]], list[Row]]:
    """The gate's verdict on answered rows, in one gate call (none without a gate): the rows it
    did not flag with their Corrections (the answer as it came, the verdict in ``asked.gate``), and
    the rows the corrector must see. The Aligner's on-error policy applies (see
    :mod:`aligner.gates.routing`)."""
    route = aligner.gate_route
    if route is None or not rows:
        return [], list(rows)
    return _verdicts_on(aligner, rows, route.verdicts([(r.question, r.answer or "") for r in rows]))


async def ajudge_rows(aligner: "Aligner", rows: Sequence[Row]) -> tuple[list[tuple[Row, Correction]], list[Row]]:
    """:func:`judge_rows` through the gate's async path (a server's :class:`GateBatcher`)."""
    route = aligner.gate_route
    if route is None or not rows:
        return [], list(rows)
    return _verdicts_on(aligner, rows, await route.averdicts([(r.question, r.answer or "") for r in rows]))


def correct_rows(aligner: "Aligner", rows: Sequence[Row], *, aspects: str | None = None, decoding: Any = None,
                 isolate: bool = False) -> tuple[list[tuple[Row, Correction]], list[Failure]]:
    """Correct answered rows in one corrector call, shortest first, each row's Correction made
    once with its ``asked`` and its share of the call's time. ``isolate``: a call one row spoils
    is retried row by row to find it (its failure recorded, the others corrected); a failure of
    the corrector server itself fails every row without retrying them one by one."""
    if not rows:
        return [], []
    try:
        return _corrected(aligner, rows, aspects, decoding), []
    except AlignerError as exc:
        if not isolate or not is_row_error(exc):
            raise
        if is_transient(exc) or len(rows) == 1:
            return [], [(r, "corrector", exc) for r in rows]
    done: list[tuple[Row, Correction]] = []
    failed: list[Failure] = []
    for r in rows:
        more, lost = correct_rows(aligner, [r], aspects=aspects, decoding=decoding, isolate=True)
        done += more
        failed += lost
    return done, failed


def _corrected(aligner: "Aligner", rows: Sequence[Row], aspects: str | None, decoding: Any,
               results: Sequence[Any] | None = None, seconds: float = 0.0) -> list[tuple[Row, Correction]]:
    """Each row's Correction (``results``: the corrector's, when already made, in ``rows``' order)."""
    order = _shortest_first(rows)
    if results is None:
        t0 = time.perf_counter()
        made = aligner.corrector.correct_results([(rows[i].question, rows[i].answer) for i in order],
                                                 aspects=aspects, decoding=decoding)
        seconds = time.perf_counter() - t0
        results = [None] * len(rows)
        for i, r in zip(order, made):
            results[i] = r
    each = seconds / len(rows)
    return [(row, correction_of(row.question, row.answer, r, corrector=aligner.corrector, asked=row.asked,
                                corrector_s=each)) for row, r in zip(rows, results)]  # type: ignore[arg-type]


async def acorrect_rows(aligner: "Aligner", rows: Sequence[Row], *, aspects: str | None = None,
                        decoding: Any = None) -> list[tuple[Row, Correction]]:
    """:func:`correct_rows` on the corrector's async path (its rows decoded by its decoder)."""
    order = _shortest_first(rows)
    t0 = time.perf_counter()
    made = await aligner.corrector.acorrect_results([(rows[i].question, rows[i].answer) for i in order],
                                                    aspects=aspects, decoding=decoding)
    results: list[Any] = [None] * len(rows)
    for i, r in zip(order, made):
        results[i] = r
    return _corrected(aligner, rows, aspects, decoding, results, time.perf_counter() - t0)


def length_buckets(pairs: Sequence[tuple[str, str]], size: int) -> list[list[int]]:
    """Positions of ``pairs`` in batches of ``size``, shortest question + answer first: the
    batches a gathering :class:`Pipeline` hands the corrector.

    A batch pads every prompt to its longest and (in transformers' ``generate``) decodes until its
    longest correction ends; a correction is about as long as its answer, so batching rows of
    similar length wastes the least work on padding and on rows that have finished. Characters
    stand in for tokens: the order only needs to be roughly right, and counting tokens would cost
    a tokenizer pass per row. The sort is stable, so equal lengths keep their input order.
    """
    order = shortest_first(pairs, lambda p: len(p[0]) + len(p[1]))
    return [order[start:start + size] for start in range(0, len(order), size)]


def _shortest_first(rows: Sequence[Row]) -> list[int]:
    return shortest_first(rows, _length)


def _length(row: Row) -> int:
    return len(row.question) + len(row.answer or "")


def uncorrected(aligner: "Aligner", row: Row) -> Correction:
    """The Correction of a row whose answer has no text: passed on as it came (``skipped="empty"``)."""
    return Correction.uncorrected(row.question, row.answer or "", skipped=EMPTY_ANSWER, corrector=aligner.corrector,
                                  asked=row.asked)


# -- the stages together --------------------------------------------------------------------------
Outcome = Callable[[list[tuple[Row, Correction]], list[Failure]], None]


class Pipeline:
    """The stages for one Aligner: ``run(rows)`` answers, queues and corrects them, handing each
    batch's Corrections and failed rows to ``on_result`` as they are made (not in input order).

    ``gather``: every answer is asked first, then the rows go to the corrector shortest first
    (``Aligner.correct_batch``); otherwise the corrector takes whatever is answered, in batches
    of at most ``batching.size``, while the upstream goes on (the batch job). ``blocking``: the
    corrector runs its sync path in one worker thread (else its async path on the loop).
    ``isolate``: a row's own failure (see :func:`is_row_error`) is handed on as a failure and the
    run goes on; without it the first failure ends the run and is raised. With a gate, its stage
    sits between the answers and the corrector's queue: gathering, one gate call for every answer
    (then only the flagged rows are batched for the corrector); streaming, the gate takes what is
    answered in batches of at most ``batching.size``.
    """

    def __init__(self, aligner: "Aligner", on_result: Outcome, *, batch_size: int, concurrency: int = 1,
                 gather: bool = False, blocking: bool = True, isolate: bool = False,
                 aspects: str | None = None, decoding: Any = None):
        self.aligner, self.on_result = aligner, on_result
        self.concurrency, self.gather, self.blocking, self.isolate = max(1, concurrency), gather, blocking, isolate
        self.aspects, self.decoding = aspects, decoding
        if gather:  # the whole input waits until every answer is in: then shortest first
            self.batching, self.queue_size = Batching(batch_size, max_wait=math.inf, length=_length), 0
            self.gate_batching = Batching(sys.maxsize, max_wait=math.inf)  # one gate call for every answer
        else:  # a bounded queue: a slow corrector holds the upstream back instead of piling answers up
            self.batching, self.queue_size = Batching(batch_size), max(2 * batch_size, self.concurrency)
            self.gate_batching = Batching(batch_size)

    @property
    def upstream_name(self) -> str:
        upstream = self.aligner.upstream
        return getattr(upstream, "name", "") if upstream is not None else ""

    async def run(self, rows: Sequence[Row]) -> None:
        queue: BatchQueue[Row] = BatchQueue(self.batching, self.queue_size)
        judging: BatchQueue[Row] | None = None
        if self.aligner.gate_route is not None:
            judging = BatchQueue(self.gate_batching, self.queue_size)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corrector") if self.blocking else None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._feed(rows, judging or queue))
                if judging is not None:
                    group.create_task(self._judge(judging, queue))
                group.create_task(self._drain(queue, executor))
        except BaseExceptionGroup as group_error:  # the first failure stopped the others: raise it alone
            raise first_error(group_error) from None
        finally:
            if executor is not None:
                executor.shutdown(wait=True)

    async def _feed(self, rows: Sequence[Row], queue: BatchQueue[Row]) -> None:
        name = self.upstream_name
        failed = (lambda fails: self.on_result([], fails)) if self.isolate else None
        for r in rows:
            if r.answer is not None and r.asked is None:
                r.asked = Asked(0.0, name)
        if self.gather:
            t0 = time.perf_counter()
            answered = await answer_rows(self.aligner.upstream, rows, concurrency=self.concurrency, name=name,
                                         on_failed=failed)
            share = (time.perf_counter() - t0) / len(answered) if answered else 0.0
            for r in answered:  # asked together: each row's share of the calls
                r.asked = Asked(share, name)
            for r in rows:
                if r.answer is not None:
                    await self._put(r, queue)
        else:
            gate = asyncio.Semaphore(self.concurrency)

            async def ask(r: Row) -> None:
                try:
                    if await _answer(self.aligner.upstream, r, name, failed):
                        await self._put(r, queue)
                finally:
                    gate.release()

            async with asyncio.TaskGroup() as tasks:
                for r in rows:
                    if r.answer is not None:
                        await self._put(r, queue)
                        continue
                    await gate.acquire()
                    tasks.create_task(ask(r))
        await queue.close()

    async def _put(self, row: Row, queue: BatchQueue[Row]) -> None:
        """An answered row on to the next stage, its question now the corrector's."""
        row.question = await self.aligner.aquestion_for(row.question, row.answer or "", aspects=self.aspects)
        if is_blank(row.answer):  # nothing to correct: never queued for the corrector
            self.on_result([(row, uncorrected(self.aligner, row))], [])
        else:
            await queue.put(row)

    async def _judge(self, judging: BatchQueue[Row], queue: BatchQueue[Row]) -> None:
        """The gate stage: each batch judged in one call, the unflagged handed on, the rest queued."""
        while batch := await judging.take():
            if self.blocking:
                passed, flagged = await asyncio.to_thread(judge_rows, self.aligner, batch)
            else:
                passed, flagged = await ajudge_rows(self.aligner, batch)
            if passed:
                self.on_result(passed, [])
            for row in flagged:
                await queue.put(row)
        await queue.close()

    async def _drain(self, queue: BatchQueue[Row], executor: ThreadPoolExecutor | None) -> None:
        loop = asyncio.get_running_loop()
        while batch := await queue.take():
            if executor is not None:
                done, failed = await loop.run_in_executor(executor, lambda: correct_rows(
                    self.aligner, batch, aspects=self.aspects, decoding=self.decoding, isolate=self.isolate))
            else:
                done, failed = await acorrect_rows(self.aligner, batch, aspects=self.aspects,
                                                   decoding=self.decoding), []
            self.on_result(done, failed)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that stopped a task group (an AlignerError first), out of its nested groups."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    return next((e for e in leaves if isinstance(e, AlignerError)), leaves[0])


def run_sync(make: Callable[[], Any], *, threads: int = 8) -> Any:
    """Run the coroutine ``make()`` returns to its end from sync code — also from code already
    inside an event loop (a notebook): then in a thread of its own. Its loop's worker threads (a
    sync upstream's calls) number at least ``threads``, so a concurrency asked for is had."""
    import os

    async def main() -> Any:
        workers = max(threads, min(32, (os.cpu_count() or 1) + 4))
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aligner-upstream"))
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()
