"""``aligner correct`` and ``aligner templates``: the everyday commands."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from ..contracts.config_parser import add_config_command, build_config
from ..contracts.errors import ConfigError
# the demo notes live beside the options that build the Aligner, so jobs (aligner eval) print them
# without importing a command module; imported here too, where the commands used to find them
from .options import DEMO_NOTE, GATE_DEMO_NOTE, BatchOptions, print_notes  # noqa: F401

@dataclass
class CorrectConfig(BatchOptions):
    """Options of ``aligner correct``: the shared :class:`~aligner.core.options.AlignerOptions` plus these."""

    answer: str | None = field(default=None, metadata={"help": "the answer to correct; without it the upstream is asked"})
    json: bool = field(default=False, metadata={"help": "print one JSON object (question, answer, correction, changed, …)"})
    stream: bool = field(default=False, metadata={"help": "print the correction as it is generated"})
    diff: bool = field(default=False, metadata={"help": "also print a word diff of answer → correction"})
    input: str | None = field(default=None, metadata={"help": 'JSONL of {"question"[, "answer"]} rows to correct'})
    output: str | None = field(default=None, metadata={
        "help": "JSONL to append results to; a re-run resumes (and retries the rows listed in OUTPUT.errors.jsonl)"})
    overwrite: bool = field(default=False, metadata={
        "help": "start --output afresh instead of resuming it (e.g. after changing --input)"})


def run_correct(args: argparse.Namespace) -> int:
    cfg = build_config(CorrectConfig, args, getattr(args, "config", None))
    question = getattr(args, "question", None)
    if cfg.input or cfg.output:
        if not (cfg.input and cfg.output):
            raise ConfigError("--input and --output go together.", field="output" if cfg.input else "input",
                              fix="aligner correct --input IN.jsonl --output OUT.jsonl")
        if question:
            raise ConfigError("give either a QUESTION or --input, not both.", field="question",
                              fix="drop the positional question when correcting a file.")
    elif not question:
        raise ConfigError("no question given.", field="question",
                          fix='aligner correct "How do I ...?" --answer "..." (or --input FILE.jsonl --output OUT.jsonl)')
    elif cfg.overwrite:
        raise ConfigError("--overwrite goes with --input/--output.", field="overwrite",
                          fix="drop --overwrite when correcting one question.")
    if cfg.input:
        return _run_file(cfg)
    if cfg.answer is None and not cfg.upstream:  # before any model loads: nothing could be corrected
        raise ConfigError("no answer to correct: no --answer was given, and no --upstream to ask for one.",
                          field="answer", fix=f'pass the answer: aligner correct "{_short(question)}" --answer "...", '
                                              f"or who answers: --upstream {UPSTREAM_EXAMPLES}.")
    if cfg.answer is not None and cfg.upstream:
        print(f"note: --upstream {cfg.upstream} is not used: --answer gives the answer.", file=sys.stderr)
    aligner = cfg.build(upstream=cfg.answer is None)  # never load an upstream that will not be asked
    print_notes(aligner)
    if cfg.stream and not cfg.json:
        answer = cfg.answer if cfg.answer is not None else aligner.answer(question)
        stream = aligner.stream(question, answer)
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if cfg.diff and stream.correction is not None:
            print(_word_diff(stream.correction))
            _print_steps(stream.correction)
        if stream.correction is not None and stream.correction.gate is not None:
            print(stream.correction.gate.summary(), file=sys.stderr)
        return 0
    c = aligner.correct(question, cfg.answer)
    if cfg.json:
        print(json.dumps({**c.to_dict(), "demo": aligner.is_demo}, ensure_ascii=False))
    else:
        print(c.correction)
        if cfg.diff:
            print(_word_diff(c))
            _print_steps(c)
        if c.gate is not None:
            print(c.gate.summary(), file=sys.stderr)
    return 0


#: what --upstream takes, for messages
UPSTREAM_EXAMPLES = ("openai/gpt-4o-mini (a LiteLLM model string), an http(s)://…/v1 base URL, "
                     "or hf:PATH (a local transformers model)")


def _short(text: str, limit: int = 40) -> str:
    """The question as a message quotes it back: one line, at most ``limit`` characters."""
    one = " ".join(text.split()).replace('"', "'")
    return one if len(one) <= limit else one[:limit - 1] + "…"


def _word_diff(c: Any) -> str:
    """``kept [-removed][+added]`` on one line, for a terminal."""
    return "".join(text if op == " " else f"[{op}{text}]" for op, text in c.diff())


def _print_steps(c: Any) -> None:
    """Stacked correctors: each step's word diff, on stderr under the whole one."""
    from ..contracts.correction import Correction
    from ..correctors.stack import step_edits

    for i, (step, given, made) in enumerate(step_edits(c), start=1):
        fell = f" (fell back: {step.fallback_reason})" if step.fallback else ""
        print(f"step {i} {step.corrector}{fell}: " + _word_diff(Correction("", given, made)), file=sys.stderr)


