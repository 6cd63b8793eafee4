"""The Aligner as a LiteLLM proxy guardrail: answers corrected inside a proxy teams already run.

A LiteLLM proxy (``litellm --config config.yaml``) loads custom guardrails by module path; this one
rewrites the response after the call (``mode: post_call``) with the project's
:class:`~aligner.core.aligner.Aligner`::

    guardrails:
      - guardrail_name: aligner
        litellm_params:
          guardrail: aligner.integrations.litellm.AlignerGuardrail
          mode: post_call
          default_on: true
          corrector: aligner/aligner-7b-v1.0   # or a path, an http(s)://…/v1 server, demo; a list stacks them
          # template, objectives, context, gate, gate_threshold, gate_min_severity, gate_on_error,
          # device, max_new_tokens, max_batch_size, batch_wait_ms: as for `aligner serve`

The corrector is loaded once per proxy process, when the proxy starts (a bad setting stops the
proxy with the error: LiteLLM starts *without* a guardrail whose constructor raises a
``ValueError``, which for this one would mean answers going out uncorrected, so its set-up errors
are :class:`GuardrailSetupError`). Concurrent requests are batched together for the corrector, each
stage of a stack on its own, as ``aligner serve`` batches them. The question is taken from the
request's ``messages`` as the corrector was trained (the last user message or the conversation,
:mod:`aligner.contracts.conversation`).

A corrected reply carries what ``aligner serve`` returns: each choice's ``message.content`` is the
correction, ``message.original_content`` the upstream's answer, and the response an ``aligner``
object (``Correction.meta()``: the original, the corrector, timings, ``changed``...). A streamed
reply is read to its end (a correction needs the whole answer), then the correction is streamed
back as chunks, the last one carrying ``aligner`` (also in its ``provider_specific_fields``, where
LiteLLM's own client keeps extra fields). Replies that are not prose — tool calls, or no
text — go back as they came, with ``aligner.skipped`` saying why. Upstream errors never reach the
guardrail: the proxy returns them as it always does.

LiteLLM's guardrail API moves fast; this was built on the ``CustomGuardrail`` of the LiteLLM the
``proxy`` extra pins (read from its source: ``async_post_call_success_hook`` and
``async_post_call_streaming_iterator_hook``).
"""
from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from litellm.integrations.custom_guardrail import CustomGuardrail

from ..contracts.errors import AlignerError

log = logging.getLogger("aligner.litellm")

#: the guardrail's own ``litellm_params`` settings, beside LiteLLM's (``guardrail``, ``mode``, ``default_on``)
SETTINGS = ("corrector", "template", "objectives", "context", "gate", "gate_threshold", "gate_min_severity",
            "gate_on_error", "device", "max_new_tokens", "max_batch_size", "batch_wait_ms")
#: where a response records the guardrails that corrected it (LiteLLM's private ``_hidden_params``)
CORRECTED_BY = "aligner_corrected_by"
#: what LiteLLM itself passes a custom guardrail's constructor besides its ``litellm_params``
_LITELLM_ARGS = frozenset({"guardrail_name", "event_hook", "default_on"})


class GuardrailSetupError(AlignerError, RuntimeError):
    """A guardrail setting is wrong; raised when the proxy starts, and it stops the proxy (see the
    module docstring for why this is not a ``ValueError``)."""


