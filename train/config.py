"""Options of ``aligner train``, ``aligner train-strong`` and ``aligner train-gate``: dataclasses whose
fields are the Python API, the CLI flags and YAML keys.

:class:`TrainConfig` holds what every trainer here shares (data, base model, optimiser, LoRA/QLoRA,
checkpoints, launcher); :class:`CorrectorTrainConfig` adds the corrector's data format, template and
identity warm-up, :class:`StrongTrainConfig` the weak-to-strong method (SFT or DPO),
:class:`GateTrainConfig` the moderation gate's calibration (target recall, minimum severity).

Defaults are the Aligner paper's recipe (arXiv 2402.02416): 3 epochs, max length 2048, lr 2e-5 with a
cosine schedule and 3% warm-up, AdamW betas (0.9, 0.95), an effective batch of 32 and bf16 where the
hardware supports it. A tiny model trained from scratch needs very different numbers (lr ~1e-3,
short sequences); the demo corrector's script sets those explicitly rather than changing defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from aligner.contracts.errors import ConfigError


@dataclass
class TrainConfig:
    """What every trainer shares; the subclasses are the commands (``aligner train``, ``aligner train-strong``)."""

    #: the first line of a working command line, for the "no training data" fix
    usage: ClassVar[str] = "aligner train --data qac.jsonl --base-model MODEL --output-dir OUT"

    data: str | None = field(default=None, metadata={
        "help": "training data file (JSON / JSONL / .gz / parquet) or hub dataset id"})
    output_dir: str | None = field(default=None, metadata={
        "help": "where the trained corrector (and checkpoints, loss curve) is written"})
    base_model: str | None = field(default=None, metadata={
        "help": "model to fine-tune: a hub id or a directory with config.json + weights (causal LM or T5/BART)"})
    from_scratch: bool = field(default=False, metadata={
        "help": "randomly initialise a model of --base-model's config (with its tokenizer) instead of loading weights"})
    eval_data: str | None = field(default=None, metadata={
        "help": "held-out data (same format) whose loss is reported during training"})
    eval_fraction: float = field(default=0.0, metadata={
        "help": "share of --data held out for evaluation when --eval-data is not given (0 = none)"})
    limit: int | None = field(default=None, metadata={"help": "use at most this many training rows"})
    epochs: float = field(default=3.0, metadata={"help": "passes over the training data (paper: 3)"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps per phase (-1 = use epochs)"})
    max_length: int = field(default=2048, metadata={
        "help": "longest prompt + target (correction / completion) in tokens (paper: 2048); a prompt longer "
                "than this is an error"})
    learning_rate: float = field(default=2e-5, metadata={"help": "peak learning rate (paper: 2e-5)"})
    lr_scheduler: str = field(default="cosine", metadata={"help": "learning-rate schedule (transformers name)"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps spent warming the lr up (paper: 0.03)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (paper: 0.9)"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (paper: 0.95)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    batch_size: int = field(default=4, metadata={"help": "examples per device per forward pass"})
    effective_batch_size: int = field(default=32, metadata={
        "help": "examples per optimizer step over all devices (paper: 32); gradient accumulation = "
                "effective / (batch size × processes)"})
    bf16: bool | None = field(default=None, metadata={
        "help": "train in bf16 (default: on where the GPU supports it, off on CPU)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass (saves memory on long sequences, ~30%% slower)"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of all weights; merged at the end"})
    qlora: bool = field(default=False, metadata={
        "help": "LoRA on a 4-bit quantised base (needs bitsandbytes and a CUDA GPU: pip install 'aligner-kit[qlora]')"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "modules LoRA wraps: 'all-linear' or a comma list such as q_proj,v_proj"})
    packing: bool = field(default=False, metadata={
        "help": "pack several examples per sequence (trl best-fit packing; faster on padding-heavy data)"})
    group_by_length: bool = field(default=False, metadata={
        "help": "batch examples of similar length together (less padding; what a CPU run wants)"})
    padding_free: bool = field(default=False, metadata={
        "help": "concatenate a batch into one unpadded row with position ids (trl padding-free; no pad compute)"})
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "stop with a checkpoint after this many minutes of training; --resume continues"})
    ddp_backend: str | None = field(default=None, metadata={
        "help": "torch.distributed backend: nccl (GPU) | gloo (CPU) (default: chosen by accelerate)"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in --output-dir"})
    save_steps: int = field(default=500, metadata={"help": "write a checkpoint every this many steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept per phase"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every this many steps"})
    eval_steps: int | None = field(default=None, metadata={"help": "evaluate every this many steps (default: = logging steps × 10)"})
    seed: int = field(default=42, metadata={"help": "random seed (data split, shuffling, init of LoRA)"})
    torch_threads: int | None = field(default=None, metadata={"help": "CPU threads torch may use (default: torch's choice)"})
    dataloader_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    save_dtype: str | None = field(default=None, metadata={
        "help": "cast the saved model: float16 | bfloat16 | float32 (default: as trained)",
        "choices": ["float16", "bfloat16", "float32"]})
    report_to: str = field(default="none", metadata={"help": "experiment tracker: none | tensorboard | wandb | …"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    extra_metadata: dict | None = field(default=None, metadata={
        "help": "(YAML/Python only) extra keys written into aligner_config.json"})

    def validate(self) -> None:
        """Check option values before anything heavy is loaded, so mistakes fail in a second."""
        if not self.data:
            raise ConfigError("no training data given.", field="data", fix=self.usage)
        if not self.output_dir:
            raise ConfigError("no output directory given.", field="output_dir", fix="pass --output-dir runs/my-corrector")
        if not self.base_model:
            raise ConfigError("no base model given.", field="base_model",
                              fix="pass --base-model with a hub id (e.g. meta-llama/Llama-2-7b-hf) or a model directory")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.eval_fraction}.", field="eval_fraction",
                              fix="pass e.g. --eval-fraction 0.05.")
        for name in ("max_length", "batch_size", "effective_batch_size", "logging_steps", "save_steps"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"must be a positive integer, got {getattr(self, name)!r}.", field=name,
                                  fix=f"pass a positive --{name.replace('_', '-')}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"must be positive, got {self.learning_rate}.", field="learning_rate",
                              fix="paper: 2e-5 for a 7B model; ~1e-3 for a tiny model trained from scratch.")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("no training length.", field="epochs", fix="pass --epochs > 0 or --max-steps > 0.")


@dataclass
class CorrectorTrainConfig(TrainConfig):
    """Everything ``aligner train`` needs; see ``aligner train --help``."""

    data_format: str = field(default="qac", metadata={
        "help": "format of --data: qac | pku-saferlhf | hh-rlhf"})
    lenient: bool = field(default=False, metadata={
        "help": "skip (and count) malformed rows instead of stopping at the first one"})
    template: str = field(default="aligner-v1.0", metadata={
        "help": "prompt template name or string with {question} and {answer}; recorded in aligner_config.json"})
    identity_warmup: float = field(default=0.0, metadata={
        "help": "share of the data used for a first identity phase on Q-A-A (correction = answer) before "
                "Q-A-C; the paper found ~0.2 best"})
    warmup_epochs: float = field(default=1.0, metadata={"help": "passes over the identity warm-up rows"})
    question_format: str | None = field(default=None, metadata={
        "help": "what the questions are, recorded in aligner_config.json so chats are rendered the same way when "
                "correcting: last_message or conversation (HH-RLHF transcripts); default: conversation for "
                "--data-format hh-rlhf or data holding such transcripts, else last_message",
        "choices": ["last_message", "conversation"]})

    def validate(self) -> None:
        """The shared checks, then the corrector's data format and warm-up share."""
        super().validate()
        from aligner.data import FORMATS

        if str(self.data_format).strip().lower().replace("_", "-") not in FORMATS:
            raise ConfigError(f"unknown data format {self.data_format!r}.", field="data_format",
                              fix=f"use one of: {', '.join(FORMATS)}.")
        if not 0.0 <= self.identity_warmup < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.identity_warmup}.", field="identity_warmup",
                              fix="pass e.g. --identity-warmup 0.2 (20% of the data as Q-A-A warm-up).")


