"""Weak-to-strong: fine-tune a (strong) causal LM on an ``aligner export`` with trl, by SFT or DPO.

The paper's third use of an Aligner: its corrections of a model's answers teach that model (SFT on
the corrections, or DPO with the correction preferred over the answer). This is a thin layer over
trl's ``SFTTrainer`` / ``DPOTrainer`` that shares everything else with the corrector trainer:
model loading (hub id or directory, ``--from-scratch``), LoRA/QLoRA and the merge at the end
(:mod:`aligner.train.loading`), the ``TrainingArguments`` (optimiser, schedule, bf16, gloo on CPU),
checkpoints and ``--resume`` (:mod:`aligner.train.arguments`), the loss history / curve, the
per-rank markers and the ``--max-train-minutes`` clock (:mod:`aligner.train.callbacks`) — so it runs
under ``torchrun`` / ``accelerate launch`` the same way.

Data: the export as written (JSONL / JSON / .gz / parquet), a ``--to-dataset`` directory
(``datasets.load_from_disk``; its ``test`` split is the eval set unless ``--eval-data`` is given), or
a hub id. Rows are checked before any model is loaded: a row without the method's fields is a
``DataError`` naming file, row and field. Conversational SFT rows (``{"messages": [...]}``) are
trained as prompt (every turn but the last) + completion (the last, assistant, turn), so the loss is
on the answer only, as with plain ``{"prompt", "completion"}`` rows.

The output directory holds a plain ``save_pretrained`` model + tokenizer (serve it back with
``--upstream hf:DIR``), ``train_state.json`` (config, steps, final eval metrics), the loss history
and curve, and ``checkpoints/``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from aligner.contracts.errors import LINE, RECORD, ConfigError, DataError, json_type
from aligner.runtime.hub import DATA_SUFFIXES, looks_like_path
from aligner.train.arguments import (CHECKPOINTS, HISTORY_FILE, STATE_FILE, gradient_accumulation, resume_point,
                                     training_arguments, world_size)
from aligner.train.config import StrongTrainConfig
from aligner.train.loading import check_qlora, load_base, merge_adapters, ready_to_train
from aligner.train.prepare import hold_out

#: the fields a row needs, per method (SFT also takes ``messages``)
FIELDS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}


@dataclass
class StrongTrainResult:
    """What a finished run produced: the saved model, its steps and the final eval metrics."""

    output_dir: Path
    method: str
    world_size: int
    global_step: int
    train_rows: int
    eval_rows: int
    final_eval: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- data

def _is_saved_dataset(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json"))


def read_export(path: str, method: str, *, split: str = "train", what: str = "data") -> dict[str, list[dict[str, Any]]]:
    """The export's rows per split, checked for ``method`` and normalised to trl's prompt-completion forms.

    A JSONL / parquet file or hub split gives ``{"train": rows}``; a ``save_to_disk`` directory
    every split it holds.
    """
    p = Path(str(path)).expanduser()
    if _is_saved_dataset(p):
        from datasets import Dataset, load_from_disk

        ds = load_from_disk(str(p))
        splits = {"train": ds} if isinstance(ds, Dataset) else dict(ds)
        out = {}
        for name, d in splits.items():
            records = list(enumerate(d.to_list(), start=1))
            if not records:
                raise DataError(f"split '{name}' has no rows.", source=str(p), fix="export rows into it again.")
            out[name] = check_rows(records, method, f"{p}[{name}]", what, unit=RECORD)
        if "train" not in out:
            raise DataError(f"no 'train' split (has: {', '.join(out)}).", source=str(p),
                            fix="pass a directory written by aligner export --to-dataset.")
        return out
    if not p.exists() and looks_like_path(str(path), suffixes=DATA_SUFFIXES):
        raise ConfigError(f"no such file {str(path)!r}.", field=what,
                          fix=f"pass the output of aligner export to --{what.replace('_', '-')}.")
    from aligner.data import read_records
    from aligner.data.io import _BadLine

    source, records = read_records(str(path), split=split)
    rows = []
    for rownum, rec in records:
        if isinstance(rec, _BadLine):
            raise DataError(rec.reason, source=source, row=rownum, unit=records.unit, fix="one JSON object per line.")
        rows.append((rownum, rec))
    if not rows:
        raise DataError("no rows found.", source=source, fix="point at an aligner export with rows.")
    return {"train": check_rows(rows, method, source, what, unit=records.unit)}


def _messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m and "content" in m
                                                           for m in value)


def check_rows(records: Sequence[tuple[int, Any]], method: str, source: str, what: str = "data",
               unit: str = LINE) -> list[dict[str, Any]]:
    """Validate rows for ``method`` (every field present, text or messages, one style throughout);
    ``unit`` says what the row numbers count (see :class:`aligner.data.io.Records`)."""
    need = FIELDS[method]
    other = "dpo" if method == "sft" else "sft"
    out: list[dict[str, Any]] = []
    style: str | None = None
    for rownum, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"expected a JSON object, got {json_type(rec)}.", source=source, row=rownum, unit=unit,
                            fix="pass the output of aligner export.")
        if method == "sft" and "messages" in rec and "prompt" not in rec:
            msgs = rec["messages"]
            if not _messages(msgs) or len(msgs) < 2 or msgs[-1].get("role") != "assistant":
                raise DataError("expected a list of {role, content} messages ending with the assistant's turn.",
                                source=source, row=rownum, unit=unit, field="messages",
                                fix="write [{'role': 'user', ...}, {'role': 'assistant', ...}] (aligner export --chat).")
            row = {"prompt": msgs[:-1], "completion": msgs[-1:]}
        else:
            for key in need:
                if key not in rec:
                    hint = (f" This looks like a {other.upper()} export: pass --method {other}, or export "
                            f"again with --format {method}." if all(k in rec for k in FIELDS[other]) else "")
                    raise DataError(f"missing key (row has: {', '.join(sorted(map(str, rec))) or 'none'}).{hint}",
                                    source=source, row=rownum, unit=unit, field=key,
                                    fix=f"--method {method} reads rows with {', '.join(need)} "
                                        f"(aligner export --format {method}).")
            row = {k: rec[k] for k in need}
        kinds = set()
        for key, value in row.items():
            if isinstance(value, str):
                if not value.strip():
                    raise DataError("is empty.", source=source, row=rownum, unit=unit, field=key, fix=f"give '{key}' some text.")
                kinds.add("text")
            elif _messages(value):
                kinds.add("chat")
            else:
                raise DataError(f"expected text or a list of {{role, content}} messages, got {json_type(value)}.",
                                source=source, row=rownum, unit=unit, field=key, fix="pass the output of aligner export.")
        if len(kinds) > 1:
            raise DataError("mixes plain text and chat messages.", source=source, row=rownum, unit=unit, field=need[0],
                            fix="export all rows the same way (with or without --chat).")
        kind = kinds.pop()
        if style is None:
            style = kind
        elif kind != style:
            raise DataError(f"is {'conversational' if kind == 'chat' else 'plain text'} but earlier rows are not.",
                            source=source, row=rownum, unit=unit, field=need[0],
                            fix="export all rows the same way (with or without --chat).")
        out.append(row)
    return out


def is_chat(rows: Sequence[dict[str, Any]]) -> bool:
    return bool(rows) and isinstance(rows[0]["prompt"], list)


# ----------------------------------------------------------------------------- measuring

def _token_ids(tokenizer: Any, prompt: Any, completion: Any) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) tokenised as trl does: prompt alone vs prompt + completion (+ EOS for
    plain text), the completion starting where the two diverge."""
    if isinstance(prompt, list):
        p = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    else:
        p = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    n = 0
    for a, b in zip(p, full):
        if a != b:
            break
        n += 1
    return full[:n], full[n:]


