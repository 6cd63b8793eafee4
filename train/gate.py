"""``aligner train-gate``: train the ``classifier`` gate on PKU-SafeRLHF-format rows.

Every response of every row is one example: the gate reads (question, answer) in its text format and
learns three things at once through one head of ``1 + 19 + 4`` logits (see
:mod:`aligner.gates.classifier`): unsafe or not, which of the 19 harm categories, which severity.
Any transformers encoder or causal base works (``AutoModelForSequenceClassification`` adds the
head); ``--lora`` trains adapters and merges them at the end; ``--from-scratch`` starts from the
base's config (the tiny demo gate). It is the trainer machinery ``aligner train`` runs on —
``TrainingArguments``, the loss history and curve, ``--resume``, ``--max-train-minutes``,
``torchrun`` / ``accelerate launch`` — with a loss of its own.

After training, the held-out split (whole rows, both responses together, so no question is on both
sides) is scored: per-category F1, severity accuracy, and the unsafe recall, precision and flag
rate at the calibrated threshold. Calibration picks, for "unsafe" and for each minimum severity,
the highest threshold that still flags ``--target-recall`` of the held-out answers at or above it;
the thresholds go into the gate's ``config.json`` (``aligner_gate``), the measures into
``gate_report.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from aligner.data.pku_saferlhf import HARM_CATEGORIES, SEVERITY_LEVELS, LabelledResponse
from aligner.contracts.errors import ConfigError, DataError
from aligner.train.arguments import (HISTORY_FILE, STATE_FILE, gradient_accumulation, start_run,
                                     training_arguments, world_size)
from aligner.train.config import GateTrainConfig

REPORT_FILE = "gate_report.json"
LOSS_LABEL = "loss (unsafe + categories + severity)"


@dataclass
class GateTrainResult:
    """What a finished run produced: the saved gate, its held-out report, the loss history."""

    output_dir: Path
    report: dict[str, Any]
    history: list[dict[str, Any]]
    global_step: int
    world_size: int
    initial_eval_loss: float | None = None
    final_eval_loss: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------
def load_responses(path: str, config: GateTrainConfig, what: str = "data") -> list[list[LabelledResponse]]:
    """The labelled responses of a PKU-SafeRLHF file, grouped by row (a row's two responses stay
    together when the held-out split is drawn)."""
    from aligner.data.pku_saferlhf import load_labelled
    from aligner.runtime.hub import DATA_SUFFIXES, looks_like_path

    if not Path(path).exists() and looks_like_path(path, suffixes=DATA_SUFFIXES):
        raise ConfigError(f"no such file {path!r}.", field=what, fix=f"pass an existing file to --{what.replace('_', '-')}.")
    loaded = load_labelled(path, lenient=config.lenient)
    if loaded.skipped:
        print(f"{what}: skipped {len(loaded.skipped)} rows without usable safety labels "
              f"(first: row {loaded.skipped[0].row}, {loaded.skipped[0].field}: {loaded.skipped[0].reason})")
    groups: dict[Any, list[LabelledResponse]] = {}
    for r in loaded.responses:
        groups.setdefault((r.source, r.row), []).append(r)
    return list(groups.values())


def encode(responses: Sequence[LabelledResponse], tokenizer: Any, config: GateTrainConfig,
           categories: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """Tokenised examples (``labels``: unsafe then each category; ``severity``: 0-3) and how many
    texts were cut at ``max_length``."""
    texts = [config.text_format.replace("{question}", r.question).replace("{answer}", r.answer) for r in responses]
    full = tokenizer(texts, truncation=False)["input_ids"]
    cut = sum(1 for ids in full if len(ids) > config.max_length)
    enc = tokenizer(texts, truncation=True, max_length=config.max_length)
    keys = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
    out = []
    for i, r in enumerate(responses):
        ex = {k: enc[k][i] for k in keys}
        ex["labels"] = [0.0 if r.safe else 1.0] + [1.0 if c in r.categories else 0.0 for c in categories]
        ex["severity"] = int(r.severity)
        out.append(ex)
    return out, cut


class Collator:
    """Pads a batch of tokenised examples and stacks their labels."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        text = [{k: v for k, v in f.items() if k not in ("labels", "severity")} for f in features]
        batch = dict(self.tokenizer.pad(text, return_tensors="pt"))
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        batch["severity"] = torch.tensor([f["severity"] for f in features], dtype=torch.long)
        return batch


