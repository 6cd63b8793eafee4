"""What a plain and a streamed chat reply both do with the ``Correction`` they serve.

Either reply may be bypassed by the client (``X-Aligner-Bypass``) or passed on uncorrected; either
shows the same ``aligner`` object beside the answer, writes the same corrections-log row and the
same access-log fields. Those steps live here, once, so that the JSON reply (:mod:`.chat`) and the
event stream (:mod:`.streaming`) cannot drift apart.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Request

from ..contracts.correction import Asked, Correction
from ..runtime.records import record_of

if TYPE_CHECKING:
    from .request import ChatRequest
    from .state import ServerState

log = logging.getLogger("aligner.serve")

BYPASS_HEADER = "x-aligner-bypass"


def wants_bypass(request: Request) -> bool:
    """The client asked for the upstream's answer as it came (allowed with ``--allow-bypass``)."""
    return request.headers.get(BYPASS_HEADER, "").strip().lower() in ("1", "true", "yes", "on")


def asked_upstream(state: ServerState, seconds: float) -> Asked:
    """The server asked the upstream itself (with the whole chat): its name and seconds."""
    upstream = state.aligner.upstream
    return Asked(seconds, getattr(upstream, "name", "") if upstream is not None else "")


def served_uncorrected(state: ServerState, req: ChatRequest, answer: str, t_up: float,
                       skipped: str | None) -> Correction:
    """The Correction of an answer served as it came: bypassed (``skipped`` None), tool calls,
    requested JSON, no text."""
    return Correction.uncorrected(req.question, answer, skipped=skipped, corrector=state.aligner.corrector,
                                  asked=asked_upstream(state, t_up))


def aligner_meta(state: ServerState, c: Correction, bypassed: bool, **extra: Any) -> dict[str, Any]:
    """The ``aligner`` object (``Correction.meta``) as this server shows it: its upstream without
    the address, whether the client bypassed the corrector, and ``extra`` (``usage``, ``skipped``).
    ``fallback``: the corrector's output was degenerate and the original answer was served
    instead (a stream may have shown part of it already)."""
    return c.meta(upstream=state.upstream_label, bypassed=bypassed, **extra)


async def record_correction(state: ServerState, req: ChatRequest, c: Correction, cid: str) -> None:
    """Append to the corrections log (``cid``: the id the client is given). The write is
    shielded: a client leaving at that moment (which cancels a stream's generator) must not lose
    a correction it was served."""
    if state.records is None:
        return
    try:
        await asyncio.shield(asyncio.to_thread(state.records.write, record_of(c, model=req.model, id=cid,
                                                                              replica=state.replica)))
    except asyncio.CancelledError:
        raise  # the write itself goes on in its thread
    except Exception:  # never fail a served answer because the log could not be written
        log.exception("could not write to the corrections log %s", state.records.where)


def log_served(request: Request, c: Correction, **extra: Any) -> None:
    """The access-log fields of a served answer."""
    request.state.log.update(upstream_ms=round(c.timings["upstream"] * 1000, 1),
                             corrector_ms=round(c.timings.get("corrector", 0) * 1000, 1),
                             batch_size=c.timings.get("batch_size"), **extra)

