"""Decoding settings and the local generation loop shared by local correctors and local upstreams.

One place owns left padding, the KV cache, streaming and prompt-lookup decoding, so a causal
corrector and a causal upstream (``hf:`` spec) decode exactly the same way.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterator, Mapping

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


@dataclass
class DecodingConfig:
    """How a local or remote model samples. Defaults follow the model card (greedy, 2048 new tokens)."""

    max_new_tokens: int = 2048
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    #: Prompt-lookup decoding: draft this many tokens by copying from the prompt (the answer being
    #: corrected) and verify them in one forward pass. Same greedy output, fewer passes. 0 = off.
    prompt_lookup: int = 0

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
        if self.temperature <= 0 and self.do_sample:
            raise ConfigError("must be > 0 when sampling.", field="temperature",
                              fix="use temperature > 0, or do_sample=False for greedy decoding.")

    @classmethod
    def from_any(cls, value: "DecodingConfig | Mapping[str, Any] | None",
                 base: Mapping[str, Any] | None = None) -> "DecodingConfig":
        """Merge template defaults (``base``) with user overrides; unknown keys are an error."""
        if isinstance(value, DecodingConfig):
            return value
        merged = dict(base or {})
        names = {f.name for f in fields(cls)}
        for key, v in dict(value or {}).items():
            if key not in names:
                raise ConfigError(f"unknown decoding option {key!r}.", field="decoding",
                                  fix=f"use only {sorted(names)}.")
            merged[key] = v
        return cls(**{k: v for k, v in merged.items() if k in names})

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


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class LocalGenerator:
    """Batched and streamed generation from a transformers model (decoder-only or encoder-decoder)."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        # Decoder-only models must be left padded so every row's next token follows its own prompt.
        tokenizer.padding_side = "right" if self.is_encoder_decoder else "left"
        self._lock = threading.Lock()  # one generate() at a time per model; batching happens above

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """Longest sequence the model accepts (prompt + generation for decoder-only models)."""
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        tml = getattr(self.tokenizer, "model_max_length", None)
        return tml if isinstance(tml, int) and 0 < tml < 1_000_000 else 512

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting an over-long text is how truncation starts, not an "indexing error"
        return len(self.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])

    def _gen_kwargs(self, decoding: DecodingConfig, prompt_len: int, batch: int) -> dict[str, Any]:
        kw = decoding.hf_kwargs()
        if not self.is_encoder_decoder:
            kw["max_new_tokens"] = max(1, min(kw["max_new_tokens"], self.context_length - prompt_len))
        else:
            kw["max_new_tokens"] = max(1, min(kw["max_new_tokens"], self.context_length))
        if decoding.prompt_lookup and batch == 1 and not decoding.do_sample:
            kw["prompt_lookup_num_tokens"] = decoding.prompt_lookup
        kw["pad_token_id"] = self.tokenizer.pad_token_id
        kw["eos_token_id"] = self.tokenizer.eos_token_id
        return kw

    def _encode(self, prompts: list[str]) -> Any:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True)
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def generate(self, prompts: list[str], decoding: DecodingConfig) -> list[str]:
        """New text for each prompt, in order (special tokens removed)."""
        import torch

        if not prompts:
            return []
        enc = self._encode(prompts)
        width = enc["input_ids"].shape[1]
        with self._lock, torch.inference_mode():
            out = self.model.generate(**enc, **self._gen_kwargs(decoding, width, len(prompts)))
        new = out if self.is_encoder_decoder else out[:, width:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def stream(self, prompt: str, decoding: DecodingConfig) -> Iterator[str]:
        """Text pieces as tokens are generated (generate keeps the KV cache between steps)."""
        import torch

        enc = self._encode([prompt])
        streamer = _PieceStreamer(self.tokenizer, skip_prompt=not self.is_encoder_decoder)
        kwargs = dict(**enc, **self._gen_kwargs(decoding, enc["input_ids"].shape[1], 1), streamer=streamer)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the consuming thread below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        while True:
            piece = streamer.queue.get()
            if piece is None:
                break
            yield piece
        worker.join()
        if errors:
            raise errors[0]


class _PieceStreamer:
    """A ``generate`` streamer that emits only the stable decoded prefix.

    Byte-level tokenizers can end a step in the middle of a UTF-8 character (decoded as U+FFFD),
    and what that turns into depends on later tokens. Emitting only text before the first U+FFFD
    guarantees the pieces concatenate to exactly the batch-decoded text (the parity tests rely on it).
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool):
        import queue

        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.ids: list[int] = []
        self.emitted = ""
        self.queue: "queue.Queue[str | None]" = queue.Queue()
        self.ended = False

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def put(self, value: Any) -> None:
        if self.skip_prompt:  # the first call carries the prompt of a decoder-only model
            self.skip_prompt = False
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        stable = self._text().split("\ufffd", 1)[0]
        if len(stable) > len(self.emitted) and stable.startswith(self.emitted):
            self.queue.put(stable[len(self.emitted):])
            self.emitted = stable

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        text = self._text()
        if len(text) > len(self.emitted) and text.startswith(self.emitted):
            self.queue.put(text[len(self.emitted):])
        self.queue.put(None)
