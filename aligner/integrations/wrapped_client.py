"""``aligner.wrap``: an OpenAI client whose chat answers come back corrected.

The app keeps its code; only the client object changes. The answer is corrected for the request's
``messages``: the last user message, or the whole conversation when the corrector was trained on
conversations (:mod:`aligner.contracts.conversation`). Each choice's corrected text replaces
``message.content``; the upstream's text stays beside it as ``message.original_content`` and the
response carries an ``aligner`` object (``Correction.meta()``: the corrector id, timings, whether
the answer changed — the keys the proxy serves). With ``stream=True`` the upstream stream is read
in full (a correction needs the whole answer), then the correction is streamed as
``ChatCompletionChunk`` objects, the last one carrying ``aligner``.

An answer with no text — ``content: null`` (a refusal, a content filter, a turn of tool calls) or
blank — is not corrected: the client gets the upstream's message (or, streamed, its chunks) as
it came, with ``aligner.skipped`` saying why (``"empty"``, or ``"tool_calls"``).
"""
from __future__ import annotations

import inspect
import sys
import time
from typing import Any, AsyncIterator, Iterator

from ..contracts.correction import Asked, Correction, is_blank
from ..contracts.errors import ConfigError
from ..contracts.messages import question_of
from ..core.aligner import Aligner

__all__ = ["CorrectedClient", "question_of", "wrap"]


def _chunk(template: Any, index: int, content: str | None, finish: str | None, extra: dict | None = None) -> Any:
    from openai.types.chat import ChatCompletionChunk

    data = {"id": template.get("id", "chatcmpl-aligner"), "object": "chat.completion.chunk",
            "created": template.get("created", int(time.time())), "model": template.get("model", ""),
            "choices": [{"index": index, "delta": {"role": "assistant", "content": content} if content is not None
                         else {}, "finish_reason": finish}]}
    if extra:
        data["aligner"] = extra
    return ChatCompletionChunk.model_validate(data)


def _absorb(chunk: Any, answers: dict[int, str]) -> dict[str, Any]:
    """Add a streamed chunk's text to its choice's answer; return the chunk's header fields."""
    for ch in chunk.choices:
        answers[ch.index] = answers.get(ch.index, "") + (ch.delta.content or "")
    return {"id": chunk.id, "created": chunk.created, "model": chunk.model}


def _asked(model: Any, seconds: float) -> Asked:
    """The client asked the upstream, not the Aligner: which model answered and how long it took
    (``upstream``, ``timings.upstream``), as the proxy counts it."""
    return Asked(seconds, str(model or ""))


def _tool_turn(aligner: Aligner, question: Any, answer: str, tool_calls: Any, asked: Asked) -> Correction | None:
    """A turn of tool calls with no text is passed on as it came (``skipped="tool_calls"``, its
    ``question`` the corrector's, as for a corrected one); None for any other answer, which the
    Aligner corrects (or skips as ``"empty"``)."""
    if tool_calls and is_blank(answer):
        return Correction.uncorrected(aligner.question_for(question, answer), answer, skipped="tool_calls",
                                      corrector=aligner.corrector, asked=asked)
    return None


def _replace(resp: Any, choice: Any, c: Correction) -> None:
    """Put the correction in the choice, keeping the upstream's text beside it; a choice that was
    not corrected (no text) keeps its message as it came."""
    if c.skipped:
        choice.message.original_content = choice.message.content
    else:
        choice.message.original_content = c.answer
        choice.message.content = c.correction
    resp.aligner = c.meta()


def _choices(aligner: Aligner, question: Any, chunks: list[Any], answers: dict[int, str],
             asked: Asked) -> Iterator[tuple[int, str, list[Any], Correction | None]]:
    """Each streamed choice: its index, its answer, its own chunks as they came, and its
    Correction when it is a turn of tool calls passed on as it came (else None: to correct)."""
    for index, answer in sorted(answers.items()):
        mine = [chunk.model_copy(update={"choices": [ch for ch in chunk.choices if ch.index == index]})
                for chunk in chunks if any(ch.index == index for ch in chunk.choices)]
        calls = any(ch.delta.tool_calls for chunk in mine for ch in chunk.choices)
        yield index, answer, mine, _tool_turn(aligner, question, answer, calls, asked)


def _ending(mine: list[Any], head: dict[str, Any], index: int, c: Correction) -> list[Any]:
    """A choice's last chunks: for a correction, its stop chunk carrying ``aligner``; for an
    answer that was not corrected, its own chunks as they came (tool-call deltas, a refusal, its
    finish reason), the last one carrying ``aligner``."""
    if not c.skipped:
        return [_chunk(head, index, None, "stop", c.meta())]
    if mine:
        mine[-1].aligner = c.meta()
    return mine


