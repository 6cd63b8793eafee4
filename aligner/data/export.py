"""``aligner export``: turn corrections into the SFT and DPO sets trl trains a strong model on.

Input: the rows ``aligner correct --input/--output`` (and the generation job) write,
``{"question", "answer", "correction", "changed", ...}`` — or any Q-A-C file, PKU-SafeRLHF or HH-RLHF,
read by :func:`aligner.data.load` with its validation (a missing field is a ``DataError`` naming
file, row and field).

Or, with ``from_log``, the log ``aligner serve --log-corrections`` wrote, with its users' ratings
(:mod:`aligner.data.from_log`: the flywheel serve → rate → export → ``aligner train``).

Output rows are exactly the dataset formats trl's trainers read, or Q-A-C for ``aligner train``:

* QAC: ``{"question", "answer", "correction", "meta"}``, what ``aligner train --data`` reads;

* SFT: ``{"prompt", "completion"}`` (completion = the correction), or with ``chat=True``
  ``{"messages": [user, assistant]}``;
* DPO: ``{"prompt", "chosen": correction, "rejected": answer}``, or with ``chat=True`` the
  conversational form (``prompt`` a list of messages, ``chosen``/``rejected`` one assistant message).

Plain prompts are ``User: {question}\\nAssistant:`` — the transcript :class:`~aligner.adapters.hf_local.HFUpstream`
gives a model without a chat template — and completions start with a space, so a strong model
trained on the export is prompted the same way when it is served back as an ``hf:`` upstream.

Filters, applied in this order and each counted in the summary: unchanged pairs (the correction is
the answer: dropped by default for DPO, where such a pair carries no preference; kept by default for
SFT, where they are the Aligner's verdict "this answer is fine" and keep the strong model doing what
it already does well), a minimum word-level edit size, duplicate prompts (first kept). The seeded
train/test split is by prompt, so the same prompt never lands on both sides.
"""
from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..contracts.correction import is_edit
from ..contracts.errors import ConfigError, DataError
from .base import QAC

if TYPE_CHECKING:
    from .from_log import LogFilters

FORMATS = ("qac", "sft", "dpo")
UNCHANGED = "unchanged (correction == answer)"
DUPLICATE = "duplicate prompt"


def _edit_reason(n: int) -> str:
    return f"edit under {n} word{'s' if n != 1 else ''} (--min-edit)"


@dataclass
class ExportSummary:
    """What an export read, dropped (with why), and wrote where."""

    format: str
    read: int
    skipped: dict[str, int] = field(default_factory=dict)   # malformed rows skipped with --lenient
    dropped: dict[str, int] = field(default_factory=dict)   # filter reason → rows
    train: int = 0
    test: int = 0
    paths: dict[str, str] = field(default_factory=dict)
    #: rows whose correction is a user's own text (``--with-user-corrections``)
    user_corrections: int = 0

    @property
    def kept(self) -> int:
        return self.train + self.test

    def lines(self) -> list[str]:
        """The summary a user reads after ``aligner export``."""
        out = [f"read {self.read} rows" + (f", skipped {sum(self.skipped.values())} malformed" if self.skipped else "")]
        for reason, n in self.skipped.items():
            out.append(f"  skipped {n}: {reason}")
        for reason, n in self.dropped.items():
            out.append(f"  dropped {n}: {reason}")
        where = f"{self.train} → {self.paths['train']}"
        if "test" in self.paths:
            where += f", {self.test} → {self.paths['test']}"
        out.append(f"kept {self.kept} {self.format.upper()} rows: {where}")
        if self.user_corrections:
            out.append(f"  {self.user_corrections} rows take a user's own correction as the target "
                       "(--with-user-corrections)")
        if "dataset" in self.paths:
            out.append(f"datasets copy: {self.paths['dataset']}")
        return out


# ----------------------------------------------------------------------------- rows

def _prompt_key(question: str) -> str:
    return " ".join(question.split())


def filter_rows(rows: Sequence[QAC], format: str, *, drop_unchanged: bool | None = None, min_edit: int = 0,
                dedup: bool = False) -> tuple[list[QAC], dict[str, int]]:
    """Rows that pass the filters, and a count of those dropped per reason (in filter order)."""
    from ..contracts.correction import edit_size

    format = _check_format(format)
    drop_unchanged = (format == "dpo") if drop_unchanged is None else drop_unchanged
    if format == "dpo" and not drop_unchanged:
        raise ConfigError("a DPO pair whose chosen equals its rejected carries no preference (zero gradient).",
                          field="drop_unchanged", fix="leave out --no-drop-unchanged for --format dpo, or export "
                                                      "--format sft to keep unchanged answers as targets.")
    if min_edit < 0:
        raise ConfigError(f"must be >= 0, got {min_edit}.", field="min_edit", fix="pass e.g. --min-edit 2.")
    dropped: Counter[str] = Counter()
    kept: list[QAC] = []
    seen: set[str] = set()
    for r in rows:
        unchanged = not is_edit(r.answer, r.correction)
        if unchanged and drop_unchanged:
            dropped[UNCHANGED] += 1
            continue
        if min_edit and edit_size(r.answer, r.correction) < min_edit:
            dropped[_edit_reason(min_edit)] += 1
            continue
        if dedup:
            key = _prompt_key(r.question)
            if key in seen:
                dropped[DUPLICATE] += 1
                continue
            seen.add(key)
        kept.append(r)
    order = [UNCHANGED, _edit_reason(min_edit), DUPLICATE]
    return kept, {k: dropped[k] for k in order if dropped[k]}


