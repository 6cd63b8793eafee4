"""Decoding settings: one validated dataclass every backend reads (local, remote, upstream).

The local transformers runtime that acts on them is :mod:`aligner.runtime.local_runtime`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable, Mapping

from .errors import ConfigError


_DECODING_RANGES = (
    ("max_new_tokens", lambda v: v >= 1, "a positive int"),
    ("temperature", lambda v: v >= 0, ">= 0"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("top_k", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("repetition_penalty", lambda v: v > 0, "> 0 (1.0 = off)"),
    ("prompt_lookup", lambda v: v >= 0, ">= 0 (0 = off)"),
)
_HINTS: dict[str, Any] = {}


def _decoding_hints() -> dict[str, Any]:
    if not _HINTS:
        import typing

        _HINTS.update(typing.get_type_hints(DecodingConfig))
    return _HINTS


def _default_of(config: Any, name: str) -> Any:
    return next((f.default for f in fields(config) if f.name == name), None)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation (bool is not an int here, an int is a float, NaN is not)."""
    import math
    import typing

    origin = typing.get_origin(hint)
    if hint is None or hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or (origin is not None and getattr(origin, "__name__", "") == "Sequence"):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _check_decoding_value(name: str, value: Any, hint: Any, default: Any) -> None:
    if not _matches(value, hint):
        kind = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        raise ConfigError(f"must be {'a finite number' if hint is float else kind}, got {value!r} "
                          f"({type(value).__name__}).", field=name, fix=f"e.g. {name}={default!r}.")


#: new-token cap relative to the answer: a correction rewrites the answer, it does not double it.
CAP_FACTOR, CAP_SLACK = 2, 64


def new_token_cap(answer_tokens: int) -> int:
    """The most new tokens a correction of an answer of ``answer_tokens`` tokens may take (the
    guard's ``too_long`` limit too, :mod:`aligner.runtime.guard`)."""
    return CAP_FACTOR * max(0, int(answer_tokens)) + CAP_SLACK


