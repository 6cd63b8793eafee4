"""Evaluation: does an Aligner make a model's answers better, on which questions, at what latency?

``evaluate(EvalConfig(...))`` (the ``aligner eval`` command) reads an eval set
(:mod:`~aligner.eval.sets`), makes answers and corrections on the way when the file lacks them,
scores both with reward and cost models (:mod:`~aligner.runtime.scoring`), asks a pairwise judge in
both orders (:mod:`~aligner.eval.judge`, cached by :mod:`~aligner.eval.cache`), computes the win
rate with a bootstrap interval (:mod:`~aligner.eval.stats`) and writes a report with plots
(:mod:`~aligner.eval.report`) and, on request, AlpacaEval files (:mod:`~aligner.eval.alpaca`).
Heavy libraries (torch, transformers, matplotlib, numpy) are imported only when a step runs.
"""
from __future__ import annotations

from typing import Any

from .config import EvalConfig
from .sets import EvalItem, EvalSet, load_eval_set

__all__ = ["EvalConfig", "EvalItem", "EvalSet", "load_eval_set", "evaluate"]


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run an evaluation; returns the report (also written to ``config.output_dir``)."""
    from .run import evaluate as _evaluate

    return _evaluate(config)
