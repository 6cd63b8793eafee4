"""``POST /v1/chat/completions``: the upstream asked, its answer corrected, returned as OpenAI's
``chat.completion`` (or, streamed, by :mod:`.streaming`).

The question the Aligner corrects for is the last user message — or the whole conversation, for a
corrector trained on conversations (:mod:`aligner.contracts.conversation`) —; the whole message list goes to the
upstream, with every request field the proxy does not read itself (``tools``, ``response_format``,
``seed``...) when the upstream speaks the OpenAI protocol. An answer that is not prose is passed on
uncorrected, and the ``aligner`` object says so (``"skipped"``): tool calls, and the JSON a
``response_format`` asked for. ``usage`` is the upstream's own; the corrector's tokens are in
``aligner.usage``. Only the corrector step is batched (``DynamicBatcher``): upstream calls run
concurrently and independently. An upstream's failure is mapped by :func:`.errors.upstream_error`;
its address stays in the server log.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..adapters.base import UpstreamReply, bare_message
from ..contracts.correction import EMPTY_ANSWER
from ..contracts.errors import AlignerError, ConfigError, UpstreamError
from .auth import authorize
from .body import check_content_type, read_json
from .errors import APIError, upstream_error
from .replies import aligner_meta, asked_upstream, log_served, record_correction, served_uncorrected, wants_bypass
from .request import validate
from .streaming import streamed_reply

if TYPE_CHECKING:
    from .request import ChatRequest
    from .state import ServerState

log = logging.getLogger("aligner.serve")


def add_chat_route(app: FastAPI, state: ServerState) -> None:
    """Register ``POST /v1/chat/completions`` on the server's app."""
    config = state.config

    @app.post("/v1/chat/completions")
    @app.post("/v1/chat/completions/", include_in_schema=False)
    async def chat_completions(request: Request) -> Any:
        authorize(request, state)
        check_content_type(request.headers.get("content-type"))
        if wants_bypass(request) and not config.allow_bypass:
            raise APIError(403, "the X-Aligner-Bypass header is turned off on this server: every answer is "
                                "corrected (its operator can allow the header with --allow-bypass).",
                           code="bypass_disabled")
        body = await read_json(request, config.max_body_bytes, config.body_timeout)
        req = validate(body, state)
        request.state.log = {"model": req.model, "stream": req.stream, "bypass": wants_bypass(request),
                             "question": req.question}
        if not wants_bypass(request) and not req.json_mode:
            await _check_fits(state, req)  # a client error is a 400 whether streamed or not
        state.in_flight += 1
        deadline = time.perf_counter() + config.request_timeout
        try:
            if req.stream:
                reply, t_up = await _with_deadline(_get_answer(state, req), deadline, "upstream")
                return streamed_reply(state, req, reply, request, t_up, deadline, _skipped(req, reply))
            return await _with_deadline(_complete(state, req, request), deadline, "request")
        finally:
            state.in_flight -= 1


async def _check_fits(state: ServerState, req: ChatRequest) -> None:
    """Refuse a question too long for the corrector before the upstream is asked (and paid for)
    and before a stream starts: the corrector's ``fit`` raises when the question alone is over its
    input budget, whatever the answer. Tokenising runs off the event loop."""
    try:
        aspects = state.aligner.aspects(objectives=req.objectives)
        await asyncio.to_thread(partial(state.aligner.corrector.fit, req.question, "", aspects=aspects))
    except ConfigError as exc:
        raise APIError(400, f"messages: the question (last user message) is too long for the corrector: "
                            f"{bare_message(exc)}", param="messages", code="context_length_exceeded") from exc


async def _with_deadline(coro: Any, deadline: float, what: str) -> Any:
    remaining = deadline - time.perf_counter()
    try:
        async with asyncio.timeout(max(0.0, remaining)):
            return await coro
    except TimeoutError as exc:
        raise APIError(504, f"the {what} took longer than the server's request timeout.",
                       code="timeout") from exc


