"""An Aligner served behind an OpenAI-compatible *completions* endpoint (vLLM, TGI, llama.cpp).

For scale the corrector runs on a GPU server and this process only renders prompts and parses
replies. Completions, not chat: the released Aligners were trained on a raw prompt string, and a
chat template would wrap it in tokens the model never saw. Retries and back-off are the very loop
the upstreams use (:mod:`aligner.transport.retry`), so a 429 from the corrector server is handled like
a 429 from the upstream.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError, UpstreamError
from ..contracts.registry import is_server_url, register_corrector
from ..contracts.rows import RowControl
from ..contracts.templates import Template
from ..transport.openai_http import OpenAIHTTP, adiscover_model, discover_model, http_error
from ..transport.retry import (RetryPolicy, UpstreamStats, aretry_call, aretry_stream, bare_message,
                               retry_call, retry_stream)
from .backend import _end, feed_pieces, must_stop
from .base import Corrector


@register_corrector
class RemoteCorrector(Corrector):
    """Corrections from ``POST {base_url}/completions``; ``model=None`` takes the server's first model."""

    #: a base URL: ``'http://gpu-box:8000/v1'``
    matches = staticmethod(is_server_url)

    @classmethod
    def from_spec(cls, spec: str, *, template: Any = None, decoding: Any = None, device: str | None = None,
                  model: str | None = None, api_key: str | None = None, **kwargs: Any) -> "RemoteCorrector":
        """``device`` places a local model: a remote server has its own."""
        return cls(spec, model=model, api_key=api_key, template=template, decoding=decoding, **kwargs)

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 template: "str | Template | None" = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
                 retry: RetryPolicy | None = None, max_concurrency: int = 8, *,
                 headers: dict[str, str] | None = None,
                 on_retry: Callable[[int, UpstreamError, float], None] | None = None):
        super().__init__(template, decoding)
        _local_only(self.decoding)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"must be a positive int, got {max_concurrency!r}.", field="max_concurrency",
                              fix="e.g. max_concurrency=8.")
        self.http = OpenAIHTTP(base_url, api_key, headers, field="corrector")
        self.model = model
        self.name = model or self.http.base_url
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        self.on_retry = on_retry
        self.stats = UpstreamStats()
        self._model_lock = threading.Lock()

    def _to_error(self, exc: BaseException) -> UpstreamError:
        """The upstream classification, but naming the corrector server as the party at fault."""
        err = http_error(exc, self.retry)
        out = type(err)(f"corrector server {self.http.base_url}: {bare_message(err)}", field="corrector",
                        fix=(err.fix or "").replace("the upstream", "the corrector server") or None,
                        status=err.status, retryable=err.retryable, retry_after=err.retry_after)
        return out

    def _decoding(self, overrides: "DecodingConfig | Mapping[str, Any] | None") -> DecodingConfig:
        return _local_only(super()._decoding(overrides))

    def _model(self) -> str:
        if not self.model:
            with self._model_lock:
                if not self.model:
                    self.model = self.name = discover_model(
                        self.http, self.retry.timeout, self._to_error, "corrector")
        return self.model

    async def _amodel(self) -> str:
        if not self.model:
            self.model = self.name = await adiscover_model(
                self.http, self.retry.timeout, self._to_error, "corrector")
        return self.model

    @staticmethod
    def _body(model: str, prompt: str, decoding: DecodingConfig) -> dict[str, Any]:
        return {"model": model, "prompt": prompt, **decoding.openai_kwargs()}

    @staticmethod
    def _text(reply: Any) -> str:
        return reply["choices"][0].get("text") or ""

    @staticmethod
    def _piece(event: dict) -> str:
        choices = event.get("choices") or []
        return (choices[0].get("text") or "") if choices else ""

    @staticmethod
    def _row_body(model: str, prompt: str, decoding: DecodingConfig, row: RowControl) -> dict[str, Any]:
        """The request for one guarded row: ``max_tokens`` lowered to the row's cap."""
        body = RemoteCorrector._body(model, prompt, decoding)
        if row.max_new_tokens is not None:
            body["max_tokens"] = min(body["max_tokens"], row.max_new_tokens)
        return body

    @staticmethod
    def _ended(row: RowControl, finish: Any) -> None:
        """How the server says the row ended: ``length`` at the row's own cap is the guard's ``cap``."""
        if row.stop_reason is None:
            if finish == "length":
                row.stop_reason = "cap" if row.max_new_tokens is not None else "length"
            elif finish:
                row.stop_reason = "eos"

    def _row_pieces(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> Iterator[str]:
        def pieces() -> Iterator[str]:
            body = self._row_body(self._model(), prompt, decoding, row)
            for event in self.http.stream("completions", body, self.retry.timeout):
                piece = self._piece(event)
                choices = event.get("choices") or []
                if choices and choices[0].get("finish_reason"):
                    self._ended(row, choices[0]["finish_reason"])
                if piece:
                    yield piece

        return retry_stream(self, pieces)

    # -- sync -----------------------------------------------------------------------------
    def _one(self, prompt: str, decoding: DecodingConfig) -> str:
        self.stats.calls += 1
        return retry_call(self, lambda: self._text(
            self.http.post("completions", self._body(self._model(), prompt, decoding), self.retry.timeout)))

    def generate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        """One request per prompt, ``max_concurrency`` in flight (the server batches them itself)."""
        prompts = list(prompts)
        if len(prompts) <= 1:
            return [self._one(p, decoding) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: self._one(p, decoding), prompts))

    def _one_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> str:
        if row.cancelled:
            row.stop_reason = "cancelled"
            _end(row)
            return ""
        self.stats.calls += 1
        if row.on_text is not None:  # streamed, and stopped early when the guard trips
            return feed_pieces(row, self._row_pieces(prompt, decoding, row))
        reply = retry_call(self, lambda: self.http.post(
            "completions", self._row_body(self._model(), prompt, decoding, row), self.retry.timeout))
        self._ended(row, reply["choices"][0].get("finish_reason"))
        _end(row)
        return self._text(reply)

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """One request per row (``max_tokens`` at the row's cap), ``max_concurrency`` in flight; a
        streaming row is read piece by piece and its request closed when cancelled or degenerate."""
        prompts, rows = list(prompts), list(rows)
        if len(prompts) <= 1:
            return [self._one_row(p, decoding, r) for p, r in zip(prompts, rows)]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda pr: self._one_row(pr[0], decoding, pr[1]), zip(prompts, rows)))

    async def agenerate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                             rows: Sequence[RowControl]) -> list[str]:
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(prompt: str, row: RowControl) -> str:
            async with gate:
                if row.cancelled:
                    row.stop_reason = "cancelled"
                    return ""
                self.stats.calls += 1

                async def call() -> Any:
                    body = self._row_body(await self._amodel(), prompt, decoding, row)
                    return await self.http.apost("completions", body, self.retry.timeout)

                reply = await aretry_call(self, call)
                self._ended(row, reply["choices"][0].get("finish_reason"))
                return self._text(reply)

        return list(await asyncio.gather(*(one(p, r) for p, r in zip(prompts, rows))))

    async def astream_row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> AsyncIterator[str]:
        """Native async streaming of one guarded row: the HTTP stream is closed as soon as the
        row is cancelled or its guard trips."""
        self.stats.calls += 1

        async def pieces() -> AsyncIterator[str]:
            body = self._row_body(await self._amodel(), prompt, decoding, row)
            async for event in self.http.astream("completions", body, self.retry.timeout):
                choices = event.get("choices") or []
                if choices and choices[0].get("finish_reason"):
                    self._ended(row, choices[0]["finish_reason"])
                piece = self._piece(event)
                if piece:
                    yield piece

        raw = ""
        source = aretry_stream(self, pieces)
        try:
            async for piece in source:
                raw += piece
                row.steps += 1
                yield piece
                if must_stop(row, raw):
                    return
        finally:
            await source.aclose()

    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        self.stats.calls += 1

        def pieces() -> Iterator[str]:
            body = self._body(self._model(), prompt, decoding)
            for event in self.http.stream("completions", body, self.retry.timeout):
                piece = self._piece(event)
                if piece:
                    yield piece

        return retry_stream(self, pieces)

    # -- async ----------------------------------------------------------------------------
    async def _aone(self, prompt: str, decoding: DecodingConfig) -> str:
        self.stats.calls += 1

        async def call() -> str:
            body = self._body(await self._amodel(), prompt, decoding)
            return self._text(await self.http.apost("completions", body, self.retry.timeout))

        return await aretry_call(self, call)

    async def agenerate(self, prompts: Sequence[str], decoding: DecodingConfig) -> list[str]:
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(p: str) -> str:
            async with gate:
                return await self._aone(p, decoding)

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    def astream_prompt(self, prompt: str, decoding: DecodingConfig) -> AsyncIterator[str]:
        self.stats.calls += 1

        async def pieces() -> AsyncIterator[str]:
            body = self._body(await self._amodel(), prompt, decoding)
            async for event in self.http.astream("completions", body, self.retry.timeout):
                piece = self._piece(event)
                if piece:
                    yield piece

        return aretry_stream(self, pieces)

    def close(self) -> None:
        self.http.close()


def _local_only(decoding: DecodingConfig) -> DecodingConfig:
    """``batch_invariant`` is a promise this process cannot keep for a server, which batches the
    requests of every client as it likes: refused, not silently dropped."""
    if decoding.batch_invariant:
        raise ConfigError("batch_invariant needs a local corrector: a completions server batches "
                          "requests as it likes, so this process cannot make a row independent of its batch.",
                          field="batch_invariant", fix="use a local corrector (a directory or hub id), or leave "
                          "batch_invariant off (a vLLM server started with VLLM_BATCH_INVARIANT=1 is batch-invariant itself).")
    return decoding
