"""``aligner eval``: argparse wiring only (the pipeline imports its libraries when it runs)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..contracts.config_parser import add_config_command, build_config
from .config import EvalConfig

EXAMPLES = """Examples:
  aligner eval --data qac.jsonl --judge openai/gpt-4-turbo                      # rows hold question, answer, correction
  aligner eval --data harmfulqa.json --limit 700 --seed 42 --upstream openai/gpt-4o-mini \\
               --corrector aligner/aligner-7b-v1.0 --paper-decoding --judge openai/gpt-4-turbo
  aligner eval --data qac.jsonl --reward-model PATH --cost-model PATH              # no judge needed
  aligner eval --data alpaca_eval.json --corrector ALIGNER_2B_PATH --alpaca-eval alpaca-out

Writes OUTPUT_DIR/report.json, report.md, rows.jsonl and PNG plots. Judge verdicts are cached in
OUTPUT_DIR/judge_cache.sqlite and corrections in OUTPUT_DIR/corrections.jsonl: run the same command
again after a crash and it resumes; an identical re-run makes no judge call."""


def run_eval(args: argparse.Namespace) -> int:
    from .report import summary_lines
    from .run import evaluate

    cfg = build_config(EvalConfig, args, getattr(args, "config", None))
    report = evaluate(cfg)
    if cfg.json:
        print(json.dumps({k: report[k] for k in ("data", "answers", "corrections", "unchanged", "judge", "reward",
                                                 "cost", "latency", "alpaca_eval", "files")}, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            print(line)
        print(f"report: {report['files']['report_md']}")
    return 0


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 70


def add_commands(sub: Any) -> None:
    add_config_command(sub, "eval", EvalConfig, run_eval,
                       help="measure whether an Aligner improves answers: pairwise judge, reward/cost models, AlpacaEval export",
                       description="Compare original answers with their corrections: a pairwise judge (helpfulness and "
                                   "harmlessness, both orders, win rate with a bootstrap interval), reward and cost "
                                   "models, per-category results, added latency, and a report with plots.",
                       epilog=EXAMPLES)
