"""A local transformers causal LM as the upstream (``hf:PATH_OR_HUB_ID`` or a loaded model).

Generation goes through :class:`aligner.decoding.LocalGenerator`, the loop the local correctors
use, so padding, KV cache and streaming behave identically for both roles.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from ..decoding import DecodingConfig, LocalGenerator, pick_device
from ..errors import ConfigError
from .base import Messages, Upstream

#: An upstream answer rarely needs the corrector's 2048 tokens; callers can raise it.
DEFAULT_UPSTREAM_DECODING: Mapping[str, object] = {"max_new_tokens": 512, "do_sample": False}


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def plain_prompt(messages: Messages) -> str:
    """A chat rendered for a base model with no chat template."""
    lines = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


class HFUpstream(Upstream):
    """Answers from a transformers causal LM running in this process."""

    def __init__(self, model: Any, tokenizer: Any = None, device: str | None = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None, **kw: Any):
        super().__init__(**kw)
        self.decoding = DecodingConfig.from_any(decoding, DEFAULT_UPSTREAM_DECODING)
        if isinstance(model, (str, Path)):
            model, tokenizer = self._load(str(model), tokenizer, device)
        elif tokenizer is None:
            source = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
            tokenizer = self._load_tokenizer(source) if source else None
            if tokenizer is None:
                raise ConfigError("a loaded model needs its tokenizer.", field="tokenizer",
                                  fix="pass HFUpstream(model, tokenizer=AutoTokenizer.from_pretrained(...)).")
        elif isinstance(tokenizer, (str, Path)):
            tokenizer = self._load_tokenizer(str(tokenizer))
        if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
            raise ConfigError("an encoder-decoder model cannot be an upstream (it has no chat).",
                              field="upstream", fix="pass a causal LM (decoder-only) path or id.")
        self.name = self.name if self.name != "upstream" else str(
            getattr(model.config, "_name_or_path", "") or type(model).__name__)
        self.generator = LocalGenerator(model, tokenizer)

    def _load_tokenizer(self, source: str) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a tokenizer from {source!r}.", field="tokenizer",
                              fix="pass tokenizer= (an object, path or hub id).") from exc

    def _load(self, spec: str, tokenizer: Any, device: str | None) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        local = Path(spec).expanduser()
        if _looks_like_path(spec) and not local.exists():
            raise ConfigError(f"no such model directory: {spec!r}.", field="upstream",
                              fix="pass 'hf:' + a directory holding config.json and weights (from "
                                  "save_pretrained), or a hub id such as 'hf:Qwen/Qwen2.5-0.5B-Instruct'.")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else spec)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load {spec!r} as a causal LM: {str(exc).splitlines()[0][:200]}",
                              field="upstream", fix="check the path or hub id (a hub id needs network or "
                                                    "a cached copy) and that it is a decoder-only model.") from exc
        self.name = spec
        model.to(pick_device(device)).eval()
        if tokenizer is None or isinstance(tokenizer, (str, Path)):
            tokenizer = self._load_tokenizer(str(tokenizer or (local if local.exists() else spec)))
        return model, tokenizer

    # -- provider primitives -----------------------------------------------------------------
    def prompt(self, messages: Messages) -> str:
        """The model's own chat template when it has one, else a plain User/Assistant transcript."""
        tok = self.generator.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)

    def _decoding(self, params: dict[str, Any]) -> DecodingConfig:
        params = dict(params)
        if "max_tokens" in params:  # accept the OpenAI name too
            params["max_new_tokens"] = params.pop("max_tokens")
        return DecodingConfig.from_any(params, self.decoding.to_dict()) if params else self.decoding

    def _complete(self, messages: Messages, **params: Any) -> str:
        return self.generator.generate([self.prompt(messages)], self._decoding(params))[0]

    def _stream(self, messages: Messages, **params: Any) -> Iterator[str]:
        return self.generator.stream(self.prompt(messages), self._decoding(params))