class AlignerGuardrail(CustomGuardrail):
    """Corrects a LiteLLM proxy's chat answers after the call (see the module docstring)."""

    def __init__(self, corrector: Any = None, template: str | None = None, objectives: Any = None,
                 context: str | None = None, gate: str | None = None, gate_threshold: float | None = None,
                 gate_min_severity: str | None = None, gate_on_error: str = "correct", device: str | None = None,
                 max_new_tokens: int = 512, max_batch_size: int = 16, batch_wait_ms: float = 10.0,
                 **kwargs: Any):
        _check_litellm_args(kwargs)
        super().__init__(**kwargs)
        try:
            self.aligner, self.batchers = _build(corrector, template=template, objectives=objectives, context=context,
                                                 gate=gate, gate_threshold=gate_threshold,
                                                 gate_min_severity=gate_min_severity, gate_on_error=gate_on_error,
                                                 device=device, max_new_tokens=max_new_tokens,
                                                 max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
                                                 may_join=lambda: self.in_flight)
        except GuardrailSetupError:
            raise
        except AlignerError as exc:
            error = GuardrailSetupError(f"guardrail {self.guardrail_name!r}: {exc}")
            error.field, error.fix = exc.field, exc.fix  # the setting at fault, as the Aligner named it
            raise error from exc
        #: requests being corrected now (a batch waits for company only while some could join it)
        self.in_flight = 0
        log.info("aligner guardrail %r: corrector %s (demo=%s)", self.guardrail_name, self.aligner.corrector.name,
                 self.aligner.is_demo)

    # -- a whole response ------------------------------------------------------------------------
    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        """Each choice's answer corrected in place, the original beside it; ``response.aligner``."""
        from litellm.types.utils import ModelResponse

        if not isinstance(response, ModelResponse) or not response.choices:
            return response  # embeddings, images...: nothing to correct
        done = response._hidden_params.setdefault(CORRECTED_BY, [])
        if self.guardrail_name in done:
            # LiteLLM runs a model-level guardrail twice (its deployment hook, then the proxy's
            # post-call hook): a correction is not corrected again
            return response
        done.append(self.guardrail_name)
        messages = data.get("messages")
        upstream = str(data.get("model") or response.model or "")
        meta = None
        for choice in response.choices:
            message = getattr(choice, "message", None)
            if message is None:
                continue
            answer = message.content if isinstance(message.content, str) else ""
            skipped = "tool_calls" if getattr(message, "tool_calls", None) else None
            c = await self._correct(messages, answer, skipped)
            message.original_content = message.content
            if not c.skipped:
                message.content = c.correction
            meta = c.meta(upstream=upstream)
        response.aligner = meta
        return response

    # -- a streamed response ---------------------------------------------------------------------
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any,
                                                      request_data: dict) -> AsyncIterator[Any]:
        """The upstream's stream read whole, then the correction streamed back as chunks."""
        chunks, answers, tool_calls = [], {}, set()
        async for chunk in response:
            chunks.append(chunk)
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                answers[choice.index] = answers.get(choice.index, "") + (getattr(delta, "content", None) or "")
                if getattr(delta, "tool_calls", None):
                    tool_calls.add(choice.index)
        if not chunks:
            return
        messages = request_data.get("messages")
        upstream = str(request_data.get("model") or getattr(chunks[0], "model", "") or "")
        tail = [chunk for chunk in chunks if not getattr(chunk, "choices", None)]  # a usage chunk
        for index in sorted(answers):
            async for out in self._stream_choice(chunks, index, messages, answers[index], index in tool_calls,
                                                 upstream):
                yield out
        for chunk in tail:
            yield chunk

    async def _stream_choice(self, chunks: list[Any], index: int, messages: Any, answer: str, has_tools: bool,
                             upstream: str) -> AsyncIterator[Any]:
        """One choice of a stream: its correction as chunks, or (not corrected) its own chunks."""
        first = chunks[0]
        if has_tools or not answer.strip():
            c = await self._correct(messages, answer, "tool_calls" if has_tools else None)
            mine = [chunk for chunk in chunks if any(ch.index == index for ch in chunk.choices or [])]
            for chunk in mine:
                chunk.choices = [ch for ch in chunk.choices if ch.index == index]
            if mine:
                mine[-1].aligner = c.meta(upstream=upstream)
                mine[-1].provider_specific_fields = {**(mine[-1].provider_specific_fields or {}),
                                                     "aligner": mine[-1].aligner}
            for chunk in mine:
                yield chunk
            return
        self.in_flight += 1
        stream = None
        try:
            stream = self.aligner.astream(messages, answer)
            yield _chunk(first, index, {"role": "assistant", "content": ""})
            async for piece in stream:
                yield _chunk(first, index, {"content": piece})
        finally:
            self.in_flight -= 1
            if stream is not None:
                await stream.aclose()
        c = stream.correction
        yield _chunk(first, index, {}, finish="stop", aligner=c.meta(upstream=upstream) if c is not None else None)

    # -- correcting --------------------------------------------------------------------------------
    async def _correct(self, messages: Any, answer: str, skipped: str | None) -> Any:
        """The Correction of one answer: corrected, or (tool calls, no text) passed on as it came."""
        from ..contracts.correction import EMPTY_ANSWER, Correction

        if skipped or not answer.strip():
            return Correction.uncorrected(await self.aligner.aquestion_for(messages, answer), answer,
                                          skipped=skipped or EMPTY_ANSWER, corrector=self.aligner.corrector)
        self.in_flight += 1
        try:
            return await self.aligner.acorrect(messages, answer)
        finally:
            self.in_flight -= 1