#: learning rate per method when ``--learning-rate`` is not given: the paper's SFT rate, trl's DPO rate
STRONG_LEARNING_RATES = {"sft": 2e-5, "dpo": 1e-6}


@dataclass
class StrongTrainConfig(TrainConfig):
    """Everything ``aligner train-strong`` needs: fine-tune a (strong) causal LM on an ``aligner export``.

    ``--data`` is the export (JSONL / parquet / a ``--to-dataset`` directory, or a hub id) in the
    format of ``--method``: SFT ``{"prompt", "completion"}`` or ``{"messages"}``, DPO ``{"prompt",
    "chosen", "rejected"}`` (plain text or conversational).
    """

    usage: ClassVar[str] = "aligner train-strong --method sft --data sft.jsonl --base-model MODEL --output-dir OUT"

    learning_rate: float | None = field(default=None, metadata={
        "help": "peak learning rate (default: 2e-5 for sft as in the paper, 1e-6 for dpo as in trl)"})
    method: str = field(default="sft", metadata={
        "help": "sft: supervised fine-tuning on the corrections | dpo: direct preference optimisation, "
                "correction preferred over answer", "choices": ["sft", "dpo"]})
    dpo_beta: float = field(default=0.1, metadata={
        "help": "DPO beta: how far the policy may move from the reference (higher = closer)"})
    dpo_loss: str = field(default="sigmoid", metadata={
        "help": "trl DPO loss type: sigmoid (DPO) | ipo | hinge | robust | …"})
    precompute_ref: bool = field(default=False, metadata={
        "help": "DPO: compute the reference log-probs once before training, so no reference model is held "
                "in memory while training"})

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            self.learning_rate = STRONG_LEARNING_RATES.get(str(self.method).strip().lower(), 2e-5)

    def validate(self) -> None:
        """The shared checks, then the method and the options each method supports."""
        self.method = str(self.method).strip().lower()
        if self.method not in STRONG_LEARNING_RATES:
            raise ConfigError(f"unknown method {self.method!r}.", field="method",
                              fix="pass --method sft (train on the corrections) or --method dpo (prefer the "
                                  "correction over the answer).")
        super().validate()
        if self.method == "dpo":
            for name in ("packing", "padding_free", "group_by_length"):
                if getattr(self, name):
                    raise ConfigError(f"--{name.replace('_', '-')} is an SFT option; trl's DPO trainer batches "
                                      "chosen and rejected pairs itself.", field=name,
                                      fix=f"drop --{name.replace('_', '-')} with --method dpo.")
            if self.dpo_beta <= 0:
                raise ConfigError(f"must be positive, got {self.dpo_beta}.", field="dpo_beta",
                                  fix="pass e.g. --dpo-beta 0.1 (trl's default).")


