"""Corrector SFT: train a model to turn (question, answer) into a correction.

The paper's recipe (DESIGN §6) with trl's ``SFTTrainer`` for causal LMs and transformers'
``Seq2SeqTrainer`` for encoder-decoder bases (trl's SFTTrainer only builds decoder-only batches).

Why the examples are tokenised here rather than by trl: the prompt is tokenised *alone*, exactly as
the corrector tokenises it at inference (``add_special_tokens=True``), and the completion
(``" " + correction`` + EOS) is appended as separate ids. Joint tokenisation could merge tokens
across the boundary and train the model on a context it never sees when correcting. The labels
are ``-100`` on every prompt token, so the loss is on the correction and EOS only.

Identity warm-up: the training stream is one ordered sequence — first the Q-A-A rows (correction =
answer) built from ``identity_warmup`` of the data, then the Q-A-C epochs — read by a sequential
sampler. One trainer, one learning-rate schedule and one checkpoint series cover both phases, so
``--resume`` continues at the exact example where an interrupted run stopped, in either phase.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from aligner.errors import ConfigError, DataError
from aligner.progress import model_loading

from .config import CorrectorTrainConfig, TrainConfig

log = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
HISTORY_FILE = "loss_history.json"
CURVE_FILE = "loss_curve.png"
CHECKPOINTS = "checkpoints"
RANKS_DIR = "ranks"


@dataclass
class Example:
    """One tokenised training example and the phase it belongs to (``identity`` or ``qac``)."""

    input_ids: list[int]
    labels: list[int]
    phase: str
    decoder: bool = False  # encoder-decoder: ``labels`` is the whole target, ``input_ids`` the prompt


@dataclass
class TrainResult:
    """What a finished run produced (the saved corrector, the loss history, the phase plan)."""

    output_dir: Path
    phases: list[dict[str, Any]]
    history: list[dict[str, Any]]
    world_size: int
    global_step: int
    final_eval_loss: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- environment

def world_size() -> int:
    """Processes taking part (torchrun / accelerate launch set ``WORLD_SIZE``)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


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


# ----------------------------------------------------------------------------- data

def load_rows(path: str, config: CorrectorTrainConfig, what: str = "data") -> list[Any]:
    """Q-A-C rows via :func:`aligner.data.load` (its validation: file, row and field named)."""
    from aligner import data as adata

    if not Path(path).exists() and ("/" in path and path.startswith((".", "/", "~")) or path.endswith(
            (".json", ".jsonl", ".gz", ".parquet"))):
        raise ConfigError(f"no such file {path!r}.", field=what, fix=f"pass an existing file to --{what.replace('_', '-')}.")
    result = adata.load(path, format=config.data_format, lenient=config.lenient)
    if result.skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.skip_reasons().items())
        log.warning("%s: skipped %d rows (%s)", path, len(result.skipped), reasons)
        print(f"{what}: skipped {len(result.skipped)} malformed rows ({reasons})")
    rows = list(result.rows)
    if not rows:
        raise DataError("no usable rows (all were skipped).", source=str(path),
                        fix="check the file's format (--data-format) or fix the rows listed above.")
    for r in rows:
        if not isinstance(getattr(r, "correction", None), str) or not r.correction.strip():
            raise DataError("the row has no correction.", source=str(path), row=getattr(r, "row", None),
                            field="correction", fix="every training row needs a non-empty 'correction'.")
    return rows