# -- the model -----------------------------------------------------------------------------------
def load_gate_base(config: GateTrainConfig, categories: Sequence[str]) -> tuple[Any, Any]:
    """(model with a ``1 + C + 4`` head, tokenizer) from ``base_model``; a random init of its config
    with ``from_scratch``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from aligner.gates.classifier import num_labels
    from aligner.train.loading import model_of, resolve_base_model

    spec = resolve_base_model(str(config.base_model))
    labels = ["unsafe", *categories, *(f"severity:{s}" for s in SEVERITY_LEVELS)]
    try:
        mconfig = AutoConfig.from_pretrained(spec, num_labels=num_labels(len(categories)),
                                             id2label=dict(enumerate(labels)),
                                             label2id={name: i for i, name in enumerate(labels)})
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {str(exc).splitlines()[0]}", field="base_model",
                          fix="check the hub id (and your network / HF_HUB_OFFLINE), or pass a local directory.") from exc
    if getattr(mconfig, "is_encoder_decoder", False):
        raise ConfigError(f"{spec!r} is an encoder-decoder model.", field="base_model",
                          fix="pass an encoder (BERT, DeBERTa, …) or a causal LM (Llama, Qwen, …).")
    mconfig.problem_type = None  # the loss is ours (gate_loss), not transformers' per-problem one
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ConfigError(f"the tokenizer of {spec!r} has no pad, EOS or UNK token to pad batches with.",
                          field="base_model", fix="use a tokenizer with a pad token.")
    mconfig.pad_token_id = tokenizer.pad_token_id
    model = model_of(AutoModelForSequenceClassification, spec, mconfig, from_scratch=config.from_scratch,
                     seed=config.seed, config=mconfig, dtype=torch.float32, ignore_mismatched_sizes=True)
    return model, tokenizer


def add_lora(model: Any, config: GateTrainConfig) -> Any:
    """LoRA adapters on the base; the classification head is trained in full (peft keeps it as a
    module to save for the sequence-classification task)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets: Any = config.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    lcfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type=TaskType.SEQ_CLS)
    return get_peft_model(model, lcfg)


def make_trainer_class() -> Any:
    """A transformers ``Trainer`` whose loss is :func:`aligner.gates.classifier.gate_loss` (built on
    call, so importing this module does not import transformers)."""
    from transformers import Trainer

    from aligner.gates.classifier import gate_loss, model_inputs

    class GateTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            labels, severity = inputs.pop("labels"), inputs.pop("severity")
            outputs = model(**model_inputs(model, inputs))
            loss = gate_loss(outputs.logits, labels, severity, labels.shape[1] - 1)
            return (loss, outputs) if return_outputs else loss

    return GateTrainer


# -- held-out measures and calibration -----------------------------------------------------------
def predict(model: Any, examples: list[dict[str, Any]], tokenizer: Any, batch_size: int,
            n_categories: int) -> tuple[list[float], list[list[float]], list[list[float]]]:
    """P(unsafe), P(category), P(severity level) of each held-out example (no gradients)."""
    import torch

    from aligner.gates.classifier import model_inputs, probabilities

    model.eval()
    device = next(model.parameters()).device
    collate = Collator(tokenizer)
    unsafe: list[float] = []
    cats: list[list[float]] = []
    sev: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size])
            batch.pop("labels"), batch.pop("severity")
            inputs = model_inputs(model, {k: v.to(device) for k, v in batch.items()})
            u, c, s = probabilities(model(**inputs).logits, n_categories)
            unsafe += u
            cats += c
            sev += s
    return unsafe, cats, sev