async def _get_answer(state: ServerState, req: ChatRequest) -> tuple[UpstreamReply, float]:
    """The upstream's whole reply (text, tool calls, finish reason, usage) and the seconds it took;
    with no upstream configured, the final assistant message as the reply (0 seconds)."""
    t0 = time.perf_counter()
    upstream = state.aligner.upstream
    messages = req.messages
    if upstream is None:
        last = messages[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
            raise APIError(400, "this server has no upstream: send the answer to correct as the final "
                                "assistant message (after the user question).", param="messages",
                           code="invalid_value")
        return UpstreamReply(last["content"]), 0.0
    try:
        reply = await upstream.acomplete(messages, **req.params)
    except UpstreamError as exc:
        # The address goes to the operator's log, not to the client; the upstream's own error
        # text only with --log-prompts (it may quote the prompt).
        detail = str(exc) if state.config.log_prompts else \
            f"{type(exc).__name__}, status {exc.status} (error text not logged: it may quote the prompt)"
        log.warning("upstream %s failed: %s", upstream.name, detail)
        state.metrics.count_upstream_error(exc)
        raise upstream_error(exc) from exc
    if not isinstance(reply, UpstreamReply) or not isinstance(reply.text, str):
        raise APIError(502, "the upstream's answer is not text.", code="upstream_error")
    state.metrics.count_upstream(time.perf_counter() - t0, reply.usage)
    return reply, time.perf_counter() - t0


def _skipped(req: ChatRequest, reply: UpstreamReply) -> str | None:
    """Why this answer goes back uncorrected, or None: tool calls are actions for the client's code
    to run, and JSON the client asked for is data — rewriting either into prose would break the
    client. A tool-call turn's text (if any) goes back as it came too; the answer that follows
    the tool's result is a later request, and that one is corrected. An answer with no text
    (``content: null`` — a refusal, a content filter — or blank) has nothing to correct: a
    corrector given none writes one from the question alone, which nobody asked for."""
    if reply.tool_calls:
        return "tool_calls"
    if not reply.text.strip():
        return EMPTY_ANSWER
    if req.json_mode:
        return "response_format"
    return None


async def _unless_disconnected(request: Request, work: Any) -> Any:
    """Await ``work`` (a correction), cancelling it if the client disconnects first: its row then
    stops generating within a step instead of decoding for nobody. The body has been read, so
    the next ASGI message is the disconnect (uvicorn sends it when the client goes)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise APIError(499, "the client closed the connection.", code="client_closed_request")
        return task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _complete(state: ServerState, req: ChatRequest, request: Request) -> JSONResponse:
    """The plain (not streamed) reply: the upstream's answer, corrected unless bypassed or skipped."""
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    reply, t_up = await _get_answer(state, req)
    bypassed = wants_bypass(request)
    skipped = _skipped(req, reply)
    if bypassed or skipped:
        c = served_uncorrected(state, req, reply.text, t_up, skipped)
    else:
        try:
            c = await _unless_disconnected(request, state.serving.acorrect(
                req.messages, reply.text, objectives=req.objectives, decoding=req.decoding,
                asked=asked_upstream(state, t_up)))
        except AlignerError as exc:
            raise APIError(400, str(exc), param=exc.field, code="invalid_value") from exc
        state.batcher.stats.count_fallback(c.fallback_reason)
    # counted before the log's write: a request cancelled during the (shielded) write still has its row
    state.metrics.count_served(c, skipped=skipped, bypassed=bypassed)
    if not (bypassed or skipped):
        await record_correction(state, req, c, cid)
    log_served(request, c, skipped=skipped)
    state.served += 1
    message: dict[str, Any] = {"role": "assistant", "content": c.correction}
    finish = "stop"
    if skipped:  # the upstream's message as it came
        message = {"role": "assistant", "content": None if reply.null_content else reply.text}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    meta = aligner_meta(state, c, bypassed, id=cid, usage=c.metadata.get("usage"))
    return JSONResponse({
        "id": cid, "object": "chat.completion", "created": int(time.time()),
        "model": req.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": reply.usage, "aligner": meta})

