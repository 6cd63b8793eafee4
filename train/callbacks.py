"""The callbacks every trainer here adds to the transformers/trl trainer it runs.

* :class:`History` — the logged losses (with the phase of each step) as ``loss_history.json`` and a
  ``loss_curve.png``, written as training goes, so an interrupted run still shows its curve.
* :class:`RankMarker` — each process writes what it did (``ranks/rank-N.json``), so a multi-process
  run can be checked rank by rank.
* :class:`Deadline` — ``--max-train-minutes``: stop with a checkpoint when the time is up.

Importing this module imports transformers; the trainers import it only when they train.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

from transformers import TrainerCallback

from aligner.train.arguments import CURVE_FILE, HISTORY_FILE, RANKS_DIR
from aligner.train.config import TrainConfig


class History(TrainerCallback):
    """Collects the logged losses (with their phase), writes them and a loss-curve PNG."""

    def __init__(self, out: Path, boundaries: list[dict[str, Any]], *,
                 loss_label: str = "loss (correction tokens)") -> None:
        self.out, self.boundaries, self.loss_label = out, boundaries, loss_label
        self.records: list[dict[str, Any]] = []
        self.started = time.time()

    def phase_at(self, step: int) -> str:
        for b in self.boundaries:
            if b["first_step"] <= step <= b["last_step"]:
                return b["phase"]
        return self.boundaries[-1]["phase"] if self.boundaries else "qac"

    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
        """A resumed run keeps the history before its checkpoint (``--resume`` used to start the file
        afresh, so the shipped demo corrector's curve began at its last resume): the records this
        folder already holds up to the checkpoint's step, else the trainer state's own log."""
        if state.global_step <= 0 or self.records:
            return
        path = self.out / HISTORY_FILE
        earlier = json.loads(path.read_text()) if path.is_file() else []
        self.records = [r for r in earlier if r.get("step", 0) <= state.global_step]
        if not self.records:
            self.records = [{"step": r["step"], "phase": self.phase_at(r["step"]),
                             **{k: v for k, v in r.items() if k != "step" and isinstance(v, (int, float))}}
                            for r in state.log_history if "step" in r]

    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        if not logs or not state.is_world_process_zero:
            return
        rec = {"step": state.global_step, "phase": self.phase_at(state.global_step),
               "elapsed_s": round(time.time() - self.started, 1)}
        rec.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        self.records.append(rec)
        if "loss" in logs or "eval_loss" in logs:
            write_history(self.out, self.records)

    def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
        if state.is_world_process_zero:
            write_history(self.out, self.records)
            plot_loss_curve(self.out, self.records, self.boundaries, loss_label=self.loss_label)


class RankMarker(TrainerCallback):
    """Each process writes what it did, so a multi-process run can be checked rank by rank."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps = 0

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        self.steps += 1

    def on_train_end(self, args, state, control, **kw):  # noqa: ANN001
        d = self.out / RANKS_DIR
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

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.t0 = time.time()
        self.step0: int | None = None

    def on_step_end(self, args, state, control, optimizer=None, **kw):  # noqa: ANN001
        config = self.config
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


def make_callbacks(config: TrainConfig, out: Path, boundaries: list[dict[str, Any]], *,
                   loss_label: str = "loss (correction tokens)") -> list[Any]:
    """The three callbacks every run gets, writing under ``out``."""
    return [History(out, boundaries, loss_label=loss_label), RankMarker(out), Deadline(config)]


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