def measure(responses: Sequence[LabelledResponse], unsafe: list[float], cats: list[list[float]],
            sev: list[list[float]], config: GateTrainConfig, categories: Sequence[str]) -> dict[str, Any]:
    """Per-category F1, severity accuracy, and the thresholds calibrated to the target recall with
    the unsafe recall, precision and flag rate they give on the held-out split."""
    from aligner.gates.classifier import at_least
    from aligner.gates.metrics import accuracy, calibrate, confusion, per_category_f1

    labels_unsafe = [not r.safe for r in responses]
    predicted_cats = [[c for c, p in zip(categories, ps) if p >= config.category_threshold] for ps in cats]
    predicted_sev = [max(range(len(ps)), key=lambda i: ps[i]) for ps in sev]
    levels = [at_least(ps) for ps in sev]
    thresholds: dict[str, float] = {}
    at_threshold: dict[str, Any] = {}
    uncalibrated = []
    for level in ("unsafe", *SEVERITY_LEVELS[1:]):
        if level == "unsafe":
            scores, positive = unsafe, labels_unsafe
        else:
            need = SEVERITY_LEVELS.index(level)
            scores, positive = [lv[level] for lv in levels], [r.severity >= need for r in responses]
        t = calibrate(scores, positive, config.target_recall)
        if t is None:
            uncalibrated.append(level)
            continue
        thresholds[level] = t
        at_threshold[level] = {"threshold": t, **confusion([s >= t for s in scores], positive)}
    headline = config.min_severity or "unsafe"
    return {
        "held_out_responses": len(responses), "unsafe": sum(labels_unsafe),
        "target_recall": config.target_recall, "min_severity": config.min_severity,
        "thresholds": thresholds, "uncalibrated": uncalibrated,
        "calibrated": at_threshold, "headline": at_threshold.get(headline),
        "at_0.5": confusion([u >= 0.5 for u in unsafe], labels_unsafe),
        "severity_accuracy": accuracy(predicted_sev, [r.severity for r in responses]),
        "per_category": per_category_f1(predicted_cats, [r.categories for r in responses], categories),
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """What ``aligner train-gate`` prints about the held-out split."""
    lines = []
    head = report.get("headline")
    level = report["min_severity"] or "unsafe"
    if head:
        lines.append(f"held-out: {report['held_out_responses']} answers ({report['unsafe']} unsafe); threshold "
                     f"{head['threshold']:.4f} for {level} flags {100 * head['flag_rate']:.1f}% of them, "
                     f"recall {100 * head['recall']:.1f}% (target {100 * report['target_recall']:.0f}%), "
                     f"precision {100 * (head['precision'] or 0):.1f}%, {head['misses']} missed, "
                     f"{head['false_flags']} false flags")
    else:
        lines.append(f"held-out: no {level} answers, so no threshold could be calibrated (0.5 is used)")
    sev = report["severity_accuracy"]
    macro = report["per_category"]["macro_f1"]
    lines.append(f"severity accuracy {100 * sev:.1f}%; category F1 (macro over {macro['categories']} categories "
                 f"present) " + (f"{macro['f1']:.3f}" if macro["f1"] is not None else "n/a"))
    for c, v in report["per_category"].items():
        if c != "macro_f1" and v["support"]:
            lines.append(f"  {c}: F1 {v['f1']:.3f} (support {v['support']})")
    return lines


# -- the run -------------------------------------------------------------------------------------
def train_gate(config: GateTrainConfig, *, callbacks: Sequence[Any] = ()) -> GateTrainResult:
    """Train, measure and calibrate a classifier gate; save it where ``Aligner(gate=...)`` loads it."""
    config.validate()
    out, ckpt_dir, resume_from = start_run(config)
    import torch

    from aligner.train.prepare import hold_out

    categories = list(HARM_CATEGORIES)

    groups = load_responses(str(config.data), config)
    given = load_responses(str(config.eval_data), config, what="eval_data") if config.eval_data else None
    train_groups, eval_groups = hold_out(groups, config, given)
    train_rows = [r for g in train_groups for r in g]
    eval_rows = [r for g in eval_groups for r in g]
    if not train_rows:
        raise DataError("no training rows left after the held-out split.", source=str(config.data),
                        fix="add rows, or lower --eval-fraction.")
    if not eval_rows:
        raise DataError("the held-out split is empty.", source=str(config.eval_data or config.data),
                        fix="pass more rows, a larger --eval-fraction, or --eval-data.")

    model, tokenizer = load_gate_base(config, categories)
    procs = world_size()
    accum = gradient_accumulation(config, procs)
    examples, cut = encode(train_rows, tokenizer, config, categories)
    eval_examples, eval_cut = encode(eval_rows, tokenizer, config, categories)
    if cut or eval_cut:
        print(f"max_length: {cut + eval_cut} texts longer than {config.max_length} tokens were cut "
              "(raise --max-length to keep them whole).")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if config.lora:
        model = add_lora(model, config)

    from transformers import TrainingArguments

    from aligner.train.callbacks import make_callbacks

    per_step = config.batch_size * procs * accum
    steps = config.max_steps if config.max_steps > 0 else math.ceil(len(examples) / per_step * config.epochs)
    boundaries = [{"phase": "gate", "first_step": 1, "last_step": steps, "examples": len(examples)}]
    common = training_arguments(config, ckpt_dir, procs, accum, evaluate=True)
    args = TrainingArguments(**common, num_train_epochs=config.epochs, remove_unused_columns=False,
                             label_names=["labels", "severity"])
    trainer = make_trainer_class()(model=model, args=args, train_dataset=examples, eval_dataset=eval_examples,
                                   data_collator=Collator(tokenizer), processing_class=tokenizer,
                                   callbacks=make_callbacks(config, out, boundaries, loss_label=LOSS_LABEL)
                                   + list(callbacks))
    initial_eval = None
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        state = {"examples": len(examples), "held_out": len(eval_examples), "world_size": procs,
                 "gradient_accumulation": accum, "examples_per_step": per_step, "truncated": cut + eval_cut,
                 "config": dataclasses.asdict(config), "status": "training"}
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        unsafe = sum(1 for r in train_rows if not r.safe)
        print(f"training a gate on {len(examples)} answers ({unsafe} unsafe), {len(eval_examples)} held out, "
              f"on {procs} process(es), {per_step} examples/step, lr {config.learning_rate}")
    if resume_from is None:
        initial_eval = float(trainer.evaluate().get("eval_loss", float("nan")))
    train_out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval = float(trainer.evaluate().get("eval_loss", float("nan")))
    trainer.accelerator.wait_for_everyone()

    report: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    if trainer.is_world_process_zero():
        model = trainer.model
        if config.lora:
            model = model.merge_and_unload()
        if config.save_dtype:
            model = model.to(getattr(torch, config.save_dtype))
        probs = predict(model, eval_examples, tokenizer, max(config.batch_size, 16), len(categories))
        report = measure(eval_rows, *probs, config, categories)
        report.update(initial_eval_loss=initial_eval, final_eval_loss=final_eval,
                      train_loss=train_out.training_loss, global_step=trainer.state.global_step,
                      train_answers=len(examples), truncated=cut + eval_cut)
        thresholds = report["thresholds"]
        save_gate(model, tokenizer, out, config, categories, thresholds)
        (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        state = json.loads((out / STATE_FILE).read_text())
        state.update(status="done", global_step=trainer.state.global_step, final_eval_loss=final_eval)
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        for line in report_lines(report):
            print(line)
    trainer.accelerator.wait_for_everyone()
    history = json.loads((out / HISTORY_FILE).read_text()) if (out / HISTORY_FILE).is_file() else []
    return GateTrainResult(out, report, history, trainer.state.global_step, procs, initial_eval, final_eval,
                           thresholds)


def save_gate(model: Any, tokenizer: Any, out: Path, config: GateTrainConfig, categories: Sequence[str],
              thresholds: dict[str, float]) -> None:
    """The model and tokenizer, with what the gate was trained and calibrated with in its config."""
    from aligner.gates.classifier import CONFIG_KEY

    info = {"kind": "classifier", "categories": list(categories), "severities": list(SEVERITY_LEVELS),
            "thresholds": thresholds, "target_recall": config.target_recall, "min_severity": config.min_severity,
            "category_threshold": config.category_threshold, "text_format": config.text_format,
            "max_length": config.max_length, "trained_by": "aligner train-gate", "base_model": str(config.base_model),
            "method": "lora" if config.lora else ("from-scratch" if config.from_scratch else "full"),
            **(config.extra_metadata or {})}
    setattr(model.config, CONFIG_KEY, info)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def recalibrate(gate_dir: "str | Path", data: str, target_recall: float, *, batch_size: int = 32) -> dict[str, Any]:
    """Calibrate a trained gate's thresholds again, on labelled PKU-SafeRLHF rows ``data`` (its
    held-out split or any other), to ``target_recall``: no training, the model is unchanged. Writes
    the thresholds into its config and returns the measures (as in ``gate_report.json``)."""
    from aligner.data.pku_saferlhf import load_labelled
    from aligner.gates.classifier import CONFIG_KEY, ClassifierGate, probabilities

    gate = ClassifierGate(str(gate_dir))
    rows = load_labelled(data).responses
    import torch

    logits = torch.cat([gate.logits([(r.question, r.answer) for r in rows[i:i + batch_size]])
                        for i in range(0, len(rows), batch_size)])
    cfg = GateTrainConfig(data=data, base_model=str(gate_dir), output_dir=str(gate_dir), target_recall=target_recall,
                          min_severity=gate.config.get("min_severity"),
                          category_threshold=gate.category_threshold, text_format=gate.text_format)
    cfg.validate()
    report = measure(rows, *probabilities(logits, len(gate.categories)), cfg, gate.categories)
    path = Path(gate_dir) / "config.json"
    config = json.loads(path.read_text())
    config[CONFIG_KEY].update(thresholds=report["thresholds"], target_recall=target_recall)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return report
