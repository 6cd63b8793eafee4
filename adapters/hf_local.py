"""A local transformers causal LM as the upstream (``hf:PATH_OR_HUB_ID`` or a loaded model).

Generation goes through :class:`aligner.runtime.local_runtime.LocalGenerator`, the loop the local correctors
use, so padding, the KV cache and the stable-prefix streamer behave the same for both and an
answer streamed equals the answer returned whole. Chat models are prompted with their own chat
template; base models (no template) with a plain ``User: …\\nAssistant:`` transcript, cut where
the model starts writing the next ``User:`` turn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from aligner.contracts.decoding import DecodingConfig

from aligner.runtime.local_runtime import LocalGenerator, pick_device
from aligner.contracts.errors import ConfigError, hide_cause
from aligner.runtime.hub import check_hub_model, looks_like_path
from aligner.runtime.progress import model_loading
from aligner.contracts.streaming import StreamParser
from aligner.adapters.base import Messages, Upstream
from aligner.contracts.registry import register_upstream

#: OpenAI request fields a local model has no use for (accepted so a proxy can pass them through).
_IGNORED = frozenset({"seed", "presence_penalty", "frequency_penalty", "n", "user", "logprobs"})
_PLAIN_STOP = "\nUser:"


def plain_prompt(messages: Messages) -> str:
    """The transcript a model without a chat template continues: ``User: …\\nAssistant:``.

    ``aligner export`` writes plain (non ``--chat``) prompts with this function, so a strong model
    fine-tuned on an export answers the very prompt it gets when it is served back as ``hf:DIR``.
    """
    lines = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


_FIX = ("pass upstream='hf:DIR' with a directory holding config.json, weights and a tokenizer "
        "(save_pretrained output), or a hub id such as 'hf:Qwen/Qwen2.5-0.5B-Instruct' (needs network "
        "or a cached copy).")


def check_model_location(spec: "str | Path") -> None:
    """What follows ``hf:`` names a directory that exists, or a hub id the cache holds or the hub
    can serve: a ConfigError otherwise, in one line, before anything is loaded (``aligner correct``
    calls it before loading the corrector, so an unreachable upstream does not wait for that)."""
    ident = str(spec)
    if Path(ident).expanduser().exists():
        return
    if looks_like_path(spec):
        raise ConfigError(f"no such model directory: {ident!r}.", field="upstream", fix=_FIX)
    # offline or out of reach: one line now, not the loaders' retries
    check_hub_model(ident, field="upstream", flag="--upstream", prefix="hf:", local="hf:DIR (a local model directory)")


def load_causal_lm(spec: "str | Path", device: str | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, id) from a directory or hub id; a bad spec is a ConfigError, not an OSError."""
    ident = str(spec)
    local = Path(ident).expanduser()
    fix = _FIX
    check_model_location(spec)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = str(local) if local.exists() else ident
    try:
        with model_loading():
            tokenizer = AutoTokenizer.from_pretrained(target)
            model = AutoModelForCausalLM.from_pretrained(target)
    except (OSError, ValueError) as exc:
        where = "a local directory but not a loadable model" if local.exists() else \
            "not a local directory and not reachable on the hub (offline, or a typo?)"
        first = (str(exc).strip().splitlines() or [""])[0]  # whole: a cut message ends mid-URL
        raise hide_cause(ConfigError(f"cannot load {ident!r}: {where} ({type(exc).__name__}: {first}).",
                                     field="upstream", fix=fix), exc)
    model.to(pick_device(device)).eval()
    return model, tokenizer, ident


