"""What every trainer here shares about the run itself: how many processes take part, how many
steps to accumulate, the ``TrainingArguments`` (optimiser, schedule, precision, launcher), and the
checkpoint ``--resume`` continues from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aligner.train.config import TrainConfig

#: what a run writes in ``output_dir``: its plan and status, the resumable checkpoints, and (written by
#: :mod:`aligner.train.callbacks`) the loss history, its curve and one marker per process
STATE_FILE = "train_state.json"
CHECKPOINTS = "checkpoints"
HISTORY_FILE = "loss_history.json"
CURVE_FILE = "loss_curve.png"
RANKS_DIR = "ranks"


def world_size() -> int:
    """Processes taking part (torchrun / accelerate launch set ``WORLD_SIZE``)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def gradient_accumulation(config: TrainConfig, processes: int | None = None) -> int:
    """Accumulation steps so that batch × processes × accumulation ≈ the effective batch (paper: 32)."""
    processes = processes or world_size()
    return max(1, round(config.effective_batch_size / (config.batch_size * processes)))


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _bf16(config: TrainConfig) -> bool:
    if config.bf16 is not None:
        return bool(config.bf16)
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def training_arguments(config: TrainConfig, ckpt_dir: Path, procs: int, accum: int, *, evaluate: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` every trainer here shares (optimiser, schedule, precision, launcher, checkpoints).

    Each trainer adds its own (epochs, sampler, trl options) on top; keeping one dict means a fix to
    the launcher handling (gloo on CPU, bf16, gradient checkpointing) reaches every command.
    """
    eval_steps = config.eval_steps or config.logging_steps * 10
    return dict(
        output_dir=str(ckpt_dir), max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        adam_beta1=config.adam_beta1, adam_beta2=config.adam_beta2, weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm, bf16=_bf16(config), logging_steps=config.logging_steps,
        save_steps=config.save_steps, save_total_limit=config.save_total_limit, seed=config.seed,
        report_to=[] if config.report_to in ("none", "", None) else [config.report_to],
        disable_tqdm=not config.progress, dataloader_num_workers=config.dataloader_workers,
        eval_strategy="steps" if evaluate else "no", eval_steps=eval_steps if evaluate else None,
        # transformers builds a gloo (MULTI_CPU) state only with use_cpu=True; otherwise torchrun ranks
        # on a CPU-only machine would each train alone.
        use_cpu=not _cuda(),
        ddp_backend=config.ddp_backend or ("gloo" if procs > 1 and not _cuda() else None), ddp_find_unused_parameters=False if procs > 1 else None,
        logging_first_step=True, save_only_model=False, dataloader_pin_memory=_cuda(),
        # trl's configs turn gradient checkpointing on by default (~20-30% slower); ours is opt-in.
        **{checkpointing_argument(): config.gradient_checkpointing},
    )


def checkpointing_argument() -> str:
    """The ``TrainingArguments`` name of gradient checkpointing in this transformers: newer ones
    call it ``activation_checkpointing`` and warn (FutureWarning, on every run) when given the old
    ``gradient_checkpointing``, which older ones alone know."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def resume_point(config: Any, ckpt_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` continues from (None without ``--resume`` or before the first
    save), said aloud so a run that starts over is not mistaken for a resumed one."""
    if not config.resume:
        return None
    found = last_checkpoint(ckpt_dir)
    print(f"resuming from {found}" if found else f"--resume: no checkpoint in {ckpt_dir}; starting from the beginning.")
    return found


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` (one with trainer_state.json) under ``ckpt_dir``."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for p in ckpt_dir.glob("checkpoint-*"):
        try:
            n = int(p.name.split("-")[-1])
        except ValueError:
            continue
        if (p / "trainer_state.json").is_file():
            found.append((n, p))
    return max(found)[1] if found else None
