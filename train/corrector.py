"""Corrector SFT, the entry point: train a model to turn (question, answer) into a correction.

The paper's recipe (the defaults of :class:`~aligner.train.config.CorrectorTrainConfig`: 3 epochs,
lr 2e-5, cosine schedule, effective batch 32, loss on the correction only, optional identity warm-up)
with trl's ``SFTTrainer`` for causal LMs and transformers' ``Seq2SeqTrainer`` for encoder-decoder
bases (trl's SFTTrainer only builds decoder-only batches).

The pieces, the way trl keeps them apart: :mod:`aligner.train.prepare` (rows → tokenised examples,
the identity warm-up phase), :mod:`aligner.train.loading` (base model, LoRA/QLoRA, the merge at the
end), :mod:`aligner.train.arguments` (``TrainingArguments``, processes, ``--resume``) and
:mod:`aligner.train.callbacks` (loss history and curve, rank markers, ``--max-train-minutes``).

One trainer, one learning-rate schedule and one checkpoint series cover both phases of the stream
(identity warm-up, then Q-A-C), so ``--resume`` continues at the exact example where an interrupted
run stopped, in either phase.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from aligner.train.arguments import (HISTORY_FILE, STATE_FILE, gradient_accumulation, start_run,
                                     training_arguments, world_size)
from aligner.train.config import CorrectorTrainConfig
from aligner.train.loading import check_qlora, load_base, merge_adapters, ready_to_train
from aligner.train.prepare import (Example, build_examples, hold_out, load_rows, plan_phases, step_boundaries,
                                   to_dataset)


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


def train_corrector(config: CorrectorTrainConfig, *, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run corrector SFT end to end and save a corrector directory that ``Aligner(corrector=...)`` loads.

    Output: ``output_dir/`` holds the merged model, tokenizer, ``aligner_config.json`` (template
    name and training metadata), ``loss_history.json``, ``loss_curve.png`` and ``train_state.json``;
    ``output_dir/checkpoints/`` the resumable checkpoints. trl's bars over the already tokenised
    examples are hidden (see :func:`aligner.runtime.progress.data_preparation`); the training bar is not.
    """
    from aligner.runtime.progress import data_preparation

    with data_preparation():
        return _train_corrector(config, callbacks)


def _train_corrector(config: CorrectorTrainConfig, callbacks: Sequence[Any]) -> TrainResult:
    config.validate()
    if config.qlora:
        check_qlora()
    out, ckpt_dir, resume_from = start_run(config)
    from aligner.contracts.templates import get_template

    template = get_template(config.template)

    rows = load_rows(str(config.data), config)
    given = load_rows(str(config.eval_data), config, what="eval_data") if config.eval_data else None
    rows, eval_rows = hold_out(rows, config, given)
    from aligner.contracts.conversation import trained_format

    question_format = trained_format(config.question_format, config.data_format, (r.question for r in rows))

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

    per_step = config.batch_size * procs * accum
    boundaries = step_boundaries(phases, examples, per_step)

    model = ready_to_train(model, config, enc_dec)

    common = training_arguments(config, ckpt_dir, procs, accum, evaluate=bool(eval_examples))
    common.update(num_train_epochs=1, train_sampling_strategy="sequential", remove_unused_columns=False)
    train_ds = to_dataset(examples)
    eval_ds = to_dataset(eval_examples) if eval_examples else None
    from aligner.train.callbacks import make_callbacks

    all_callbacks = make_callbacks(config, out, boundaries) + list(callbacks)
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
        meta = save_trained(trainer.model, tokenizer, out, config, template, question_format=question_format,
                            boundaries=boundaries,
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
    from aligner.contracts.templates import names
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
