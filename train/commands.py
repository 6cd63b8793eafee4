"""``aligner train``: fine-tune a corrector on Q-A-C data (the paper's SFT recipe by default).

The command is a thin shell over :func:`aligner.train.corrector.train_corrector`; flags, YAML keys
and the Python API are the same :class:`~aligner.train.config.CorrectorTrainConfig` fields. It runs
unchanged under ``torchrun`` / ``accelerate launch`` (DDP, FSDP, DeepSpeed): the Trainer underneath
reads the launcher's environment, and only rank 0 writes the final model.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from aligner.config_parser import add_config_command, build_config

from aligner.train.config import CorrectorTrainConfig

EXAMPLES = """examples:
  aligner train --data qac.jsonl --base-model meta-llama/Llama-2-7b-hf --output-dir runs/aligner-7b
  aligner train --config train/configs/aligner-7b.yaml --identity-warmup 0.2
  aligner train --data hh.jsonl.gz --data-format hh-rlhf --base-model ./my-model --output-dir out --lora
  aligner train ... --resume                       # continue from the last checkpoint in --output-dir
  torchrun --nproc_per_node 8 -m aligner train --config train/configs/aligner-7b.yaml
  accelerate launch --config_file train/configs/accelerate_deepspeed_zero3.yaml -m aligner train --config ...
"""


def run_train(args: argparse.Namespace) -> int:
    """Build the config (YAML, then flags), train, and print where the corrector went."""
    cfg = build_config(CorrectorTrainConfig, args, getattr(args, "config", None))
    from aligner.train.corrector import train_corrector  # validates the config before anything heavy loads

    result = train_corrector(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        loss = f", final eval loss {result.final_eval_loss:.4f}" if result.final_eval_loss is not None else ""
        print(f"corrector saved to {result.output_dir} ({result.global_step} optimizer steps on "
              f"{result.world_size} process(es){loss}); loss curve: {result.output_dir / 'loss_curve.png'}\n"
              f"use it: aligner correct \"QUESTION\" --answer \"ANSWER\" --corrector {result.output_dir}")
    return 0


DESCRIPTION = """\
Supervised fine-tuning of a corrector: the loss is on the correction tokens (+ EOS) only. \
Defaults follow the Aligner paper: 3 epochs, max length 2048, lr 2e-5 cosine, warm-up ratio 0.03, \
AdamW (0.9, 0.95), effective batch 32, bf16 where supported."""
STRONG_DESCRIPTION = """\
Weak-to-strong: fine-tune any causal LM on the corrections a (weak) Aligner made of its answers, \
exported with aligner export: --method sft trains on the corrections, --method dpo prefers each \
correction over its answer. Full, LoRA or QLoRA, and the same launchers (torchrun / accelerate) as aligner train."""


def add_commands(sub: Any) -> None:
    from aligner.train.config import StrongTrainConfig
    from aligner.train.strong import EXAMPLES as STRONG_EXAMPLES, run_train_strong

    add_config_command(sub, "train", CorrectorTrainConfig, run_train, description=DESCRIPTION, epilog=EXAMPLES,
                       help="fine-tune a corrector on Q-A-C data (full, LoRA or QLoRA; paper recipe defaults)",
                       skip=("extra_metadata",))
    add_config_command(sub, "train-strong", StrongTrainConfig, run_train_strong, description=STRONG_DESCRIPTION,
                       help="fine-tune a strong model on an aligner export (weak-to-strong; trl SFT or DPO)",
                       epilog=STRONG_EXAMPLES, skip=("extra_metadata",))
