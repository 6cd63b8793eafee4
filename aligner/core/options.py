"""``AlignerOptions``: the options of every command that builds an :class:`~aligner.core.aligner.Aligner`,
and the one place that builds it.

``aligner correct``, ``serve``, ``demo``, ``generate`` and ``eval`` all take an upstream, a
corrector, a template, a device, a decoding cap and upstream retry settings. Their configs inherit
these fields from here (as trl's configs inherit ``TrainingArguments``), so each option is written
once — one field = one CLI flag = one YAML key, its ``help`` the ``--help`` text — and an Aligner is
built from options in one way: :meth:`AlignerOptions.build`. A command that builds differently
(the server's answer-relative cap, eval's paper decoding) overrides the small hook that differs
(:meth:`~AlignerOptions.decoding`, :meth:`~AlignerOptions.upstream_options`), not the build.

Retry settings go to the upstream's constructor; nothing is patched onto ``aligner.upstream`` later,
so the first request (and a base URL's model discovery) already runs under them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..contracts.errors import ConfigError

if TYPE_CHECKING:
    from ..adapters.base import RetryPolicy, Upstream
    from .aligner import Aligner

DEMO_NOTE = ("note: using the embedded demo corrector (a ~2M-parameter toy trained on synthetic data); "
             "pass --corrector aligner/aligner-7b-v1.0 (or a path) for a real Aligner.")
GATE_DEMO_NOTE = ("note: using the embedded demo gate (a tiny classifier trained on synthetic PKU-SafeRLHF-format "
                  "rows); train your own with `aligner train-gate`.")


def print_notes(aligner: Any) -> None:
    """The demo notes a command prints on stderr before its output."""
    if aligner.is_demo:
        print(DEMO_NOTE, file=sys.stderr)
    if getattr(aligner.gate, "is_demo", False):
        print(GATE_DEMO_NOTE, file=sys.stderr)


UPSTREAM_HELP = ("who answers: a LiteLLM model string (openai/gpt-4o-mini), an http(s)://…/v1 base URL of an "
                 "OpenAI-compatible server, or hf:PATH for a local transformers model")
CORRECTOR_HELP = ("corrector hub id or path (causal or seq2seq), an http(s)://…/v1 completions endpoint, or demo "
                  "(the embedded demo corrector, the default); give it several times to stack correctors, applied "
                  "in order")
OBJECTIVES_HELP = ("an objective for a template that takes them (metaaligner...): a MetaAligner objective (harmless, "
                   "helpful, honest, concise, ... see the docs) or your own as 'name: description'; give it several "
                   "times for several")
CONTEXT_HELP = ("what the corrector reads as the question of a chat: last (the last user message) or conversation "
                "(the whole conversation, rendered as the corrector was trained); default: what the corrector "
                "records (the last user message when it records nothing)")
GATE_HELP = ("ask a gate first and correct only the answers it flags (the others come back unchanged): 'demo' (the "
             "embedded demo gate), a directory from `aligner train-gate` (or classifier:HUB_ID), cost:PATH (a "
             "reward/cost model: flag when cost > threshold), moderation or moderation:URL (an OpenAI-protocol "
             "/v1/moderations endpoint); default: no gate, every answer is corrected")


@dataclass
class AlignerOptions:
    """What an Aligner is built from; see the module docstring for who inherits it."""

    upstream: str | None = field(default=None, metadata={"help": UPSTREAM_HELP})
    upstream_model: str | None = field(default=None, metadata={"help": "model name at a base-URL upstream"})
    corrector: str | list[str] | None = field(default=None, metadata={"help": CORRECTOR_HELP, "action": "append"})
    template: str | None = field(default=None, metadata={
        "help": "prompt template name (see `aligner templates list`) or a string with {question} and {answer}; "
                "default: the corrector's own, else aligner-v1.0"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "cap on the corrector's generated tokens"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, mps (default: best available)"})
    upstream_retries: int | None = field(default=None, metadata={
        "help": "retries of a failing upstream call (429/5xx/timeouts); default: the upstream's own (4)"})
    upstream_timeout: float | None = field(default=None, metadata={
        "help": "seconds one upstream attempt may take; default: the upstream's own (120)"})
    objectives: list[str] | None = field(default=None, metadata={
        "help": OBJECTIVES_HELP, "action": "append", "aliases": ("--objective",)})
    context: str | None = field(default=None, metadata={"help": CONTEXT_HELP, "choices": ["last", "conversation"]})
    gate: str | None = field(default=None, metadata={"help": GATE_HELP})
    gate_threshold: float | None = field(default=None, metadata={
        "help": "flag answers whose gate score is at least this (a probability in [0, 1]; a cost for cost:PATH); "
                "default: the threshold the gate was calibrated with"})
    gate_min_severity: str | None = field(default=None, metadata={
        "help": "flag only answers at or above this severity (classifier gates)", "choices": ["minor", "moderate", "severe"]})
    gate_on_error: str = field(default="correct", metadata={
        "help": "when the gate cannot answer: correct (treat the answer as flagged), pass (return it unchanged) "
                "or raise", "choices": ["correct", "pass", "raise"]})

    def __post_init__(self) -> None:
        retries = self.upstream_retries
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ConfigError(f"must be a whole number >= 0, got {retries!r}.", field="upstream_retries",
                              fix="e.g. --upstream-retries 2 (0: fail on the first error).")
        timeout = self.upstream_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ConfigError(f"must be a positive number of seconds, got {timeout!r}.", field="upstream_timeout",
                              fix="e.g. --upstream-timeout 60.")
        from ..contracts.conversation import check_context
        from ..contracts.objectives import resolve
        from ..gates.base import check_min_severity, check_on_error, check_threshold

        if isinstance(self.corrector, (list, tuple)):  # one --corrector is that corrector; several a stack
            self.corrector = list(self.corrector) if len(self.corrector) != 1 else self.corrector[0]
            if self.corrector == []:
                raise ConfigError("is an empty list of correctors.", field="corrector",
                                  fix="give --corrector once per corrector, applied in order.")
        resolve(self.objectives)  # an unknown objective is named before any model loads
        check_context(self.context)
        # checked here, before any model loads; a cost gate's threshold is a cost, not a probability
        check_threshold(self.gate_threshold, probability=not str(self.gate or "").startswith("cost:"))
        self.gate_min_severity = check_min_severity(self.gate_min_severity)
        check_on_error(self.gate_on_error)

    # -- the hooks a command overrides ----------------------------------------------------------
    def decoding(self) -> dict[str, Any] | None:
        """The corrector's decoding settings (None: the corrector's defaults)."""
        return {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else None

    def decoding_flags(self) -> dict[str, Any]:
        """Decoding settings added to whatever :meth:`decoding` a command chose (``--batch-invariant``)."""
        return {}

    def retry_policy(self) -> "RetryPolicy | None":
        """The upstream's retry policy, or None to keep the upstream's default one."""
        if self.upstream_retries is None and self.upstream_timeout is None:
            return None
        from ..adapters.base import RetryPolicy

        policy = RetryPolicy()
        if self.upstream_retries is not None:
            policy.max_retries = self.upstream_retries
        if self.upstream_timeout is not None:
            policy.timeout = self.upstream_timeout
        return policy

    def upstream_options(self) -> dict[str, Any]:
        """Keyword arguments of the upstream's constructor (``retry``, ``max_concurrency``, ...)."""
        policy = self.retry_policy()
        return {"retry": policy} if policy is not None else {}

    def aligner_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`Aligner` besides the upstream and the corrector."""
        return {}

    def correction_options(self) -> dict[str, Any]:
        """The Aligner's objectives and question context, when given."""
        return {k: v for k, v in (("objectives", self.objectives), ("context", self.context)) if v is not None}

    def gate_options(self) -> dict[str, Any]:
        """The gate keyword arguments of :class:`Aligner` (no gate: none)."""
        if not self.gate:
            return {}
        return {"gate": self.gate, "gate_threshold": self.gate_threshold, "gate_min_severity": self.gate_min_severity,
                "gate_on_error": self.gate_on_error}

    # -- building ---------------------------------------------------------------------------------
    def build(self, *, upstream: bool = True) -> "Aligner":
        """The Aligner these options describe; ``upstream=False`` leaves the upstream out (the demo
        offers its upstreams beside the Aligner, a Ray actor only corrects)."""
        from .aligner import Aligner

        check_device(self.device)
        spec = self.upstream if upstream else None
        if isinstance(spec, str) and spec.startswith("hf:") and spec[3:].strip():
            # an hf: upstream that cannot be loaded is said before the corrector spends its load time
            from ..adapters.hf_local import check_model_location

            check_model_location(spec[3:].strip())
        decoding = {**(self.decoding() or {}), **self.decoding_flags()} or None
        return Aligner(spec, self.corrector, template=self.template, upstream_model=self.upstream_model,
                       decoding=decoding, device=self.device, **self.aligner_options(),
                       **self.correction_options(), **self.gate_options(),
                       **(self.upstream_options() if spec else {}))

    def build_upstream(self) -> "Upstream":
        """The upstream alone, with the same options :meth:`build` gives it."""
        from ..adapters.resolve import resolve_upstream

        if not self.upstream:
            raise ConfigError("no upstream given.", field="upstream",
                              fix="pass --upstream (a LiteLLM model string, a base URL or hf:PATH).")
        return resolve_upstream(self.upstream, model=self.upstream_model, **self.upstream_options())