def to_record(row: QAC, format: str, *, chat: bool = False) -> dict[str, Any]:
    """One trl dataset row (see the module docstring for the shapes)."""
    format = _check_format(format)
    if format == "qac":
        return row.to_dict()
    user = [{"role": "user", "content": row.question}]
    if chat:
        def turn(text: str) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": text}]

        if format == "sft":
            return {"messages": user + turn(row.correction)}
        return {"prompt": user, "chosen": turn(row.correction), "rejected": turn(row.answer)}
    from ..adapters.hf_local import plain_prompt

    prompt = plain_prompt(user)
    if format == "sft":
        return {"prompt": prompt, "completion": " " + row.correction.strip()}
    return {"prompt": prompt, "chosen": " " + row.correction.strip(), "rejected": " " + row.answer.strip()}


def split_by_prompt(rows: Sequence[QAC], test_size: float, seed: int = 0) -> tuple[list[QAC], list[QAC]]:
    """A seeded train/test split of whole prompts (all rows of a prompt go to one side), order kept.

    ``test_size`` in (0, 1) is a share of the prompts; a whole number >= 1 is a number of prompts.
    """
    if not test_size:
        return list(rows), []
    keys = list(dict.fromkeys(_prompt_key(r.question) for r in rows))
    if test_size < 0 or (test_size >= 1 and test_size != int(test_size)):
        raise ConfigError(f"must be a share in (0, 1) or a whole number of prompts, got {test_size}.",
                          field="test_size", fix="pass e.g. --test-size 0.1 or --test-size 200.")
    n_test = int(test_size) if test_size >= 1 else max(1, round(len(keys) * test_size))
    if n_test >= len(keys):
        raise ConfigError(f"asks for {n_test} test prompts, but the rows kept have only {len(keys)} distinct prompts: "
                          "nothing would be left to train on.", field="test_size",
                          fix="pass a smaller --test-size (a share such as 0.1, or fewer prompts).")
    test_keys = set(random.Random(seed).sample(keys, n_test))
    train = [r for r in rows if _prompt_key(r.question) not in test_keys]
    test = [r for r in rows if _prompt_key(r.question) in test_keys]
    return train, test


def split_path(output: "str | Path", split: str = "test") -> Path:
    """``out.jsonl`` → ``out.test.jsonl`` (also ``.jsonl.gz``, ``.json``, ``.parquet``), beside the output."""
    p = Path(output)
    for suffix in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".parquet"):
        if p.name.endswith(suffix):
            return p.with_name(f"{p.name[: -len(suffix)]}.{split}{suffix}")
    return p.with_name(f"{p.name}.{split}")


def _check_format(format: str) -> str:
    f = str(format).strip().lower()
    if f not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}.", field="format",
                          fix="pass --format sft (prompt → correction), --format dpo (correction preferred "
                              "over answer) or --format qac (Q-A-C rows for aligner train).")
    return f


# ----------------------------------------------------------------------------- export

