"""Correctors that run a transformers model in this process (causal LM or encoder-decoder).

Both kinds load through ``from_pretrained`` — a hub id such as ``aligner/aligner-7b-v1.0`` and a
local directory take the same code path — and decode through :class:`LocalGenerator`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..contracts.decoding import DecodingConfig

from ..contracts.errors import ConfigError, CorrectorError, hide_cause
from ..contracts.registry import is_nonempty_string, register_corrector
from ..contracts.rows import RowControl
from ..contracts.templates import Template
from ..runtime.hub import check_hub_model, looks_like_path
from ..runtime.local_runtime import LocalGenerator, pick_device
from ..runtime.progress import model_loading
from .backend import TokenBudget
from .base import Corrector
from .checkpoint import read_aligner_config

log = logging.getLogger("aligner")

_CORRECTOR_FIX = ("pass a directory with config.json and weights (e.g. from `aligner train`), a hub id such as "
                  "aligner/aligner-7b-v1.0 (needs network or a cached copy), or omit it to use the embedded demo "
                  "corrector.")

@register_corrector
class LocalCorrector(Corrector):
    """A transformers model as corrector. ``kind`` is decided by the model's config."""

    #: any other string is a hub id or a directory: tried after every other backend.
    spec_priority = -100
    matches = staticmethod(is_nonempty_string)

    @classmethod
    def from_spec(cls, spec: str, *, template: Any = None, decoding: Any = None, device: str | None = None,
                  model: str | None = None, api_key: str | None = None, **kwargs: Any) -> "LocalCorrector":
        """``model``/``api_key`` name a remote server's model and key: a local model takes neither."""
        return cls.from_pretrained(spec, template=template, decoding=decoding, device=device, **kwargs)

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "local",
                 template: "str | Template | None" = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
                 max_input_tokens: int | None = None, metadata: dict[str, Any] | None = None):
        super().__init__(template, decoding)
        self.name = name
        self.generator = LocalGenerator(model, tokenizer)
        self.metadata = dict(metadata or {})
        self.max_input_tokens = max_input_tokens
        self._token_chars: int | None = None

    @classmethod
    def from_pretrained(cls, model_id: str, *, template: "str | Template | None" = None,
                        decoding: "DecodingConfig | Mapping[str, Any] | None" = None,
                        device: str | None = None, dtype: str | None = None, quantize: str | None = None,
                        **model_kwargs: Any) -> "LocalCorrector":
        """Load a corrector from a hub id or a directory written by ``save_pretrained``.

        ``dtype`` (e.g. ``"bfloat16"``) and ``quantize`` trade agreement with the fp32 corrector
        for speed or memory: ``"int8"`` quantizes every ``nn.Linear``'s weights and, per pass, its
        activations (CPU, ``torch.ao`` dynamic quantization: the fastest on a CPU, fewer
        corrections identical); ``"int8-weight"`` stores int8 weights and computes in the model's
        precision (``torchao``'s weight-only config, CPU or GPU: identical corrections on the
        benchmark, half the weight memory, no faster on a CPU without an int8 kernel).
        ``bench/correct_speed.py`` measures each. fp32 is the default.
        """
        if quantize not in (None, "int8", "int8-weight"):
            raise ConfigError(f"unknown quantization {quantize!r}.", field="quantize",
                              fix="use quantize='int8' (CPU), 'int8-weight' (needs torchao) or leave it unset.")
        local = Path(model_id).expanduser()
        if not local.exists() and not looks_like_path(model_id):
            try:  # offline or out of reach: one line now, not the loaders' retries
                check_hub_model(model_id, field="corrector", flag="--corrector",
                                local="a local directory (or leave it out for the demo corrector)")
            except ConfigError as exc:
                if "/" in model_id:
                    raise
                # a bare name ("my-corrector") is more often a missing folder than a legacy hub model
                raise hide_cause(ConfigError(f"cannot load corrector {model_id!r}: no such directory.",
                                             field="corrector", fix=_CORRECTOR_FIX), exc) from None
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        meta = read_aligner_config(model_id)
        try:
            config = AutoConfig.from_pretrained(model_id)
        except (OSError, ValueError) as exc:
            # a bare name ("my-corrector") is more often a missing folder than a legacy hub model
            hint = ("no such directory" if not local.exists() and (looks_like_path(model_id) or "/" not in model_id)
                    else "not a local model directory and not reachable on the hub")
            raise hide_cause(ConfigError(f"cannot load corrector {model_id!r}: {hint}.", field="corrector",
                                         fix=_CORRECTOR_FIX), exc)
        auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        kwargs = dict(model_kwargs)
        if dtype:
            import torch

            kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        try:
            with model_loading():
                tokenizer = AutoTokenizer.from_pretrained(model_id)
                model = auto.from_pretrained(model_id, **kwargs)
        except (OSError, ValueError) as exc:
            raise hide_cause(CorrectorError(f"cannot load corrector {model_id!r}: {exc}", field="corrector",
                                 fix="check the directory holds a complete save_pretrained output."), exc)
        model.to(pick_device(device)).eval()
        if quantize == "int8":
            import torch

            if next(model.parameters()).device.type != "cpu":
                raise ConfigError("quantize='int8' runs on the CPU only.", field="quantize",
                                  fix="pass device='cpu', or use dtype='bfloat16' on a GPU.")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif quantize == "int8-weight":
            try:
                from torchao.quantization import Int8WeightOnlyConfig, quantize_
            except ImportError as exc:
                raise hide_cause(ConfigError("quantize='int8-weight' needs torchao, which is not installed.",
                                             field="quantize", fix="pip install 'aligner-kit[quant]' (torchao)."), exc)
            quantize_(model, Int8WeightOnlyConfig())
        template = template or meta.get("template") or None
        return cls(model, tokenizer, name=str(model_id), template=template, decoding=decoding,
                   metadata=meta)

    @property
    def is_demo(self) -> bool:
        return bool(self.metadata.get("demo"))

    @property
    def eos_token(self) -> str | None:
        return self.generator.tokenizer.eos_token

    def input_budget(self) -> int:
        """The most prompt tokens: half the context of a decoder-only model (the correction is about
        as long as the answer), the whole context of an encoder-decoder's encoder."""
        gen = self.generator
        ctx = gen.context_length
        return self.max_input_tokens or (ctx if gen.is_encoder_decoder else max(16, ctx // 2))

    def token_budget(self) -> TokenBudget:
        """:meth:`input_budget` and this tokenizer, for ``fit`` and ``prompt_fits``
        (:meth:`~aligner.correctors.base.Corrector.token_budget`)."""
        gen = self.generator
        return TokenBudget(budget=self.input_budget(), context=gen.context_length,
                           max_token_chars=self._max_token_chars(),
                           prompt_tokens=gen.count_tokens,
                           answer_ids=lambda text: gen.token_ids([text], special=False)[0],
                           text_of=lambda ids: gen.tokenizer.decode(ids, skip_special_tokens=True))

    def _max_token_chars(self) -> int:
        """The most characters one token of this vocabulary can stand for (bounds ``fit``'s work)."""
        if self._token_chars is None:
            vocab = self.generator.tokenizer.get_vocab()
            self._token_chars = max([len(t) for t in vocab] or [1])
        return self._token_chars

    def answer_tokens(self, answer: str) -> int:
        return self.generator.count_tokens(answer, special=False)

    def usage(self, prompt: str, completion: str) -> dict[str, int]:
        """The prompt's tokens as the model is given them (special tokens included) and the
        correction's own."""
        prompt_tokens = self.generator.count_tokens(prompt)
        completion_tokens = self.generator.count_tokens(completion, special=False)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """One batched ``generate`` in which every row is checked after each step (cancel, cap,
        guard) and streams its own text when it has ``on_text``."""
        if (decoding.prompt_lookup and len(prompts) > 1 and not decoding.do_sample
                and not self.generator.uses_loop(decoding)):
            # transformers runs prompt-lookup decoding one sequence at a time.
            return [self.generator.generate([p], decoding, [r])[0] for p, r in zip(prompts, rows)]
        return self.generator.generate(list(prompts), decoding, list(rows))

    def stream_prompt(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        return self.generator.stream(prompt, decoding)