def plan_phases(rows: Sequence[Any], config: CorrectorTrainConfig) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The ordered training stream as ``[(phase, [(question, answer, target), ...]), ...]``.

    Identity warm-up (paper: ~20% of the data): a share of the rows with the *answer* as target
    ("copy what is already fine"), before the Q-A-C epochs. Each epoch is shuffled separately, with
    the seed, so the stream — and therefore resuming in the middle of it — is reproducible.
    """
    rng = random.Random(config.seed)
    phases: list[tuple[str, list[tuple[str, str, str]]]] = []
    if config.identity_warmup > 0:
        k = max(1, round(len(rows) * config.identity_warmup))
        picked = rng.sample(list(rows), k)
        stream: list[tuple[str, str, str]] = []
        for e in range(max(1, math.ceil(config.warmup_epochs))):
            part = [(r.question, r.answer, r.answer) for r in picked]
            random.Random(f"{config.seed}:identity:{e}").shuffle(part)
            if e + 1 > config.warmup_epochs:  # fractional last epoch
                part = part[: max(1, round(len(part) * (config.warmup_epochs - e)))]
            stream += part
        phases.append(("identity", stream))
    stream = []
    epochs = config.epochs if config.epochs > 0 else 1.0
    for e in range(max(1, math.ceil(epochs))):
        part = [(r.question, r.answer, r.correction) for r in rows]
        random.Random(f"{config.seed}:qac:{e}").shuffle(part)
        if e + 1 > epochs:
            part = part[: max(1, round(len(part) * (epochs - e)))]
        stream += part
    phases.append(("qac", stream))
    return phases


def tokenize_example(tokenizer: Any, template: Any, question: str, answer: str, target: str, *,
                     max_length: int, encoder_decoder: bool = False, phase: str = "qac") -> Example | None:
    """Prompt ids (masked) + completion ids (``" " + target`` + EOS, trained on).

    Raises ``ConfigError(field="max_length")`` when the prompt alone leaves no room for a single
    correction token; returns ``None`` (the caller counts it) when only the correction is cut.
    """
    prompt = template.render(question, answer, aspects="harmlessness, helpfulness")
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if encoder_decoder:
        if len(prompt_ids) > max_length:
            raise _too_long(len(prompt_ids), max_length)
        return Example(prompt_ids, target_ids[:max_length], phase, decoder=True)
    if len(prompt_ids) + 1 > max_length:
        raise _too_long(len(prompt_ids), max_length)
    ids = prompt_ids + target_ids
    if len(ids) > max_length:
        return None
    return Example(ids, [-100] * len(prompt_ids) + target_ids, phase)


def _too_long(n: int, max_length: int) -> ConfigError:
    return ConfigError(f"a prompt is {n} tokens long, but max_length is {max_length}: no room is left for the "
                       "correction.", field="max_length",
                       fix=f"raise --max-length above {n + 1} (paper: 2048) or drop over-long rows from the data.")


def _group_by_length(examples: list[Example], batch: int, seed: int) -> list[Example]:
    """Reorder one phase so that consecutive ``batch`` examples have similar lengths (less padding).

    Sort within windows of 64 batches, cut into batches, shuffle the batches: the sequential
    sampler then yields homogeneous batches without mixing phases.
    """
    rng = random.Random(f"{seed}:group")
    out: list[Example] = []
    window = batch * 64
    for start in range(0, len(examples), window):
        chunk = sorted(examples[start:start + window], key=lambda e: len(e.input_ids))
        batches = [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
        rng.shuffle(batches)
        out += [e for b in batches for e in b]
    return out


def build_examples(phases: Sequence[tuple[str, Sequence[tuple[str, str, str]]]], tokenizer: Any, template: Any,
                   config: CorrectorTrainConfig, *, encoder_decoder: bool = False,
                   group_batch: int | None = None) -> tuple[list[Example], int]:
    """Tokenise the stream; returns (examples, number dropped because the correction did not fit)."""
    out: list[Example] = []
    dropped = 0
    cache: dict[tuple[str, str, str], Example | None] = {}
    for phase, items in phases:
        part = []
        for q, a, t in items:
            key = (q, a, t)
            if key not in cache:
                cache[key] = tokenize_example(tokenizer, template, q, a, t, max_length=config.max_length,
                                              encoder_decoder=encoder_decoder, phase=phase)
            ex = cache[key]
            if ex is None:
                dropped += 1
                continue
            part.append(Example(ex.input_ids, ex.labels, phase, ex.decoder))
        if group_batch and group_batch > 1:
            part = _group_by_length(part, group_batch, config.seed)
        out += part
    if not out:
        raise ConfigError("every example is longer than max_length.", field="max_length",
                          fix="raise --max-length (paper: 2048).")
    return out, dropped


def to_dataset(examples: Sequence[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                              "labels": [e.labels for e in examples]})


# ----------------------------------------------------------------------------- model

def _looks_like_path(spec: str) -> bool:
    """Whether a ``--base-model`` that is not on disk was meant as a local path (then it is missing)
    rather than a hub id (then the hub, or its local cache, is asked).

    A hub id is ``name`` or ``org/name``: one slash at most, and a dot is fine (``Qwen/Qwen2.5-0.5B``).
    A path starts with ``.``, ``/`` or ``~``, has a backslash, a drive colon or two slashes, or
    starts with a folder that exists here (``runs/x`` beside a ``runs/`` folder).
    """
    if spec.startswith((".", "/", "~")) or "\\" in spec or ":" in spec or spec.count("/") > 1:
        return True
    return "/" in spec and Path(spec.split("/", 1)[0]).is_dir()


def resolve_base_model(spec: str) -> str:
    """A local directory or a hub id; a path that does not exist is a clear error, not an OSError."""
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{spec!r} has no config.json.", field="base_model",
                              fix="point --base-model at a directory written by save_pretrained, or a hub id.")
        return str(p)
    if _looks_like_path(spec):
        raise ConfigError(f"no such model directory {spec!r}.", field="base_model",
                          fix="pass an existing directory (with config.json) or a hub id such as "
                              "meta-llama/Llama-2-7b-hf.")
    return spec


def load_base(config: TrainConfig) -> tuple[Any, Any, bool]:
    """(model, tokenizer, is_encoder_decoder) from ``base_model``; random init when ``from_scratch``."""
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer)

    spec = resolve_base_model(str(config.base_model))
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
    if config.from_scratch:
        torch.manual_seed(config.seed)
        model = auto.from_config(mconfig, dtype=torch.float32)
    else:
        try:
            with model_loading():
                model = auto.from_pretrained(spec, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load weights from {spec!r}: {str(exc).splitlines()[0]}", field="base_model",
                              fix="pass a directory with model weights, or add --from-scratch to train a "
                                  "randomly initialised model of that config.") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {spec!r} has no EOS token.", field="base_model",
                          fix="use a tokenizer with an eos_token: the corrector must learn where to stop.")
    return model, tokenizer, enc_dec


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


# ----------------------------------------------------------------------------- callbacks

def _make_callbacks(config: TrainConfig, out: Path, boundaries: list[dict[str, Any]], *,
                    loss_label: str = "loss (correction tokens)") -> list[Any]:
    from transformers import TrainerCallback

    class History(TrainerCallback):
        """Collects the logged losses (with their phase), writes them and a loss-curve PNG."""

        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []
            self.started = time.time()

        def phase_at(self, step: int) -> str:
            for b in boundaries:
                if b["first_step"] <= step <= b["last_step"]:
                    return b["phase"]
            return boundaries[-1]["phase"] if boundaries else "qac"

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if not logs or not state.is_world_process_zero:
                return
            rec = {"step": state.global_step, "phase": self.phase_at(state.global_step),
                   "elapsed_s": round(time.time() - self.started, 1)}
            rec.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            self.records.append(rec)
            if "loss" in logs or "eval_loss" in logs:
                write_history(out, self.records)

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            if state.is_world_process_zero:
                write_history(out, self.records)
                plot_loss_curve(out, self.records, boundaries, loss_label=loss_label)

    class RankMarker(TrainerCallback):
        """Each process writes what it did, so a multi-process run can be checked rank by rank."""

        def __init__(self) -> None:
            self.steps = 0

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            self.steps += 1

        def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
            d = out / RANKS_DIR
            d.mkdir(parents=True, exist_ok=True)
            info = {"rank": args.process_index, "world_size": args.world_size, "local_rank": args.local_rank,
                    "parallel_mode": str(args.parallel_mode.value),
                    "steps": self.steps, "global_step": state.global_step, "pid": os.getpid()}
            (d / f"rank-{args.process_index}.json").write_text(json.dumps(info) + "\n")

    class Deadline(TrainerCallback):
        """Stop (with a checkpoint) once ``max_train_minutes`` have passed; ``--resume`` continues.

        With a cosine or linear schedule the learning rate follows whichever runs out first, the
        steps or the minutes, so a run cut by the clock still ends annealed instead of at a high lr.
        """

        def __init__(self) -> None:
            self.t0 = time.time()
            self.step0: int | None = None

        def on_step_end(self, args, state, control, optimizer=None, **kw):  # noqa: ANN001
            if not config.max_train_minutes:
                return
            limit = 60 * config.max_train_minutes
            elapsed = time.time() - self.t0
            if self.step0 is None:
                self.step0 = state.global_step - 1
            if elapsed > limit:
                control.should_save = True
                control.should_training_stop = True
                return
            if optimizer is None or config.lr_scheduler not in ("cosine", "linear") or not state.max_steps:
                return
            by_steps = state.global_step / state.max_steps
            # time share of what is left of the run when this process started (resume-aware)
            start = self.step0 / state.max_steps
            by_time = start + (1 - start) * elapsed / limit
            if by_time <= by_steps:
                return
            warm = config.warmup_ratio if config.warmup_ratio < 1 else config.warmup_ratio / state.max_steps
            p = min(1.0, max(0.0, (by_time - warm) / max(1e-9, 1 - warm)))
            factor = 0.5 * (1 + math.cos(math.pi * p)) if config.lr_scheduler == "cosine" else 1 - p
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * factor

    history = History()
    return [history, RankMarker(), Deadline()]


def write_history(out: Path, records: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (HISTORY_FILE + ".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(out / HISTORY_FILE)


def plot_loss_curve(out: Path, records: Sequence[dict[str, Any]], boundaries: Sequence[dict[str, Any]] = (), *,
                    loss_label: str = "loss (correction tokens)") -> Path | None:
    """Training (and eval) loss against step, phases shaded; matplotlib's Agg backend, no display."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", lw=1.2)
    for b in boundaries:
        if b["phase"] == "identity":
            ax.axvspan(b["first_step"], b["last_step"], color="0.9", label="identity warm-up (Q-A-A)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(loss_label)
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / CURVE_FILE
    fig.savefig(path)
    plt.close(fig)
    return path


def ready_to_train(model: Any, config: Any, enc_dec: bool) -> Any:
    """``model`` with gradient checkpointing and LoRA adapters as ``config`` asks, alike for every
    trainer (checkpointing needs grads on the inputs for a frozen, adapter-trained embedding)."""
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if config.lora or config.qlora:
        model = add_lora(model, config, enc_dec)
    return model


def hold_out(rows: list[Any], config: Any, eval_rows: list[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """The training rows and the eval rows, alike for every trainer: ``eval_rows`` when the user
    gave them (an eval file or split), else a seeded ``eval_fraction`` of ``rows`` (the same split
    on every rank and every resume); ``limit`` then caps the training rows."""
    if eval_rows is None and config.eval_fraction > 0:
        shuffled = list(rows)
        random.Random(f"{config.seed}:split").shuffle(shuffled)
        k = max(1, round(len(rows) * config.eval_fraction))
        eval_rows, rows = shuffled[:k], shuffled[k:]
    if config.limit:
        rows = rows[: config.limit]
    return rows, eval_rows or []


# ----------------------------------------------------------------------------- checkpoints

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
        gradient_checkpointing=config.gradient_checkpointing,
    )


# ----------------------------------------------------------------------------- main entry

def train_corrector(config: CorrectorTrainConfig, *, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run corrector SFT end to end and save a corrector directory that ``Aligner(corrector=...)`` loads.

    Output: ``output_dir/`` holds the merged model, tokenizer, ``aligner_config.json`` (template
    name and training metadata), ``loss_history.json``, ``loss_curve.png`` and ``train_state.json``;
    ``output_dir/checkpoints/`` the resumable checkpoints.
    """
    config.validate()
    if config.qlora:
        check_qlora()
    import torch

    if config.torch_threads:
        torch.set_num_threads(int(config.torch_threads))
    from aligner.templates import get_template

    template = get_template(config.template)
    out = Path(str(config.output_dir)).expanduser()
    ckpt_dir = out / CHECKPOINTS
    resume_from = resume_point(config, ckpt_dir)

    rows = load_rows(str(config.data), config)
    given = load_rows(str(config.eval_data), config, what="eval_data") if config.eval_data else None
    rows, eval_rows = hold_out(rows, config, given)

    model, tokenizer, enc_dec = load_base(config)
    procs = world_size()
    accum = gradient_accumulation(config, procs)
    phases = plan_phases(rows, config)
    examples, dropped = build_examples(phases, tokenizer, template, config, encoder_decoder=enc_dec,
                                       group_batch=config.batch_size if config.group_by_length else None)
    if dropped:
        print(f"max_length: {dropped} examples whose correction does not fit in {config.max_length} tokens were "
              "left out (raise --max-length to keep them).")
    eval_examples: list[Example] = []
    if eval_rows:
        eval_examples, _ = build_examples([("qac", [(r.question, r.answer, r.correction) for r in eval_rows])],
                                          tokenizer, template, config, encoder_decoder=enc_dec)

    # phase boundaries in optimizer steps (examples per step = batch × processes × accumulation)
    per_step = config.batch_size * procs * accum
    boundaries: list[dict[str, Any]] = []
    first = 0
    for name in [p for p, _ in phases]:
        n = sum(1 for e in examples if e.phase == name)
        if not n:
            continue
        start = first
        first += n
        boundaries.append({"phase": name, "examples": n, "first_step": start // per_step + 1,
                           "last_step": max(start // per_step + 1, math.ceil(first / per_step))})

    model = ready_to_train(model, config, enc_dec)

    common = training_arguments(config, ckpt_dir, procs, accum, evaluate=bool(eval_examples))
    common.update(num_train_epochs=1, train_sampling_strategy="sequential", remove_unused_columns=False)
    train_ds = to_dataset(examples)
    eval_ds = to_dataset(eval_examples) if eval_examples else None
    all_callbacks = _make_callbacks(config, out, boundaries) + list(callbacks)
    if enc_dec:
        from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

        args = Seq2SeqTrainingArguments(**common)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                 processing_class=tokenizer, callbacks=all_callbacks,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100))
    else:
        from trl import SFTConfig, SFTTrainer

        # Padding-free without packing does not truncate (trl refuses a max_length then); the
        # examples were already checked against max_length in build_examples.
        sft_max = None if config.padding_free and not config.packing else config.max_length
        args = SFTConfig(**common, max_length=sft_max, packing=config.packing,
                         padding_free=config.padding_free, dataset_num_proc=None, shuffle_dataset=False,
                         completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=all_callbacks)
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        state = {"phases": boundaries, "world_size": procs, "gradient_accumulation": accum,
                 "examples_per_step": per_step, "examples": len(examples), "dropped_too_long": dropped,
                 "config": dataclasses.asdict(config), "status": "training"}
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        plan = ", ".join(f"{b['phase']}: {b['examples']}" for b in boundaries)
        print(f"training {len(examples)} examples ({plan}) "
              f"on {procs} process(es), {per_step} examples/step, lr {config.learning_rate}")

    train_out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval = None
    if eval_ds is not None:
        final_eval = float(trainer.evaluate().get("eval_loss", float("nan")))

    trainer.accelerator.wait_for_everyone()
    meta = {}
    if trainer.is_world_process_zero():
        meta = save_trained(trainer.model, tokenizer, out, config, template, boundaries=boundaries,
                            world_size=procs, global_step=trainer.state.global_step, final_eval_loss=final_eval)
        state = json.loads((out / STATE_FILE).read_text())
        state.update(status="done", global_step=trainer.state.global_step, train_loss=train_out.training_loss,
                     final_eval_loss=final_eval)
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    history = json.loads((out / HISTORY_FILE).read_text()) if (out / HISTORY_FILE).is_file() else []
    return TrainResult(out, boundaries, history, procs, trainer.state.global_step, final_eval, meta)


def save_trained(model: Any, tokenizer: Any, out: Path, config: CorrectorTrainConfig, template: Any, **info: Any) -> dict:
    """Merge LoRA adapters (QLoRA: into a 16-bit reload of the base) and save a plain corrector."""
    from aligner.templates import names
    from aligner.correctors.checkpoint import save_corrector

    model = merge_adapters(model, out, config)
    template_id = template.name if template.name in names() else template.text
    meta = {"trained_by": "aligner train", "base_model": str(config.base_model), "method":
            "qlora" if config.qlora else "lora" if config.lora else "full",
            "identity_warmup": config.identity_warmup, "epochs": config.epochs,
            "learning_rate": config.learning_rate, "max_length": config.max_length, **info,
            **(config.extra_metadata or {})}
    save_corrector(model, tokenizer, out, template=template_id, **meta)
    return {"template": template_id, **meta}


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