def export(input: "str | Path | None", output: "str | Path", format: str = "sft", *, chat: bool = False,
           drop_unchanged: bool | None = None, min_edit: int = 0, dedup: bool = False, test_size: float = 0.0,
           seed: int = 0, test_output: "str | Path | None" = None, to_dataset: "str | Path | None" = None,
           input_format: str = "qac", split: str = "train", lenient: bool = False, from_log: str | None = None,
           log_filters: "LogFilters | None" = None) -> ExportSummary:
    """Read corrections (``input``, or the served log ``from_log`` filtered by ``log_filters``),
    filter, split, and write trl-ready JSONL (and optionally a ``datasets`` copy).

    Raises a :class:`DataError` (naming the file) rather than writing an empty export when no row
    survives the filters: an empty training set would only fail later, far from its cause.
    """
    from . import load, write_jsonl

    format = _check_format(format)
    out = Path(output)
    test_out = Path(test_output) if test_output else split_path(out)
    if from_log is not None:
        from ..runtime.records import safe_target

        source = safe_target(str(from_log))  # named in errors: no password
    else:
        source = str(input)
    for name, p in (("output", out), ("test_output", test_out)):
        if Path(source).resolve() == p.resolve():
            raise ConfigError(f"{p} is also the input.", field=name, fix="write the export to another file.")
    if from_log is not None:
        from .from_log import rows_from_log

        got = rows_from_log(from_log, log_filters)
        rows, summary = got.rows, ExportSummary(format=format, read=got.read, dropped=dict(got.dropped))
        summary.user_corrections = got.user_corrections
    else:
        result = load(input, input_format, split=split, lenient=lenient)
        rows = list(result.rows)
        summary = ExportSummary(format=format, read=len(rows) + len(result.skipped), skipped=result.skip_reasons())
    kept, dropped = filter_rows(rows, format, drop_unchanged=drop_unchanged, min_edit=min_edit, dedup=dedup)
    summary.dropped.update(dropped)
    if not kept:
        raise _nothing_left(source, format, summary, from_log=from_log is not None)
    train, test = split_by_prompt(kept, test_size, seed)
    summary.train, summary.test = len(train), len(test)
    train_records = [to_record(r, format, chat=chat) for r in train]
    test_records = [to_record(r, format, chat=chat) for r in test]
    write_jsonl(train_records, out)
    summary.paths["train"] = str(out)
    if test:
        write_jsonl(test_records, test_out)
        summary.paths["test"] = str(test_out)
    if to_dataset:
        summary.paths["dataset"] = str(write_dataset(train_records, test_records, to_dataset))
    return summary


def _nothing_left(source: str, format: str, summary: ExportSummary, *, from_log: bool = False) -> DataError:
    reasons = "; ".join(f"{n} {reason}" for reason, n in summary.dropped.items()) or "none"
    if summary.dropped.get(UNCHANGED) == summary.read - sum(summary.skipped.values()) and format == "dpo":
        fix = ("the corrector changed none of these answers, so there is no preference to learn: check that the "
               "corrector edits answers (aligner data stats FILE counts the changed rows), or export --format sft, "
               "which keeps unchanged answers as targets.")
    elif from_log:
        fix = ("loosen the filters (--since/--until, --min-rating, --changed-only, --min-edit, --dedup) or let the "
               "server log more traffic.")
    else:
        fix = "loosen the filters (--min-edit, --dedup, --drop-unchanged) or export more rows."
    return DataError(f"every row was dropped by the filters ({reasons}); nothing to export.", source=source, fix=fix)


def write_dataset(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]], path: "str | Path") -> Path:
    """A ``datasets`` copy: a ``save_to_disk`` directory (splits ``train``/``test``), or ``.parquet`` files."""
    from datasets import Dataset, DatasetDict

    p = Path(path)
    if p.name.endswith(".parquet"):
        p.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list(list(train)).to_parquet(str(p))
        if test:
            Dataset.from_list(list(test)).to_parquet(str(split_path(p)))
        return p
    if p.exists() and (not p.is_dir() or any(p.iterdir())) and not (p / "dataset_dict.json").is_file():
        raise ConfigError(f"{p} exists and is not a saved dataset.", field="to_dataset",
                          fix="pass a new directory (or one an earlier export wrote), or a path ending in .parquet.")
    splits = {"train": Dataset.from_list(list(train))}
    if test:
        splits["test"] = Dataset.from_list(list(test))
    DatasetDict(splits).save_to_disk(str(p))
    return p


# ----------------------------------------------------------------------------- command

EXAMPLES = """examples:
  aligner export --format sft corrections.jsonl sft.jsonl
  aligner export --format dpo corrections.jsonl dpo.jsonl --min-edit 2 --dedup --test-size 0.05
  aligner export --format dpo corrections.jsonl dpo.jsonl --chat --to-dataset dpo_ds/   # datasets.load_from_disk
  aligner train-strong --method dpo --data dpo.jsonl --eval-data dpo.test.jsonl --base-model MODEL --output-dir OUT
the flywheel: what aligner serve logged and its users rated, back into training
  aligner export --from-log traffic.sqlite --format qac qac.jsonl --min-rating 1 --with-user-corrections
  aligner export --from-log postgresql://aligner@db/aligner --format dpo dpo.jsonl --changed-only --since 2026-05-01
  aligner train --data qac.jsonl --base-model CORRECTOR --output-dir corrector-v2
"""


