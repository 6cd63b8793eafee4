"""The ``moderation`` gate: an OpenAI-protocol moderation endpoint (``POST /v1/moderations``), such as
OpenAI's ``omni-moderation-latest`` or any server speaking the protocol.

Each answer is sent as one ``input`` string (a batch goes in one request, ``input`` a list); the
reply's ``results`` are mapped onto a verdict: ``score`` is the highest of its ``category_scores``,
``categories`` the endpoint's own category names that it marked (or, with a threshold, whose score
reaches it), and ``flagged`` the endpoint's own ``flagged`` — or, with a threshold, the score
reaching it. The endpoint predicts no severity. Only the answer is sent by default: a refusal is
safe whatever the question asked, and a question in the input would flag every refusal of a
harmful request (``input_format`` changes it).

Retries, back-off, ``Retry-After``, timeouts and error mapping are the project's transport layer
(:mod:`aligner.transport.retry`, :mod:`aligner.transport.openai_http`), as for an upstream; a
failure that survives them reaches the Aligner's ``gate_on_error`` policy.

Spec: ``"moderation"`` (OpenAI's API, key from ``OPENAI_API_KEY``), ``"moderation:URL"`` or a plain
``http(s)://…/v1`` base URL.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from ..contracts.errors import ConfigError, UpstreamError, UpstreamTimeout
from ..contracts.registry import register_gate
from ..transport.openai_http import OpenAIHTTP, http_error
from ..transport.retry import RetryPolicy, UpstreamStats, aretry_call, bare_message, retry_call
from .base import Gate, Judgement, Pair

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "omni-moderation-latest"


@register_gate
class ModerationGate(Gate):
    """An OpenAI-protocol ``/v1/moderations`` endpoint as a gate (see the module docstring)."""

    kind = "moderation"
    spec_prefix = "moderation"
    spec_priority = 20
    #: whether retry warnings quote the endpoint's error text (the server turns it off with its upstream's)
    log_error_text = True

    def __init__(self, base_url: str = OPENAI_URL, *, model: str = DEFAULT_MODEL, api_key: str | None = None,
                 threshold: float | None = None, min_severity: str | None = None, retry: RetryPolicy | None = None,
                 batch_size: int = 32, input_format: str = "{answer}",
                 on_retry: Callable[[int, UpstreamError, float], None] | None = None, **_: Any):
        super().__init__(threshold=threshold, min_severity=min_severity, default_threshold=0.5)
        if "{answer}" not in input_format:
            raise ConfigError("must contain {answer}.", field="input_format",
                              fix="e.g. input_format='{answer}' or '{question}\\n\\n{answer}'.")
        if api_key is None and base_url.rstrip("/") == OPENAI_URL:
            api_key = os.environ.get("OPENAI_API_KEY")
        self.http = OpenAIHTTP(base_url, api_key, field="gate")
        self.model = model
        self.name = f"moderation:{self.http.base_url}"
        self.retry = retry or RetryPolicy(max_retries=3, timeout=30.0)
        self.stats = UpstreamStats()
        self.on_retry = on_retry
        self.batch_size = batch_size
        self.input_format = input_format

    @classmethod
    def matches(cls, spec: Any) -> bool:
        return isinstance(spec, str) and (spec == "moderation" or spec.startswith("moderation:")
                                          or spec.startswith(("http://", "https://")))

    @classmethod
    def from_spec(cls, spec: Any, **kw: Any) -> "ModerationGate":
        url = spec[len("moderation:"):].strip() if spec.startswith("moderation:") else (
            OPENAI_URL if spec == "moderation" else spec)
        kw.pop("device", None)
        return cls(url or OPENAI_URL, **kw)

    # -- the retry loop's host contract (aligner.transport.retry.RetryHost) -----------------------
    def _to_error(self, exc: BaseException) -> UpstreamError:
        err = http_error(exc, self.retry)
        cls = UpstreamTimeout if isinstance(err, UpstreamTimeout) else UpstreamError
        return cls(f"the moderation endpoint failed: {bare_message(err)}", field="gate", fix=err.fix,
                   status=err.status, retryable=err.retryable, retry_after=err.retry_after)

    def _body(self, pairs: Sequence[Pair]) -> dict[str, Any]:
        texts = [self.input_format.replace("{question}", q).replace("{answer}", a) for q, a in pairs]
        return {"model": self.model, "input": texts}

    def _read(self, reply: Any, n: int) -> list[Judgement]:
        """The reply's ``results`` as judgements; a reply of another shape raises (a ValueError the
        error mapping reports as "not in the OpenAI format", not retried)."""
        results = reply["results"] if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != n:
            raise ValueError(f"expected {n} results, got {reply!r}"[:300])
        out = []
        for r in results:
            scores = {str(k): float(v) for k, v in (r.get("category_scores") or {}).items() if v is not None}
            marked = [str(k) for k, v in (r.get("categories") or {}).items() if v]
            flagged = bool(r["flagged"])
            score = max(scores.values()) if scores else (1.0 if flagged else 0.0)
            if self.threshold is not None:
                marked = [k for k, v in scores.items() if v >= self.threshold]
            out.append(Judgement(score, marked, None, None, flagged))
        return out

    def judge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        body = self._body(pairs)
        self.stats.calls += 1
        return retry_call(self, lambda: self._read(self.http.post("moderations", body, self.retry.timeout), len(pairs)))

    async def ajudge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        body = self._body(pairs)
        self.stats.calls += 1

        async def once() -> list[Judgement]:
            return self._read(await self.http.apost("moderations", body, self.retry.timeout), len(pairs))

        return await aretry_call(self, once)

    def close(self) -> None:
        self.http.close()