class _Completions:
    def __init__(self, owner: "CorrectedClient"):
        self._owner = owner

    def create(self, **kwargs: Any) -> Any:
        owner = self._owner
        question_of(kwargs.get("messages"))  # a list without a user message is refused before the upstream is asked
        question = kwargs["messages"]  # the Aligner renders them as its corrector was trained (aligner.contracts.conversation)
        if owner.is_async:
            return self._acreate(question, kwargs)
        t0 = time.perf_counter()
        if kwargs.get("stream"):
            return self._stream(question, owner.client.chat.completions.create(**kwargs), kwargs, t0)
        resp = owner.client.chat.completions.create(**kwargs)
        asked = _asked(kwargs.get("model") or resp.model, time.perf_counter() - t0)
        for choice in resp.choices:
            text, calls = choice.message.content or "", getattr(choice.message, "tool_calls", None)
            _replace(resp, choice, _tool_turn(owner.aligner, question, text, calls, asked)
                     or owner.aligner.correct(question, text, asked=asked))
        return resp

    def _stream(self, question: Any, upstream: Any, kwargs: dict[str, Any], t0: float) -> Iterator[Any]:
        owner, head, answers, chunks = self._owner, {}, {}, []
        for chunk in upstream:
            chunks.append(chunk)
            head = _absorb(chunk, answers)
        asked = _asked(kwargs.get("model") or head.get("model"), time.perf_counter() - t0)
        for index, answer, mine, c in _choices(owner.aligner, question, chunks, answers, asked):
            if c is None:  # corrected: the correction's pieces as they are generated
                stream = owner.aligner.stream(question, answer, asked=asked)
                yield from (_chunk(head, index, piece, None) for piece in stream)
                c = stream.correction
            yield from _ending(mine, head, index, c)

    async def _acreate(self, question: Any, kwargs: dict[str, Any]) -> Any:
        owner = self._owner
        t0 = time.perf_counter()
        resp = await owner.client.chat.completions.create(**kwargs)
        if kwargs.get("stream"):
            return self._astream(question, resp, kwargs, t0)
        asked = _asked(kwargs.get("model") or resp.model, time.perf_counter() - t0)
        for choice in resp.choices:
            text, calls = choice.message.content or "", getattr(choice.message, "tool_calls", None)
            _replace(resp, choice, _tool_turn(owner.aligner, question, text, calls, asked)
                     or await owner.aligner.acorrect(question, text, asked=asked))
        return resp

    async def _astream(self, question: Any, upstream: Any, kwargs: dict[str, Any], t0: float) -> AsyncIterator[Any]:
        owner, head, answers, chunks = self._owner, {}, {}, []
        async for chunk in upstream:
            chunks.append(chunk)
            head = _absorb(chunk, answers)
        asked = _asked(kwargs.get("model") or head.get("model"), time.perf_counter() - t0)
        for index, answer, mine, c in _choices(owner.aligner, question, chunks, answers, asked):
            if c is None:
                stream = owner.aligner.astream(question, answer, asked=asked)
                async for piece in stream:
                    yield _chunk(head, index, piece, None)
                c = stream.correction
            for chunk in _ending(mine, head, index, c):
                yield chunk


def is_async_client(client: Any) -> bool:
    """Whether ``client.chat.completions.create`` must be awaited. An ``openai`` client is what
    its class is (``AsyncOpenAI`` and its subclasses, e.g. ``AsyncAzureOpenAI``, whatever a
    subclass is called); any other client by whether ``create`` is a coroutine function (looked
    at through decorators such as openai's ``required_args``, which hide it from
    ``inspect.iscoroutinefunction``). openai is not imported here: an openai client means it is."""
    openai = sys.modules.get("openai")
    if openai is not None:
        if isinstance(client, openai.AsyncOpenAI):
            return True
        if isinstance(client, openai.OpenAI):
            return False
    create = client.chat.completions.create
    return inspect.iscoroutinefunction(create) or inspect.iscoroutinefunction(inspect.unwrap(create))


class _Chat:
    def __init__(self, owner: "CorrectedClient"):
        self.completions = _Completions(owner)


class CorrectedClient:
    """Proxy for an ``openai.OpenAI``/``AsyncOpenAI`` client; everything but chat passes through."""

    def __init__(self, client: Any, aligner: Aligner):
        self.client = client
        self.aligner = aligner
        self.is_async = is_async_client(client)
        self.chat = _Chat(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def wrap(client: Any, corrector: Any = None, **aligner_kwargs: Any) -> CorrectedClient:
    """Wrap an OpenAI client so ``chat.completions.create`` answers are corrected."""
    if not callable(getattr(getattr(getattr(client, "chat", None), "completions", None), "create", None)):
        raise ConfigError(f"expected an openai.OpenAI or AsyncOpenAI client, got {type(client).__name__}.",
                          field="client", fix="pass openai.OpenAI(...) (or any client with .chat.completions).")
    return CorrectedClient(client, Aligner(None, corrector, **aligner_kwargs))