def _chunk(first: Any, index: int, delta: dict[str, Any], *, finish: str | None = None,
           aligner: dict[str, Any] | None = None) -> Any:
    """A chat.completion.chunk of the reply ``first`` began (same id, model, creation time)."""
    from litellm.types.utils import ModelResponseStream

    extra = {"provider_specific_fields": {"aligner": aligner}} if aligner is not None else {}
    chunk = ModelResponseStream(id=first.id, created=first.created, model=first.model,
                                choices=[{"index": index, "delta": delta, "finish_reason": finish}], **extra)
    if aligner is not None:
        # the proxy writes plain text chunks its own fast way, which keeps only OpenAI's fields; a
        # chunk with provider_specific_fields (LiteLLM's place for extras) is written whole
        chunk.aligner = aligner
    return chunk


def _check_litellm_args(kwargs: dict[str, Any]) -> None:
    """Refuse a mode other than post_call, and a setting neither LiteLLM nor this guardrail knows
    (LiteLLM keeps unknown ``litellm_params`` keys, so a misspelt setting would be ignored)."""
    from litellm.types.guardrails import LitellmParams

    mode = kwargs.get("event_hook")
    modes = [m.value if hasattr(m, "value") else m for m in (mode if isinstance(mode, list) else [mode])]
    if modes != ["post_call"]:
        raise GuardrailSetupError(f"mode {mode!r} is not supported: the Aligner corrects an answer, so it runs "
                                  "after the call.", field="mode", fix="set mode: post_call in the guardrail's "
                                                                       "litellm_params.")
    unknown = sorted(set(kwargs) - set(LitellmParams.model_fields) - _LITELLM_ARGS)
    if unknown:
        raise GuardrailSetupError(f"unknown setting {unknown[0]!r}.", field=unknown[0],
                                  fix=f"the aligner guardrail's settings are {', '.join(SETTINGS)} (beside LiteLLM's "
                                      "guardrail, mode and default_on).")


def _build(corrector: Any, *, may_join: Any, max_new_tokens: int, max_batch_size: int, batch_wait_ms: float,
           **options: Any) -> tuple[Any, list[Any]]:
    """The guardrail's Aligner (no upstream: the proxy asks it) with each corrector's calls batched."""
    from ..contracts.objectives import takes_objectives
    from ..core.aligner import Aligner
    from ..correctors.stack import stacked
    from ..serve.batching import DynamicBatcher

    if corrector is None or corrector == "" or corrector == []:
        raise GuardrailSetupError("no corrector is set.", field="corrector",
                                  fix="add corrector: aligner/aligner-7b-v1.0 (a hub id, a directory from `aligner "
                                      "train`, an http(s)://…/v1 completions server, or demo for the embedded demo "
                                      "corrector; a list stacks several) to the guardrail's litellm_params.")
    for name, value, low in (("max_new_tokens", max_new_tokens, 1), ("max_batch_size", max_batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise GuardrailSetupError(f"must be a positive whole number, got {value!r}.", field=name,
                                      fix=f"e.g. {name}: 16.")
    if isinstance(batch_wait_ms, bool) or not isinstance(batch_wait_ms, (int, float)) or batch_wait_ms < 0:
        raise GuardrailSetupError(f"must be a number of milliseconds >= 0, got {batch_wait_ms!r}.",
                                  field="batch_wait_ms", fix="e.g. batch_wait_ms: 10.")
    gate = {k: options.pop(k) for k in ("gate_threshold", "gate_min_severity", "gate_on_error")}
    if options.get("gate"):
        options.update(gate)
    options = {k: v for k, v in options.items() if v is not None}
    aligner = Aligner(None, corrector, decoding={"max_new_tokens": max_new_tokens, "cap_to_answer": True}, **options)
    if takes_objectives(aligner.corrector) and not aligner.objectives:
        raise GuardrailSetupError(f"template {aligner.corrector.template.name!r} needs objectives, and none are set.",
                                  field="objectives", fix="add objectives: [harmless, helpful] (or 'name: "
                                                          "description' items) to the guardrail's litellm_params.")
    batchers: list[Any] = []

    def batched(one: Any) -> Any:
        batchers.append(DynamicBatcher(one, max_batch_size=max_batch_size, max_wait=batch_wait_ms / 1000,
                                       may_join=may_join))
        return one.through(batchers[-1])  # the corrector's own rows, batched

    return aligner.with_corrector(stacked(aligner.corrector, batched)), batchers


__all__ = ["AlignerGuardrail", "GuardrailSetupError", "SETTINGS"]
