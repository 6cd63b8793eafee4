"""``aligner correct`` and ``aligner templates``: the everyday commands."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from .config import add_config_command, build_config
from .errors import ConfigError

DEMO_NOTE = ("note: using the embedded demo corrector (a ~2M-parameter toy trained on synthetic data); "
             "pass --corrector aligner/aligner-7b-v1.0 (or a path) for a real Aligner.")


@dataclass
class CorrectConfig:
    """Options of ``aligner correct``."""

    answer: str | None = field(default=None, metadata={"help": "the answer to correct; without it the upstream is asked"})
    upstream: str | None = field(default=None, metadata={
        "help": "who answers: a LiteLLM model string (openai/gpt-4o-mini), an http(s)://…/v1 base URL of an "
                "OpenAI-compatible server, or hf:PATH for a local transformers model"})
    upstream_model: str | None = field(default=None, metadata={"help": "model name at a base-URL upstream"})
    corrector: str | None = field(default=None, metadata={
        "help": "corrector hub id or path (causal or seq2seq), or an http(s)://…/v1 completions endpoint; "
                "default: the embedded demo corrector"})
    template: str | None = field(default=None, metadata={
        "help": "prompt template name (see `aligner templates list`) or a string with {question} and {answer}; "
                "default: the corrector's own, else aligner-v1.0"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "cap on generated tokens"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, mps (default: best available)"})
    json: bool = field(default=False, metadata={"help": "print one JSON object (question, answer, correction, changed, …)"})
    stream: bool = field(default=False, metadata={"help": "print the correction as it is generated"})
    diff: bool = field(default=False, metadata={"help": "also print a word diff of answer → correction"})
    input: str | None = field(default=None, metadata={"help": 'JSONL of {"question"[, "answer"]} rows to correct'})
    output: str | None = field(default=None, metadata={"help": "JSONL to append results to; a re-run resumes"})
    batch_size: int = field(default=8, metadata={"help": "answers the corrector decodes together"})
    concurrency: int = field(default=8, metadata={"help": "upstream requests in flight at once"})


def build_aligner(cfg: Any) -> Any:
    """An Aligner from a config with upstream/corrector/template fields (shared by CLI commands)."""
    from .core import Aligner

    decoding = {"max_new_tokens": cfg.max_new_tokens} if getattr(cfg, "max_new_tokens", None) else None
    kwargs: dict[str, Any] = {"max_concurrency": getattr(cfg, "concurrency", 8)} if cfg.upstream else {}
    return Aligner(cfg.upstream, cfg.corrector, template=cfg.template, upstream_model=cfg.upstream_model,
                   decoding=decoding, device=getattr(cfg, "device", None),
                   batch_size=getattr(cfg, "batch_size", 8), **kwargs)


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
    aligner = build_aligner(cfg)
    if aligner.is_demo:
        print(DEMO_NOTE, file=sys.stderr)
    if cfg.input:
        from .jobs import correct_file

        counts = correct_file(aligner, cfg.input, cfg.output)
        print(json.dumps(counts) if cfg.json else
              f"{counts['written']} rows corrected, {counts['skipped']} already done, {counts['total']} in all "
              f"→ {cfg.output}")
        return 0
    if cfg.stream and not cfg.json:
        for piece in aligner.stream(question, cfg.answer):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    c = aligner.correct(question, cfg.answer)
    if cfg.json:
        print(json.dumps({**c.to_dict(), "demo": aligner.is_demo}, ensure_ascii=False))
    else:
        print(c.correction)
        if cfg.diff:
            print("".join(text if op == " " else f"[{op}{text}]" for op, text in c.diff()))
    return 0


def run_templates(args: argparse.Namespace) -> int:
    from . import templates

    if args.action == "list":
        for name in templates.names():
            t = templates.get_template(name)
            default = " (default)" if name == templates.DEFAULT_TEMPLATE else ""
            print(f"{name}{default}: {t.description}")
        return 0
    if not args.name:
        raise ConfigError("which template?", field="name", fix="aligner templates show aligner-v1.0 --question Q --answer A")
    t = templates.get_template(args.name)
    sys.stdout.write(t.render(args.question, args.answer, aspects=args.aspects) + "\n")
    return 0


def add_commands(sub: Any) -> None:
    p = add_config_command(sub, "correct", CorrectConfig, run_correct, help="correct an answer (asking an upstream model when none is given)",
                           description="Correct an answer with an Aligner. Examples:\n"
                       '  aligner correct "How do I reset my password?" --answer "Email me at bob@example.com"\n'
                       '  aligner correct "Explain DNS" --upstream openai/gpt-4o-mini\n'
                       "  aligner correct --input questions.jsonl --output corrected.jsonl")
    p.add_argument("question", nargs="?", help="the question the answer replies to")

    t = sub.add_parser("templates", help="list the prompt templates or show one rendered exactly")
    t.add_argument("action", choices=["list", "show"])
    t.add_argument("name", nargs="?")
    t.add_argument("--question", default="{question}")
    t.add_argument("--answer", default="{answer}")
    t.add_argument("--aspects", default=None, help="for metaaligner: e.g. 'harmlessness, helpfulness'")
    t.set_defaults(func=run_templates)