def completion_logprobs(model: Any, tokenizer: Any, prompt: Any, completions: Sequence[Any]) -> list[tuple[float, int]]:
    """(sum of log-probs, tokens) of each completion after ``prompt`` under ``model`` (no gradient)."""
    import torch

    out = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for completion in completions:
            p, c = _token_ids(tokenizer, prompt, completion)
            ids = torch.tensor([p + c], device=device)
            logits = model(input_ids=ids).logits[0, len(p) - 1:-1].float()
            logps = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(c, device=device)[:, None])
            out.append((float(logps.sum()), len(c)))
    return out


def _model(model: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from a directory / hub id, or a loaded model as it is."""
    if isinstance(model, (str, Path)):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return (AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32).eval(),
                AutoTokenizer.from_pretrained(str(model)))
    return model, None


def completion_loss(model: Any, rows: Sequence[dict[str, Any]], tokenizer: Any = None) -> float:
    """Mean per-token negative log-likelihood of the completions (SFT rows): the held-out SFT loss."""
    model, tok = _model(model)
    tokenizer = tokenizer or tok
    model.eval()
    total = tokens = 0.0
    for r in rows:
        target = r["completion"] if "completion" in r else r["chosen"]
        (lp, n), = completion_logprobs(model, tokenizer, r["prompt"], [target])
        total -= lp
        tokens += n
    return total / max(1.0, tokens)


def preference_accuracy(model: Any, rows: Sequence[dict[str, Any]], tokenizer: Any = None,
                        reference: Any = None) -> dict[str, float]:
    """How often ``model`` prefers the chosen (correction) over the rejected (answer) on DPO rows.

    * ``accuracy``: share of pairs with log p(chosen) > log p(rejected) under the model alone. It
      favours the shorter text (a redaction is shorter than the contact it hides), so it can be
      high before any training;
    * ``per_token_accuracy``: the same with log-probs averaged per token, which does not;
    * ``reward_accuracy`` (with a ``reference``): share of pairs where the DPO implicit reward of the
      chosen beats the rejected's — the model raised the chosen's log-prob relative to the reference
      more than the rejected's. What trl logs as ``rewards/accuracies``; 0 when model == reference
      (every margin is exactly 0).
    """
    model, tok = _model(model)
    tokenizer = tokenizer or tok
    model.eval()
    ref = None
    if reference is not None:
        ref, _ = _model(reference)
        ref.eval()
    wins = token_wins = reward_wins = 0
    margins = []
    for r in rows:
        (c, nc), (j, nj) = completion_logprobs(model, tokenizer, r["prompt"], [r["chosen"], r["rejected"]])
        wins += c > j
        token_wins += c / max(1, nc) > j / max(1, nj)
        margins.append(c - j)
        if ref is not None:
            (rc, _), (rj, _) = completion_logprobs(ref, tokenizer, r["prompt"], [r["chosen"], r["rejected"]])
            reward_wins += (c - rc) > (j - rj)
    n = max(1, len(rows))
    out = {"accuracy": wins / n, "per_token_accuracy": token_wins / n, "mean_margin": sum(margins) / n,
           "pairs": float(len(rows))}
    if ref is not None:
        out["reward_accuracy"] = reward_wins / n
    return out


# ----------------------------------------------------------------------------- main entry

def train_strong(config: StrongTrainConfig, *, callbacks: Sequence[Any] = ()) -> StrongTrainResult:
    """Fine-tune ``base_model`` on the export by SFT or DPO and save a plain model to ``output_dir``."""
    config.validate()
    if config.qlora:
        check_qlora()
    import torch

    if config.torch_threads:
        torch.set_num_threads(int(config.torch_threads))
    method = config.method
    out = Path(str(config.output_dir)).expanduser()
    ckpt_dir = out / CHECKPOINTS
    resume_from = resume_point(config, ckpt_dir)

    splits = read_export(str(config.data), method)
    given = (read_export(str(config.eval_data), method, what="eval_data")["train"] if config.eval_data
             else splits.get("test"))
    rows, eval_rows = hold_out(splits["train"], config, given)
    if eval_rows and is_chat(eval_rows) != is_chat(rows):
        raise DataError("the eval rows and the training rows are exported differently (chat vs plain text).",
                        source=str(config.eval_data or config.data), field="eval_data",
                        fix="export both with the same --chat setting.")

    model, tokenizer, enc_dec = load_base(config)
    if enc_dec:
        raise ConfigError(f"{config.base_model!r} is an encoder-decoder model; trl's SFT and DPO trainers train "
                          "causal LMs.", field="base_model", fix="pass a decoder-only (causal) LM.")
    if is_chat(rows) and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the data is conversational (exported with --chat) but the tokenizer of "
                          f"{config.base_model!r} has no chat template.", field="data",
                          fix="export without --chat (plain 'User: …\\nAssistant:' prompts) for a base model, or "
                              "use a chat model.")
    procs = world_size()
    accum = gradient_accumulation(config, procs)
    reference = None
    if method == "dpo" and not (config.lora or config.qlora or config.precompute_ref):
        # the frozen reference is the policy's starting point: a copy, so a --from-scratch init or a hub
        # id needs no second load (trl would reload the base by name)
        reference = copy.deepcopy(model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    model = ready_to_train(model, config, False)

    from datasets import Dataset

    train_ds = Dataset.from_list(rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    common = training_arguments(config, ckpt_dir, procs, accum, evaluate=eval_ds is not None)
    common.update(num_train_epochs=config.epochs)
    per_step = config.batch_size * procs * accum
    boundaries = [{"phase": method, "examples": len(rows), "first_step": 1, "last_step": 10 ** 9}]
    label = "loss (completion tokens)" if method == "sft" else "DPO loss"
    from aligner.train.callbacks import make_callbacks

    all_callbacks = make_callbacks(config, out, boundaries, loss_label=label) + list(callbacks)
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        if config.group_by_length:
            common["train_sampling_strategy"] = "group_by_length"
        sft_max = None if config.padding_free and not config.packing else config.max_length
        args = SFTConfig(**common, max_length=sft_max, packing=config.packing, padding_free=config.padding_free,
                         dataset_num_proc=None, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=all_callbacks)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, max_length=config.max_length, beta=config.dpo_beta, loss_type=[config.dpo_loss],
                         precompute_ref_log_probs=config.precompute_ref, dataset_num_proc=None)
        trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train_ds,
                             eval_dataset=eval_ds, processing_class=tokenizer, callbacks=all_callbacks)
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        state = {"method": method, "world_size": procs, "gradient_accumulation": accum, "examples_per_step": per_step,
                 "train_rows": len(rows), "eval_rows": len(eval_rows), "chat": is_chat(rows),
                 "config": dataclasses.asdict(config), "status": "training"}
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        print(f"{method.upper()} on {len(rows)} rows ({len(eval_rows)} held out) on {procs} process(es), "
              f"{per_step} examples/step, lr {config.learning_rate}")

    train_out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_eval: dict[str, float] = {}
    if eval_ds is not None:
        final_eval = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        from aligner.correctors.checkpoint import save_corrector

        # a plain model + tokenizer (no aligner_config.json: this is an upstream, not a corrector)
        save_corrector(merge_adapters(trainer.model, out, config), tokenizer, out)
        state = json.loads((out / STATE_FILE).read_text())
        state.update(status="done", global_step=trainer.state.global_step, train_loss=train_out.training_loss,
                     final_eval=final_eval, trained_by="aligner train-strong",
                     **(config.extra_metadata or {}))
        (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    history = json.loads((out / HISTORY_FILE).read_text()) if (out / HISTORY_FILE).is_file() else []
    return StrongTrainResult(out, method, procs, trainer.state.global_step, len(rows), len(eval_rows),
                             final_eval, history)


EXAMPLES = """examples:
  aligner export --format sft corrections.jsonl sft.jsonl --test-size 0.05
  aligner train-strong --method sft --data sft.jsonl --eval-data sft.test.jsonl --base-model meta-llama/Llama-2-70b-hf --output-dir runs/strong-sft --qlora
  aligner export --format dpo corrections.jsonl dpo.jsonl --min-edit 2
  aligner train-strong --method dpo --data dpo.jsonl --base-model ./my-model --output-dir runs/strong-dpo --lora --dpo-beta 0.1
  torchrun --nproc_per_node 8 -m aligner train-strong --config strong.yaml
  accelerate launch --config_file train/configs/accelerate_deepspeed_zero3.yaml -m aligner train-strong --config strong.yaml
"""


def run_train_strong(args: Any) -> int:
    """``aligner train-strong``: build the config (YAML, then flags), train, say where the model went."""
    import os

    from aligner.contracts.config_parser import build_config

    cfg = build_config(StrongTrainConfig, args, getattr(args, "config", None))
    result = train_strong(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.final_eval.items()
                            if k in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"))
        print(f"{result.method.upper()} model saved to {result.output_dir} ({result.global_step} optimizer steps on "
              f"{result.world_size} process(es){', ' + metrics if metrics else ''})\n"
              f"use it as the upstream: aligner correct \"QUESTION\" --upstream hf:{result.output_dir}")
    return 0
