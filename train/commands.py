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

from aligner.contracts.config_parser import add_config_command, build_config

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


GATE_DESCRIPTION = """\
Train a moderation gate (the classifier kind): a sequence-classification model over (question, answer) \
that predicts unsafe / safe, the 19 PKU-SafeRLHF harm categories and the severity, from PKU-SafeRLHF-format \
rows (both responses of each row, with is_response_N_safe, response_N_harm_category, response_N_severity_level). \
Any transformers encoder or causal base; --lora for adapters. The held-out split reports per-category F1, \
severity accuracy and unsafe recall, and calibrates the flag threshold to --target-recall."""
GATE_EXAMPLES = """examples:
  aligner train-gate --data pku.jsonl --base microsoft/deberta-v3-small --out runs/gate
  aligner train-gate --data PKU-Alignment/PKU-SafeRLHF --base ./my-encoder --out runs/gate --target-recall 0.98
  aligner train-gate --data pku.jsonl --base Qwen/Qwen2.5-0.5B --out runs/gate --lora --min-severity moderate
use it: aligner correct "QUESTION" --answer "ANSWER" --gate runs/gate
"""


def run_train_gate(args: argparse.Namespace) -> int:
    """Build the config (YAML, then flags), train and calibrate, and print where the gate went."""
    from aligner.train.config import GateTrainConfig

    cfg = build_config(GateTrainConfig, args, getattr(args, "config", None))
    from aligner.train.gate import REPORT_FILE, train_gate

    result = train_gate(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"gate saved to {result.output_dir} ({result.global_step} optimizer steps; held-out loss "
              f"{result.initial_eval_loss if result.initial_eval_loss is not None else float('nan'):.4f} → "
              f"{result.final_eval_loss:.4f}); report: {result.output_dir / REPORT_FILE}; loss curve: "
              f"{result.output_dir / 'loss_curve.png'}\n"
              f"use it: aligner correct \"QUESTION\" --answer \"ANSWER\" --gate {result.output_dir}")
    return 0


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 40


def add_commands(sub: Any) -> None:
    from aligner.train.config import GateTrainConfig, StrongTrainConfig
    from aligner.train.strong import EXAMPLES as STRONG_EXAMPLES, run_train_strong

    add_config_command(sub, "train", CorrectorTrainConfig, run_train, description=DESCRIPTION, epilog=EXAMPLES,
                       help="fine-tune a corrector on Q-A-C data (full, LoRA or QLoRA; paper recipe defaults)",
                       skip=("extra_metadata",))
    add_config_command(sub, "train-strong", StrongTrainConfig, run_train_strong, description=STRONG_DESCRIPTION,
                       help="fine-tune a strong model on an aligner export (weak-to-strong; trl SFT or DPO)",
                       epilog=STRONG_EXAMPLES, skip=("extra_metadata",))
    add_config_command(sub, "train-gate", GateTrainConfig, run_train_gate, description=GATE_DESCRIPTION,
                       help="train a moderation gate (unsafe, 19 harm categories, severity) on PKU-SafeRLHF rows",
                       epilog=GATE_EXAMPLES, skip=("extra_metadata", "packing", "padding_free", "qlora",
                                                    "group_by_length"))