@register_upstream
class HFUpstream(Upstream):
    """Answers from a local causal LM; ``decoding`` defaults to greedy with 512 new tokens."""

    streams_natively = True
    spec_prefix = "hf:"

    @classmethod
    def matches(cls, spec: Any) -> bool:
        """``'hf:PATH_OR_HUB_ID'``, or a loaded transformers model (told by its class hierarchy,
        so telling never imports transformers)."""
        return super().matches(spec) or any(
            c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers") for c in type(spec).__mro__)

    @classmethod
    def from_spec(cls, spec: Any, model: str | None = None, **kw: Any) -> "HFUpstream":
        if isinstance(spec, str):
            spec = spec[len("hf:"):].strip()
            if not spec:
                raise ConfigError("'hf:' needs a model path or hub id after it.", field="upstream",
                                  fix="e.g. upstream='hf:./my-model' or 'hf:Qwen/Qwen2.5-0.5B-Instruct'.")
        return cls(spec, **kw)

    def __init__(self, model: Any, tokenizer: Any = None, device: str | None = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None, **kw: Any):
        super().__init__(**kw)
        if isinstance(model, (str, Path)):
            if not str(model).strip():
                raise ConfigError("is empty.", field="upstream", fix="pass 'hf:PATH_OR_HUB_ID'.")
            lm, loaded_tok, ident = load_causal_lm(model, device)
            tokenizer = tokenizer or loaded_tok
        else:
            lm = model
            if not hasattr(lm, "generate") or not hasattr(lm, "config"):
                raise ConfigError(f"expected a transformers causal LM, got {type(model).__name__}.",
                                  field="upstream", fix="pass 'hf:PATH_OR_HUB_ID' or a PreTrainedModel.")
            ident = str(getattr(lm, "name_or_path", "") or getattr(lm.config, "_name_or_path", "") or
                        type(lm).__name__)
            if device:
                lm.to(device)
            lm.eval()
            if tokenizer is None:
                tokenizer = self._tokenizer_for(lm, ident)
        if isinstance(tokenizer, (str, Path)):
            tokenizer = self._tokenizer_for(lm, str(tokenizer))
        if getattr(getattr(lm, "config", None), "is_encoder_decoder", False):
            raise ConfigError("an encoder-decoder model cannot be the upstream (it does not continue a chat).",
                              field="upstream", fix="pass a decoder-only (causal) LM path or hub id.")
        self.generator = LocalGenerator(lm, tokenizer)
        self.tokenizer = tokenizer
        self.decoding = DecodingConfig.from_any(decoding, {"max_new_tokens": 512})
        #: the model id (what the proxy lists as its model name); the torch module is ``generator.model``.
        self.model = ident
        self.name = f"hf:{ident}"

    @staticmethod
    def _tokenizer_for(lm: Any, ident: str) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(ident)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"no tokenizer given and none found at {ident!r}.", field="tokenizer",
                              fix="pass tokenizer= (the model's AutoTokenizer) along with the model.") from exc

    # -- prompt and decoding -------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt(self, messages: Messages) -> str:
        """The text the model continues: its chat template, or a plain transcript for base models."""
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            bos = getattr(self.tokenizer, "bos_token", None)
            if bos and isinstance(text, str) and text.startswith(bos):
                text = text[len(bos):]  # the generator's tokenizer call adds BOS itself
            return text
        return plain_prompt(messages)

    def _params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """OpenAI-style request fields → ``decoding`` + ``stop``, checked before any attempt."""
        merged = {**self.params, **overrides}
        decoding: dict[str, Any] = {}
        stop: list[str] = []
        for key, value in merged.items():
            if value is None or key in _IGNORED:
                continue
            if key in ("max_tokens", "max_completion_tokens"):
                decoding["max_new_tokens"] = value
            elif key == "temperature":
                decoding["do_sample"] = float(value) > 0
                if float(value) > 0:
                    decoding["temperature"] = float(value)
            elif key == "stop":
                stop.extend([value] if isinstance(value, str) else list(value))
            else:
                decoding[key] = value
        config = DecodingConfig.from_any(decoding, self.decoding.to_dict()) if decoding else self.decoding
        return {"decoding": config, "stop": tuple(stop)}

    def _stops(self, stop: tuple[str, ...]) -> tuple[str, ...]:
        return stop if self.has_chat_template else (_PLAIN_STOP, *stop)

    # -- provider primitives ---------------------------------------------------------------
    def _complete(self, messages: Messages, decoding: DecodingConfig | None = None,
                  stop: tuple[str, ...] = ()) -> str:
        raw = self.generator.generate([self.prompt(messages)], decoding or self.decoding)[0]
        return StreamParser(self._stops(stop)).complete(raw)

    def _stream(self, messages: Messages, decoding: DecodingConfig | None = None,
                stop: tuple[str, ...] = ()) -> Iterator[str]:
        yield from StreamParser(self._stops(stop)).parse(
            self.generator.stream(self.prompt(messages), decoding or self.decoding))
