"""Per-row control of a (batched) generation, for every backend: the request's handle on its row.

A local transformers model, a remote completions endpoint and the server's batcher all decode rows
the same way from the caller's side: a row can be cancelled from any thread, carries its own token
cap and guard, and streams its text through ``on_text`` / ``on_end``. So this lives beside the
settings (:mod:`aligner.contracts.decoding`), not inside the local runtime that is only one of its users.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


#: tokens of a row's tail decoded for its guard (enough for the guard's tail), every few steps;
#: the local runtime and the lean loop of :mod:`aligner.runtime.decode_loop` read the same number (here,
#: beside the row, so neither imports the other for it).
GUARD_WINDOW = 256


@dataclass(eq=False)
class RowControl:
    """One request's handle on its row of a (batched) generation.

    The request owns it: ``cancel()`` — from any thread, when its client has gone or its deadline
    has passed — stops the row at the next decoding step while the other rows of the batch go on.
    The generator fills in ``steps`` and ``stop_reason`` (``eos``, ``length``, ``cap``, ``stop``,
    ``marker``, ``repetition``, ``cancelled``, ``error``).
    """

    #: this row's own cap on new tokens (the guard's answer-relative cap); None = the batch's.
    max_new_tokens: int | None = None
    #: an :class:`aligner.runtime.guard.Guard`: judges the text's tail after every step.
    guard: Any = None
    #: receives the row's text as it becomes stable (a stream); called in the generating thread.
    on_text: Callable[[str], None] | None = None
    #: called once the row has finished (its last text delivered), even if others go on.
    on_end: Callable[[], None] | None = None
    steps: int = 0
    stop_reason: str | None = None
    #: ``steps`` when ``cancel()`` was called: ``steps - cancelled_at`` is how far it ran after.
    cancelled_at: int | None = None
    #: stage times measured outside the decoding itself (a batching server's ``queue``,
    #: ``batch_size``, ``corrector``), which the row's result and ``Correction.timings`` then show.
    timings: dict[str, float] = field(default_factory=dict)
    _event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        if not self._event.is_set():
            self.cancelled_at = self.steps
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def steps_after_cancel(self) -> int | None:
        return None if self.cancelled_at is None else self.steps - self.cancelled_at


def iterate_row(row: RowControl, generate: Callable[[], Any]) -> Iterator[str]:
    """``row``'s text pieces as ``generate()`` (which decodes ``row``) produces them in a worker
    thread (the one bridge, :func:`aligner.contracts.streaming.items_from_thread`, over a row's
    ``on_text``/``on_end`` sinks), so every backend's stream ends, cancels and surfaces errors
    alike. A consumer that leaves early cancels the row (it stops within a step) instead of
    letting it run on behind the model lock."""
    from aligner.contracts.streaming import END, items_from_thread

    def produce(emit: Callable[[Any], None]) -> None:
        row.on_text, row.on_end = emit, lambda: emit(END)
        generate()

    return items_from_thread(produce, on_abandon=row.cancel)


def notify_end(row: RowControl) -> None:
    """Tell the row's consumer it has finished; a consumer that has gone is not the batch's problem."""
    if row.on_end is not None:
        try:
            row.on_end()
        except Exception:  # a consumer that has gone (closed loop) must not stop the batch
            pass
