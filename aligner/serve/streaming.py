"""The streamed chat reply: OpenAI ``chat.completion.chunk`` server-sent events, the correction
sent piece by piece as the corrector decodes it (``"stream": true``).

The upstream's answer has been fetched whole by then (:mod:`.chat`); what streams is the
correction, through the dynamic batcher like any plain request's row. A reply passed on uncorrected
(tool calls, requested JSON) streams as it came. The ``aligner`` object rides on the final chunk; an
error after the first event can no longer change the status, so it is sent as an event of its own.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..adapters.base import UpstreamReply
from ..contracts.errors import AlignerError
from .errors import APIError
from .replies import aligner_meta, asked_upstream, log_served, record_correction, served_uncorrected, wants_bypass

if TYPE_CHECKING:
    from .request import ChatRequest
    from .state import ServerState

log = logging.getLogger("aligner.serve")


def streamed_reply(state: ServerState, req: ChatRequest, reply: UpstreamReply, request: Request, t_up: float,
                   deadline: float, skipped: str | None) -> StreamingResponse:
    """The event-stream response to a streamed request whose upstream answer is ``reply``: the
    answer as it came when it is ``skipped`` (the reason), its correction otherwise."""
    stream = _sse_uncorrected(state, req, reply, request, t_up, skipped) if skipped else \
        _sse(state, req, reply, request, t_up, deadline)
    return _SSEResponse(stream, media_type="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _usage_chunk(head: dict[str, Any], reply: UpstreamReply) -> str:
    """The last event of a stream with ``include_usage``: the upstream's own usage (null when the
    upstream reports none)."""
    return "data: " + json.dumps({**head, "choices": [], "usage": reply.usage}) + "\n\n"


def _chunk_head(req: ChatRequest) -> dict[str, Any]:
    """What every chat.completion.chunk event of one streamed reply shares (one id, one time)."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": req.model}


def _chunk(head: dict[str, Any], delta: dict, finish: str | None = None, **extra: Any) -> str:
    """One chat.completion.chunk server-sent event of the reply ``head`` names."""
    return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                      "finish_reason": finish}], **extra},
                                 ensure_ascii=False) + "\n\n"


async def _sse_uncorrected(state: ServerState, req: ChatRequest, reply: UpstreamReply, request: Request, t_up: float,
                           skipped: str) -> AsyncIterator[str]:
    """A reply passed on as it came (tool calls, requested JSON) as chat.completion.chunk events."""
    head = _chunk_head(req)
    event = partial(_chunk, head)

    yield event({"role": "assistant", "content": None if reply.null_content else ""})
    if reply.text:
        yield event({"content": reply.text})
    if reply.refusal is not None:
        yield event({"refusal": reply.refusal})
    if reply.tool_calls:
        yield event({"tool_calls": [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]})
    c = served_uncorrected(state, req, reply.text, t_up, skipped)
    meta = aligner_meta(state, c, False, id=head["id"], usage=None)
    state.metrics.count_served(c, skipped=skipped)
    yield event({}, reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"), aligner=meta)
    if req.include_usage:
        yield _usage_chunk(head, reply)
    state.served += 1
    request.state.log.update(upstream_ms=round(t_up * 1000, 1), skipped=skipped)
    yield "data: [DONE]\n\n"


async def _sse(state: ServerState, req: ChatRequest, reply: UpstreamReply, request: Request, t_up: float,
               deadline: float) -> AsyncIterator[str]:
    """The correction as OpenAI chat.completion.chunk events, streamed as the corrector decodes.

    It is ``Aligner.astream`` through the dynamic batcher, a row of a batch like any plain
    request. Leaving early — the client disconnects (the response cancels this generator), the
    deadline passes — cancels the row, so the model stops generating for it within a step. The
    corrections-log row is written *before* the final events: a client that hangs up on
    ``[DONE]`` cannot lose it.
    """
    head = _chunk_head(req)
    event = partial(_chunk, head)

    def error(err: APIError) -> str:
        return "data: " + json.dumps(err.body()) + "\n\n"

    bypassed = wants_bypass(request)
    answer = reply.text
    started = request.scope.get("state", {}).get("t0")
    state.in_flight += 1
    stream = None
    try:
        yield event({"role": "assistant", "content": ""})
        if bypassed:
            c = served_uncorrected(state, req, answer, t_up, None)
            yield event({"content": answer})
        else:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    stream = state.serving.astream(req.messages, answer, objectives=req.objectives,
                                                   decoding=req.decoding, asked=asked_upstream(state, t_up))
                    async for piece in stream:
                        if started is not None:  # the first corrected piece: from the request's start
                            state.metrics.count_first_piece(time.perf_counter() - started)
                            started = None
                        yield event({"content": piece})
            except TimeoutError:
                yield error(APIError(504, "the correction took longer than the server's request timeout.",
                                     code="timeout"))
                yield "data: [DONE]\n\n"
                return
            except AlignerError as exc:
                yield error(APIError(400, str(exc), param=exc.field, code="invalid_value"))
                yield "data: [DONE]\n\n"
                return
            except Exception as exc:
                log.exception("streamed correction failed")
                yield error(APIError(500, f"the corrector failed ({type(exc).__name__}); the server log has "
                                          "the details.", code="corrector_error"))
                yield "data: [DONE]\n\n"
                return
            c = stream.correction
            state.batcher.stats.count_fallback(c.fallback_reason)
        state.served += 1
        log_served(request, c, fallback=c.fallback_reason)
        state.metrics.count_served(c, bypassed=bypassed)  # before the write: see chat._complete
        if not bypassed:  # before the last events: the client may hang up on [DONE]
            await record_correction(state, req, c, head["id"])
        yield event({}, "stop", aligner=aligner_meta(state, c, bypassed, id=head["id"]))
        if req.include_usage:
            yield _usage_chunk(head, reply)
        yield "data: [DONE]\n\n"
    finally:
        if stream is not None:
            await stream.aclose()  # a stream left early: its row stops generating
        state.in_flight -= 1


class _SSEResponse(StreamingResponse):
    """A streaming response that closes its event generator however the response ends, so a
    stream whose client disconnected while an event was being sent still cancels its row now,
    not whenever the garbage collector finalises the generator."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