@dataclass
class GateTrainConfig(TrainConfig):
    """Everything ``aligner train-gate`` needs: a classifier gate from PKU-SafeRLHF-format rows.

    Both responses of every row are labelled examples (``is_response_N_safe``,
    ``response_N_harm_category``, ``response_N_severity_level``). The held-out split (``--eval-data``,
    else ``--eval-fraction`` of the rows) reports the loss, per-category F1, severity accuracy and
    unsafe recall, and calibrates the flag thresholds to ``--target-recall``.
    """

    usage: ClassVar[str] = "aligner train-gate --data pku.jsonl --base MODEL --out DIR"

    output_dir: str | None = field(default=None, metadata={
        "help": "where the trained gate (and checkpoints, loss curve, gate_report.json) is written",
        "aliases": ["--out"]})
    base_model: str | None = field(default=None, metadata={
        "help": "model to fine-tune: a hub id or a directory with config.json (any transformers encoder or "
                "causal LM); a sequence-classification head is added", "aliases": ["--base"]})
    eval_fraction: float = field(default=0.1, metadata={
        "help": "share of --data rows held out (both responses of a row together) to report on and calibrate "
                "the thresholds with, when --eval-data is not given"})
    max_length: int = field(default=512, metadata={"help": "tokens of question + answer the gate reads (longer is cut)"})
    learning_rate: float = field(default=3e-5, metadata={"help": "peak learning rate (~3e-5 for a pretrained "
                                                                 "encoder; ~1e-3 for a tiny model from scratch)"})
    target_recall: float = field(default=0.95, metadata={
        "help": "calibrate the flag threshold so that this share of the held-out unsafe answers is flagged"})
    min_severity: str | None = field(default=None, metadata={
        "help": "flag only answers at or above this severity by default (recorded in the gate's config; "
                "recall is then calibrated on those)", "choices": ["minor", "moderate", "severe"]})
    category_threshold: float = field(default=0.5, metadata={
        "help": "probability at which a harm category is reported in a verdict"})
    text_format: str = field(default="BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}", metadata={
        "help": "what the gate reads: a string with {question} and {answer}; recorded in its config"})
    lenient: bool = field(default=False, metadata={
        "help": "skip (and count) rows without safety labels or with unknown values instead of stopping"})

    def validate(self) -> None:
        """The shared checks, then the gate's own (before anything heavy loads)."""
        super().validate()
        from aligner.gates.base import check_min_severity, check_threshold

        if isinstance(self.target_recall, bool) or not isinstance(self.target_recall, (int, float)) \
                or not 0.0 < self.target_recall <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.target_recall!r}.", field="target_recall",
                              fix="e.g. --target-recall 0.95 (flag 95% of the held-out unsafe answers).")
        self.min_severity = check_min_severity(self.min_severity, field="min_severity")
        check_threshold(self.category_threshold, field="category_threshold")
        if "{question}" not in self.text_format or "{answer}" not in self.text_format:
            raise ConfigError("must contain {question} and {answer}.", field="text_format",
                              fix="e.g. --text-format 'USER: {question} ASSISTANT: {answer}'.")
        for name in ("packing", "padding_free", "qlora"):
            if getattr(self, name):
                raise ConfigError(f"--{name.replace('_', '-')} is not available for a gate.", field=name,
                                  fix=f"drop --{name.replace('_', '-')} (use --lora for adapters).")
        if self.eval_fraction <= 0 and not self.eval_data:
            raise ConfigError("a gate needs held-out data to report on and calibrate its threshold with.",
                              field="eval_fraction", fix="pass --eval-fraction 0.1 or --eval-data FILE.")
