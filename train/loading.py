"""The model a trainer starts from and the model it saves: resolving ``--base-model`` (a directory or
a hub id), loading it (or a random init with ``--from-scratch``), QLoRA's checks, LoRA adapters and
gradient checkpointing, and merging the adapters back into a plain model at the end.

Shared by the corrector trainer (:mod:`aligner.train.corrector`) and the weak-to-strong trainer
(:mod:`aligner.train.strong`), so a fix to loading reaches both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aligner.contracts.errors import ConfigError
from aligner.runtime.hub import check_hub_model, looks_like_path
from aligner.runtime.progress import model_loading
from aligner.train.config import TrainConfig


def resolve_base_model(spec: str) -> str:
    """A local directory or a hub id; a path that does not exist is a clear error, not an OSError."""
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{spec!r} has no config.json.", field="base_model",
                              fix="point --base-model at a directory written by save_pretrained, or a hub id.")
        return str(p)
    if looks_like_path(spec, local_folder=True):  # `runs/x` beside a runs/ folder: a path
        raise ConfigError(f"no such model directory {spec!r}.", field="base_model",
                          fix="pass an existing directory (with config.json) or a hub id such as "
                              "meta-llama/Llama-2-7b-hf.")
    return spec


def load_base(config: TrainConfig) -> tuple[Any, Any, bool]:
    """(model, tokenizer, is_encoder_decoder) from ``base_model``; random init when ``from_scratch``."""
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer)

    spec = resolve_base_model(str(config.base_model))
    if not Path(spec).exists():  # a hub id, offline or out of reach: one line now, not the loaders' retries
        check_hub_model(spec, field="base_model", flag="--base-model",
                        local="a local directory (with config.json and weights)")
    try:
        mconfig = AutoConfig.from_pretrained(spec)
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {str(exc).splitlines()[0]}", field="base_model",
                          fix="check the hub id (and your network / HF_HUB_OFFLINE), or pass a local directory.") from exc
    enc_dec = bool(getattr(mconfig, "is_encoder_decoder", False))
    auto = AutoModelForSeq2SeqLM if enc_dec else AutoModelForCausalLM
    # fp32 master weights (mixed precision autocasts to bf16 where enabled); a checkpoint saved in
    # fp16 (the demo corrector) would otherwise be trained in pure fp16 and stall.
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.qlora:
        kwargs["quantization_config"] = _bnb_config()
        kwargs["dtype"] = torch.bfloat16
    model = model_of(auto, spec, mconfig, from_scratch=config.from_scratch, seed=config.seed, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {spec!r} has no EOS token.", field="base_model",
                          fix="use a tokenizer with an eos_token: the corrector must learn where to stop.")
    return model, tokenizer, enc_dec


def model_of(auto: Any, spec: str, model_config: Any, *, from_scratch: bool, seed: int, **weights: Any) -> Any:
    """The model a trainer starts from, for the corrector and the gate alike: with ``--from-scratch``
    a random init of ``model_config`` (fp32, seeded with ``seed``), else the weights at ``spec``
    (``weights``: the ``from_pretrained`` options). ``auto`` is a transformers ``AutoModelFor…``
    class. Weights that cannot be read are a ConfigError that names ``--from-scratch``."""
    import torch

    if from_scratch:
        torch.manual_seed(seed)
        return auto.from_config(model_config, dtype=torch.float32)
    try:
        with model_loading():
            return auto.from_pretrained(spec, **weights)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load weights from {spec!r}: {str(exc).splitlines()[0]}", field="base_model",
                          fix="pass a directory with model weights, or add --from-scratch to train a "
                              "randomly initialised model of that config.") from exc


def check_qlora() -> None:
    """QLoRA needs bitsandbytes and a CUDA GPU; say so (and how to fix it) instead of crashing."""
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("bitsandbytes is not installed.", field="qlora",
                          fix="pip install 'aligner-kit[qlora]' (needs a CUDA GPU), or use --lora for "
                              "16-bit LoRA without quantisation.")
    if not torch.cuda.is_available():
        raise ConfigError("4-bit QLoRA needs a CUDA GPU and none is visible.", field="qlora",
                          fix="run on a machine with an NVIDIA GPU, or drop --qlora (use --lora) on CPU.")


def _bnb_config() -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def add_lora(model: Any, config: TrainConfig, encoder_decoder: bool) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    if config.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    targets: Any = config.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    lcfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets,
                      task_type=TaskType.SEQ_2_SEQ_LM if encoder_decoder else TaskType.CAUSAL_LM)
    return get_peft_model(model, lcfg)


def ready_to_train(model: Any, config: Any, enc_dec: bool) -> Any:
    """``model`` with gradient checkpointing and LoRA adapters as ``config`` asks, alike for every
    trainer (checkpointing needs grads on the inputs for a frozen, adapter-trained embedding)."""
    if config.gradient_checkpointing:  # the new name where there is one: the old one warns on every run
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if config.lora or config.qlora:
        model = add_lora(model, config, enc_dec)
    return model


def merge_adapters(model: Any, out: Path, config: TrainConfig) -> Any:
    """A plain model to save: LoRA merged in (QLoRA: into a 16-bit reload of the base), cast to ``save_dtype``.

    A 4-bit matrix cannot absorb the adapter exactly, so QLoRA writes the adapter to ``out/adapter``
    and merges it into the base reloaded in bf16.
    """
    import torch

    if config.qlora:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        adapter_dir = out / "adapter"
        model.save_pretrained(adapter_dir)
        enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if enc_dec else AutoModelForCausalLM
        base = auto.from_pretrained(resolve_base_model(str(config.base_model)), dtype=torch.bfloat16)
        model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    elif config.lora:
        model = model.merge_and_unload()
    if config.save_dtype:
        model = model.to(getattr(torch, config.save_dtype))
    return model
