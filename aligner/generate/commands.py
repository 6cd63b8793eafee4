"""``aligner generate``: corrections of a model's answers at scale, for weak-to-strong training.

It is the resumable batch job of :mod:`aligner.core.batch` (same row keys, ``OUT.meta.json``,
``OUT.errors.jsonl``, torn-line rule and exit code 3), run pipelined, with three additions:

- prompts may be a ``question`` or ``prompt`` field, in a file or a hub dataset;
- ``--shard I/N`` (or ``RANK``/``WORLD_SIZE`` from ``torchrun``/``accelerate``) makes this process
  do rows ``I, I+N, I+2N, ...`` into ``OUT.shard-I-of-N.jsonl``; ``aligner data merge`` joins the
  shard files into one file in prompt order;
- ``--engine ray`` runs the same job on Ray Data (:mod:`aligner.generate.ray_engine`): upstream calls as
  tasks, corrector batches on actors that load the corrector once each, rows written by the same
  resumable writer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts.config_parser import add_config_command, build_config
from ..contracts.errors import ConfigError
from ..core.options import BatchOptions

PROMPT_FIELDS = ("question", "prompt")


@dataclass
class GenerateConfig(BatchOptions):
    """Options of ``aligner generate`` (flags, YAML keys and Python API alike): the shared
    :class:`~aligner.core.options.AlignerOptions` plus these."""

    prompts: str | None = field(default=None, metadata={
        "help": 'JSONL of {"question"|"prompt"[, "answer"]} rows, or a hub dataset id; answers given are used as they are'})
    out: str | None = field(default=None, metadata={
        "help": "JSONL to append rows to as they finish; a re-run resumes (with --shard: OUT.shard-I-of-N.jsonl)"})
    split: str = field(default="train", metadata={"help": "split, for a hub dataset id"})
    shard: str | None = field(default=None, metadata={
        "help": "I/N: do every N-th prompt starting at I (default: RANK/WORLD_SIZE when set, else all)"})
    requests_per_minute: float | None = field(default=None, metadata={"help": "cap on upstream requests per minute"})
    engine: str = field(default="local", metadata={"help": "local (one process, pipelined) or ray (Ray Data)",
                                                   "choices": ("local", "ray")})
    ray_address: str | None = field(default=None, metadata={
        "help": "Ray cluster to join (auto: RAY_ADDRESS or a running `ray start` cluster, else a local one)"})
    ray_actors: int = field(default=1, metadata={"help": "corrector actors (each loads the corrector once)"})
    ray_gpus_per_actor: float = field(default=0.0, metadata={"help": "GPUs per corrector actor (0: CPU)"})
    overwrite: bool = field(default=False, metadata={"help": "start --out afresh instead of resuming it"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    json: bool = field(default=False, metadata={"help": "print the counts as one JSON object"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("concurrency", "batch_size", "ray_actors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"must be a positive whole number, got {v!r}.", field=name,
                                  fix=f"e.g. --{name.replace('_', '-')} 8.")
        rpm = self.requests_per_minute
        if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, (int, float)) or not rpm > 0):
            raise ConfigError(f"must be a positive number, got {rpm!r}.", field="requests_per_minute",
                              fix="e.g. --requests-per-minute 600, or leave it out for no limit.")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"unknown engine {self.engine!r}.", field="engine", fix="--engine local or --engine ray.")

    def upstream_options(self) -> dict[str, Any]:
        rpm = {"requests_per_minute": self.requests_per_minute} if self.requests_per_minute else {}
        return {**super().upstream_options(), **rpm}


def parse_shard(spec: str | None, env: "dict[str, str] | os._Environ[str] | None" = None) -> tuple[int, int] | None:
    """``"I/N"`` → (I, N); without it, ``RANK``/``WORLD_SIZE`` when a launcher set them; None for one process."""
    env = os.environ if env is None else env
    source = "shard"
    if spec is None and env.get("WORLD_SIZE") not in (None, "", "1"):
        spec, source = f"{env.get('RANK', '0')}/{env['WORLD_SIZE']}", "RANK/WORLD_SIZE"
    if spec is None:
        return None
    try:
        i, n = (int(p) for p in str(spec).split("/"))
    except ValueError:
        raise ConfigError(f"expected I/N (e.g. 0/4), got {spec!r} from {source}.", field="shard",
                          fix="--shard 0/4 for the first of four shards.") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {i}/{n} is out of range: I must be 0..N-1 and N at least 1.", field="shard",
                          fix=f"--shard 0/{max(n, 1)} … {max(n, 1) - 1}/{max(n, 1)}.")
    return (i, n) if n > 1 else None


def shard_path(out: "str | Path", shard: tuple[int, int] | None) -> Path:
    """Where shard I of N writes: ``OUT.shard-I-of-N.jsonl`` beside ``OUT`` (``OUT`` itself unsharded)."""
    p = Path(out)
    if shard is None:
        return p
    i, n = shard
    width = len(str(n - 1))
    return p.with_name(f"{p.stem}.shard-{i:0{width}d}-of-{n}{p.suffix or '.jsonl'}")


#: options that change where or how fast rows are made, not what a row's correction is
_NOT_SETTINGS = frozenset({"device", "upstream_retries", "upstream_timeout"})


def run_settings(cfg: GenerateConfig) -> dict[str, Any]:
    """The settings that make a run's rows what they are (who answers, who corrects, the template,
    decoding), recorded in ``OUT.meta.json`` so ``aligner data merge`` refuses shards of two runs."""
    from dataclasses import fields

    from ..core.options import AlignerOptions

    out = {f.name: getattr(cfg, f.name) for f in fields(AlignerOptions) if f.name not in _NOT_SETTINGS}
    for name, value in out.items():  # a server's address is where it runs (each rank may have its own)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            out[name] = "an http(s) server"
    return {**out, "split": cfg.split}


def generate(cfg: GenerateConfig, *, aligner: Any = None) -> dict[str, Any]:
    """Run one generation job (or one shard of it); returns the batch job's counts plus ``out``.

    Everything that needs no model (the prompts, the output, the shard) is checked first.
    """
    from ..core.batch import BatchJob

    if not cfg.prompts:
        raise ConfigError("no prompts given.", field="prompts",
                          fix="aligner generate --prompts PROMPTS.jsonl --upstream SPEC --out OUT.jsonl")
    if not cfg.out:
        raise ConfigError("no output given.", field="out", fix="add --out OUT.jsonl.")
    shard = parse_shard(cfg.shard)
    out = shard_path(cfg.out, shard)
    job = BatchJob.open(cfg.prompts, out, overwrite=cfg.overwrite, fields=PROMPT_FIELDS, shard=shard,
                        split=cfg.split, provenance=True, settings=run_settings(cfg))
    job.check_answers(bool(cfg.upstream) or (aligner is not None and aligner.upstream is not None))
    counts: dict[str, Any]
    if not job.todo:
        counts = {"total": len(job.rows), "skipped": len(job.rows), "written": 0, "failed": 0, "errors_file": None}
    elif cfg.engine == "ray":
        from .ray_engine import run_ray

        counts = run_ray(job, cfg)
    else:
        if aligner is None:
            from ..core.commands import DEMO_NOTE

            # rows that all have their answer never ask the upstream: it is not loaded
            aligner = cfg.build(upstream=any(r["answer"] is None for r in job.todo))
            if aligner.is_demo and cfg.progress:
                print(DEMO_NOTE, file=sys.stderr)
        counts = job.run(aligner, progress=cfg.progress)
    return {**counts, "out": str(out)}


def run_generate(args: argparse.Namespace) -> int:
    from ..core.batch import EXIT_ROWS_FAILED, most_common_error

    cfg = build_config(GenerateConfig, args, getattr(args, "config", None))
    counts = generate(cfg)
    out = counts["out"]
    if cfg.json:
        print(json.dumps(counts))
    else:
        failed = f", {counts['failed']} failed (reasons in {counts['errors_file']}; run the same command " \
                 "again to retry them)" if counts["failed"] else ""
        print(f"{counts['written']} rows generated{failed}, {counts['skipped']} already done, "
              f"{counts['total']} in all → {out}")
    if counts["failed"]:
        print(f"{counts['failed']} rows failed; {most_common_error(out)}", file=sys.stderr)
        return EXIT_ROWS_FAILED
    return 0


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 20


def add_commands(sub: Any) -> None:
    add_config_command(
        sub, "generate", GenerateConfig, run_generate,
        help="answer prompts with an upstream and correct them, at scale (pipelined, resumable, sharded, Ray)",
        description="For each prompt: the upstream's answer (or the file's), corrected; one JSON row per prompt "
                    "appended to --out as it finishes, with its provenance. Safe to kill: the same command resumes. "
                    "Exit status 3 when some rows failed (listed in OUT.errors.jsonl).",
        epilog="examples:\n"
               "  aligner generate --prompts prompts.jsonl --upstream http://localhost:8000/v1 --upstream-model m \\\n"
               "      --corrector aligner/aligner-7b-v1.0 --out corrections.jsonl\n"
               "  torchrun --nproc-per-node 4 -m aligner generate ... --out c.jsonl   # 4 shard files\n"
               "  aligner data merge c.shard-*-of-4.jsonl --out c.jsonl\n"
               "  aligner generate ... --engine ray --ray-actors 8 --ray-gpus-per-actor 1")