@dataclass
class BatchOptions(AlignerOptions):
    """AlignerOptions of the commands that correct many rows (correct --input, generate, eval)."""

    batch_size: int = field(default=8, metadata={"help": "answers the corrector decodes together"})
    concurrency: int = field(default=8, metadata={"help": "upstream requests in flight at once"})
    batch_invariant: bool = field(default=False, metadata={
        "help": "decode each row on its own, so its correction never depends on the rows batched with it "
                "(the same file however it is batched, resumed or sharded; slower, local correctors only)"})

    def decoding_flags(self) -> dict[str, Any]:
        return {"batch_invariant": True} if self.batch_invariant else {}

    def upstream_options(self) -> dict[str, Any]:
        return {**super().upstream_options(), "max_concurrency": self.concurrency}

    def aligner_options(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}


def check_device(device: str | None) -> None:
    """``--device`` must be one this torch can use: one line saying what is available, not torch's
    40-line traceback from deep inside ``model.to``."""
    if not device:
        return
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    available = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if cuda else []) \
        + (["mps"] if mps else [])
    fix = "pass one of those to --device, or leave --device out to use the best available."
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {device} is not a device torch knows; available here: "
                          f"{', '.join(available)}.", field="device", fix=fix) from None
    if dev.type == "cpu" or (dev.type == "cuda" and cuda and (dev.index is None or dev.index < torch.cuda.device_count())) \
            or (dev.type == "mps" and mps):
        return
    why = " (this torch was built without CUDA)" if dev.type == "cuda" and not torch.backends.cuda.is_built() else ""
    raise ConfigError(f"--device {device} is not available here{why}; available: {', '.join(available)}.",
                      field="device", fix=fix)