def add_command(subparsers: Any) -> None:
    """Register the top-level ``aligner export`` command."""
    p = subparsers.add_parser(
        "export", help="export corrections as SFT / DPO sets for trl (weak-to-strong)",
        description="Turn corrections ({question, answer, correction} rows, e.g. the output of aligner correct "
                    "--input/--output) into trl datasets: SFT {prompt, completion} or {messages}, DPO {prompt, "
                    "chosen: correction, rejected: answer}. Prints what was kept and what was dropped, and why.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", nargs="?",
                   help="corrections: JSON / JSONL / .gz / parquet, or a hub dataset id (left out with --from-log)")
    p.add_argument("output", metavar="OUT.jsonl", nargs="?", help="dataset to write (JSONL; .gz compresses)")
    p.add_argument("--format", required=True, choices=FORMATS, help="sft: prompt → correction; dpo: correction "
                                                                   "(chosen) over answer (rejected); qac: Q-A-C rows "
                                                                   "for aligner train")
    log = p.add_argument_group("from a served log (aligner serve --log-corrections)")
    log.add_argument("--from-log", default=None, metavar="LOG",
                     help="read the corrections log (.jsonl, .sqlite or postgresql:// URL) instead of IN: fallback "
                          "rows and answers the gate passed uncorrected are left out")
    log.add_argument("--changed-only", action="store_true", help="only rows whose correction differs from the answer")
    log.add_argument("--min-rating", type=int, default=None, choices=(-1, 0, 1),
                     help="only rows users rated at least this (unrated rows are left out)")
    log.add_argument("--since", default=None, metavar="TIME", help="only rows logged at or after TIME (ISO date or "
                                                                  "time, UTC unless zoned; or Unix seconds)")
    log.add_argument("--until", default=None, metavar="TIME", help="only rows logged before TIME")
    log.add_argument("--with-user-corrections", action="store_true",
                     help="a correction a user wrote (POST /v1/feedback corrected_text) replaces the corrector's as "
                          "the target")
    p.add_argument("--chat", action="store_true", help="conversational rows (messages with roles) for models with a "
                                                       "chat template, instead of plain 'User: …\\nAssistant:' text")
    p.add_argument("--drop-unchanged", action=argparse.BooleanOptionalAction, default=None,
                   help="drop pairs whose correction equals the answer (default: on for dpo, off for sft)")
    p.add_argument("--min-edit", type=int, default=0, metavar="N",
                   help="drop pairs whose correction adds + removes fewer than N words (default: 0, keep all)")
    p.add_argument("--dedup", action="store_true", help="keep only the first row of each prompt")
    p.add_argument("--test-size", type=float, default=0.0, metavar="X",
                   help="hold out a share (0-1) or a number of prompts as a test file beside OUT (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    p.add_argument("--test-out", default=None, metavar="PATH", help="test file (default: OUT with .test before "
                                                                    "the extension)")
    p.add_argument("--to-dataset", default=None, metavar="DIR|FILE.parquet",
                   help="also write a datasets copy: a save_to_disk directory (train/test splits) or parquet")
    p.add_argument("--input-format", default="qac", choices=("qac", "pku-saferlhf", "hh-rlhf"),
                   help="format of IN (default: qac, which also reads aligner correct's output)")
    p.add_argument("--split", default="train", help="split, for hub ids (default: train)")
    p.add_argument("--lenient", action="store_true", help="skip malformed rows (counted, with reasons) instead of "
                                                          "stopping at the first one")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from .from_log import LogFilters

    log_flags = {"changed_only": args.changed_only, "min_rating": args.min_rating, "since": args.since,
                 "until": args.until, "with_user_corrections": args.with_user_corrections}
    if args.from_log is None:
        given = [f"--{k.replace('_', '-')}" for k, v in log_flags.items() if v not in (None, False)]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for a served log.", field="from_log",
                              fix="add --from-log LOG (the file or URL aligner serve --log-corrections wrote).")
        if args.output is None:
            raise ConfigError("needs IN and OUT.jsonl.", field="input",
                              fix="aligner export --format sft IN OUT.jsonl, or --from-log LOG OUT.jsonl.")
    else:
        if args.output is not None:
            raise ConfigError(f"with --from-log the log is the input, so give only OUT.jsonl (got {args.input!r} "
                              f"and {args.output!r}).", field="from_log", fix="drop IN.")
        if args.input is None:
            raise ConfigError("needs OUT.jsonl.", field="output", fix="aligner export --from-log LOG --format qac OUT.jsonl")
        args.input, args.output = None, args.input
    summary = export(args.input, args.output, args.format, from_log=args.from_log,
                     log_filters=LogFilters(**log_flags) if args.from_log else None, chat=args.chat,
                     drop_unchanged=args.drop_unchanged, min_edit=args.min_edit, dedup=args.dedup, test_size=args.test_size, seed=args.seed,
                     test_output=args.test_out, to_dataset=args.to_dataset, input_format=args.input_format,
                     split=args.split, lenient=args.lenient)
    print("\n".join(summary.lines()))
    return 0