@dataclass(frozen=True)
class DecodingConfig:
    """How a local or remote model samples. Defaults follow the model card (greedy, 2048 new tokens).

    Frozen: one config is read by every request of a server at once (the corrector's own), so a
    change is a new config (``dataclasses.replace``, ``from_any``), never an edit another thread sees.
    """

    max_new_tokens: int = 2048
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    #: Prompt-lookup decoding: draft this many tokens by copying from the prompt (the answer being
    #: corrected) and verify them in one forward pass. Same greedy output, fewer passes. 0 = off.
    prompt_lookup: int = 0
    #: Copy-aware speculative decoding in the project's decode loop: each row drafts the rest of
    #: the span of the answer it is copying (up to 64 tokens) and one forward pass verifies every
    #: row's draft. Same greedy output, far fewer passes when the correction copies. False = off.
    copy_draft: bool = True
    #: ``auto``: greedy decoding runs in the project's lean loop (:mod:`aligner.runtime.decode_loop`)
    #: where the model supports it, sampling and repetition penalty in transformers' ``generate``;
    #: ``hf``: always ``generate`` (``prompt_lookup`` applies only here); ``loop``: the loop or an error.
    engine: str = "auto"
    #: Cap the new tokens at ``2 × answer tokens + 64`` (see :mod:`aligner.runtime.guard`): a correction
    #: rewrites the answer, so one running far longer is runaway. Setting ``max_new_tokens``
    #: yourself turns this off (you chose the length), unless you also set ``cap_to_answer``
    #: (the one rule: :func:`resolve_length`).
    cap_to_answer: bool = True
    #: Replace a degenerate correction (runaway repetition, the template's own markers, an empty
    #: or over-long result) by the original answer, flagged ``fallback``. False returns it as is.
    fallback: bool = True
    #: Decline an edit that can be checked and is wrong (:mod:`aligner.runtime.edit_checks`): a sum made
    #: wrong, a half refusal, a placeholder over no contact; ``strict`` also declines any change that
    #: is none of those checkable edits. ``auto``: strict for a demo corrector, off for others; ``on``,
    #: ``strict``, ``off``. Needs ``fallback`` (a declined edit hands the answer back, flagged).
    edit_checks: str = "auto"
    #: Decode every row on its own, so a row's correction never depends on which rows share its
    #: batch. Batched greedy decoding is not: padding, the batch's shape and the other rows'
    #: drafts change the order of floating-point sums, and a near-tie can flip (measured by
    #: ``bench/batch_invariance.py``). For files that must come out the same however they were
    #: batched, resumed or sharded; slower. Local correctors only (a server batches as it likes).
    batch_invariant: bool = False

    def __post_init__(self) -> None:
        """Check every value's type and range here, so ``{"temperature": "hot"}`` is an error naming
        the field when the config is made, not a ``TypeError`` from deep inside generation."""
        hints = _decoding_hints()
        for f in fields(self):
            _check_decoding_value(f.name, getattr(self, f.name), hints.get(f.name), f.default)
        for name, ok, rule in _DECODING_RANGES:
            value = getattr(self, name, None)
            if value is not None and not ok(value):
                raise ConfigError(f"must be {rule}, got {value!r}.", field=name,
                                  fix=f"e.g. {name}={_default_of(self, name)!r}.")
        if self.engine not in ("auto", "hf", "loop"):
            raise ConfigError(f"must be 'auto', 'hf' or 'loop', got {self.engine!r}.", field="engine",
                              fix="e.g. engine='auto' (the lean loop where it applies).")
        if self.edit_checks not in ("auto", "off", "on", "strict"):
            raise ConfigError(f"must be 'auto', 'on', 'strict' or 'off', got {self.edit_checks!r}.", field="edit_checks",
                              fix="e.g. edit_checks='on' (see aligner.runtime.edit_checks).")
        if self.temperature <= 0 and self.do_sample:
            raise ConfigError("must be > 0 when sampling.", field="temperature",
                              fix="use temperature > 0, or do_sample=False for greedy decoding.")

    @classmethod
    def from_any(cls, value: "DecodingConfig | Mapping[str, Any] | None",
                 base: Mapping[str, Any] | None = None) -> "DecodingConfig":
        """Merge template defaults (``base``) with user overrides; unknown keys are an error.

        How long a correction may get follows :func:`resolve_length`: a ``max_new_tokens`` among
        the overrides is the user's choice of length, so it turns the answer-relative cap off
        unless the overrides set ``cap_to_answer`` too.
        """
        if isinstance(value, DecodingConfig):
            return value
        merged = dict(base or {})
        names = {f.name for f in fields(cls)}
        user = dict(value or {})
        for key, v in user.items():
            if key not in names:
                raise ConfigError(f"unknown decoding option {key!r}.", field="decoding",
                                  fix=f"use only {sorted(names)}.")
            merged[key] = v
        merged.update(resolve_length(base or {}, user))
        return cls(**{k: v for k, v in merged.items() if k in names})

    def row_cap(self, answer_tokens: int) -> int | None:
        """The new-token cap of one correction of an answer of ``answer_tokens`` tokens, when it
        is below ``max_new_tokens`` (``cap_to_answer``: ``2 × answer tokens + 64``, see
        :func:`new_token_cap`); None when ``max_new_tokens`` is the limit."""
        if not self.cap_to_answer:
            return None
        cap = new_token_cap(answer_tokens)
        return cap if cap < self.max_new_tokens else None

    def limited(self, *ceilings: int | None) -> "DecodingConfig":
        """These settings under ``ceilings`` (a server's ``--max-new-tokens``, a request's
        ``max_tokens``; None: no ceiling): ``max_new_tokens`` lowered, the rest as they are."""
        resolved = resolve_length(self.to_dict(), ceilings=ceilings)
        return self if resolved["max_new_tokens"] == self.max_new_tokens else replace(self, **resolved)

    def hf_kwargs(self) -> dict[str, Any]:
        """Arguments for ``transformers`` ``generate``."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
            if self.top_k:
                kw["top_k"] = self.top_k
        if self.repetition_penalty != 1.0:
            kw["repetition_penalty"] = self.repetition_penalty
        return kw

    def openai_kwargs(self) -> dict[str, Any]:
        """Arguments for an OpenAI-style completions request (frequency penalty stands in for
        transformers' repetition penalty, as in the paper's evaluation settings)."""
        kw: dict[str, Any] = {"max_tokens": self.max_new_tokens,
                              "temperature": self.temperature if self.do_sample else 0.0}
        if self.do_sample:
            kw["top_p"] = self.top_p
            if self.top_k:
                kw["top_k"] = self.top_k  # not in OpenAI's API; vLLM and llama.cpp servers accept it
        if self.repetition_penalty != 1.0:
            kw["frequency_penalty"] = self.repetition_penalty
        return kw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_length(base: Mapping[str, Any], chosen: Mapping[str, Any] | None = None, *,
                   ceilings: Iterable[int | None] = ()) -> dict[str, Any]:
    """How long a correction may get, from every source that has a say: the one precedence rule
    for ``max_new_tokens`` and ``cap_to_answer`` (returned as those two keys).

    - ``base``: the template's or the corrector's settings (defaults: 2048 tokens, the cap on).
    - ``chosen``: what the user set — ``decoding=`` in Python, ``--max-new-tokens`` of ``aligner
      correct``/``generate``/``demo``/``eval``, a config file's ``max-new-tokens``. A chosen
      ``max_new_tokens`` is a length the user picked, so it replaces the base's and turns the
      answer-relative cap (``2 × answer tokens + 64``) off, unless ``cap_to_answer`` is chosen too.
      (``aligner serve --max-new-tokens`` is chosen with ``cap_to_answer`` on: a server's limit
      sits above the answer-relative cap, see ``ServeConfig.decoding``.)
    - ``ceilings``: limits that may only lower the length and never change whether the cap
      applies — a served request's ``max_tokens`` under the server's ``--max-new-tokens``.

    One correction then gets ``min(max_new_tokens, the answer-relative cap when it applies)``
    (:meth:`DecodingConfig.row_cap`).
    """
    chosen = chosen or {}
    out = {"max_new_tokens": base.get("max_new_tokens", _default_of(DecodingConfig, "max_new_tokens")),
           "cap_to_answer": base.get("cap_to_answer", _default_of(DecodingConfig, "cap_to_answer"))}
    if "max_new_tokens" in chosen:
        out["max_new_tokens"], out["cap_to_answer"] = chosen["max_new_tokens"], False
    if "cap_to_answer" in chosen:
        out["cap_to_answer"] = chosen["cap_to_answer"]
    limits = [c for c in ceilings if c is not None]
    if limits:
        out["max_new_tokens"] = min(out["max_new_tokens"], *limits)
    return out