def _run_file(cfg: CorrectConfig) -> int:
    """``--input``/``--output``: every check that needs no model runs before the model loads."""
    from .batch import EXIT_ROWS_FAILED, BatchJob, most_common_error, summary

    job = BatchJob.open(cfg.input, cfg.output, overwrite=cfg.overwrite)  # type: ignore[arg-type]
    job.check_answers(bool(cfg.upstream))
    if job.todo:
        # every row still to do has its answer: the upstream would not be asked, so it is not loaded
        aligner = cfg.build(upstream=any(r["answer"] is None for r in job.todo))
        print_notes(aligner)
        counts = job.run(aligner)
    else:
        counts = {"total": len(job.rows), "skipped": len(job.rows), "written": 0, "failed": 0, "errors_file": None}
    print(json.dumps(counts) if cfg.json else summary(counts, cfg.output))  # type: ignore[arg-type]
    if counts["failed"]:
        print(f"{counts['failed']} rows failed; {most_common_error(cfg.output)}", file=sys.stderr)  # type: ignore[arg-type]
        return EXIT_ROWS_FAILED
    return 0


def run_templates(args: argparse.Namespace) -> int:
    from ..contracts import templates

    if args.action == "list":
        for name in templates.names():
            t = templates.get_template(name)
            default = " (default)" if name == templates.DEFAULT_TEMPLATE else ""
            print(f"{name}{default}: {t.description}")
        return 0
    if not args.name:
        raise ConfigError("which template?", field="name", fix="aligner templates show aligner-v1.0 --question Q --answer A")
    t = templates.get_template(args.name)
    aspects = args.aspects
    if args.objectives:
        from ..contracts.objectives import render, resolve

        if args.aspects:
            raise ConfigError("give --objective or --aspects, not both.", field="objectives",
                              fix="--objective renders the aspects text itself.")
        aspects = render(resolve(args.objectives) or [])
    sys.stdout.write(t.render(args.question, args.answer, aspects=aspects) + "\n")
    return 0


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 10


def add_commands(sub: Any) -> None:
    p = add_config_command(sub, "correct", CorrectConfig, run_correct, help="correct an answer (asking an upstream model when none is given)",
                           description="Correct an answer with an Aligner. Examples:\n"
                       '  aligner correct "How do I reset my password?" --answer "Email me at bob@example.com"\n'
                       '  aligner correct "Explain DNS" --upstream openai/gpt-4o-mini\n'
                       '  aligner correct "How do I bake bread?" --answer "..." --gate demo   # correct only if flagged\n'
                       '  aligner correct "Q" --answer "..." --corrector small/ --corrector large/   # stacked, in order\n'
                       '  aligner correct "Q" --answer "..." --corrector M --template metaaligner --objective harmless\n'
                       "  aligner correct --input questions.jsonl --output corrected.jsonl")
    p.add_argument("question", nargs="?", help="the question the answer replies to")

    t = sub.add_parser("templates", help="list the prompt templates or show one rendered exactly")
    t.add_argument("action", choices=["list", "show"], help="list: every template by name; show: one template's prompt")
    t.add_argument("name", nargs="?", help="the template to show (e.g. aligner-v1.0, qac)")
    t.add_argument("--question", default="{question}", help="question to fill in (default: the placeholder itself)")
    t.add_argument("--answer", default="{answer}", help="answer to fill in (default: the placeholder itself)")
    t.add_argument("--aspects", default=None, help="for metaaligner: the raw aspects text")
    t.add_argument("--objective", dest="objectives", action="append", default=None,
                   help="for metaaligner: an objective (harmless, helpful, ... or 'name: description'); repeatable")
    t.set_defaults(func=run_templates)
