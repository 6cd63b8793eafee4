"""``aligner data convert | stats | synth`` and ``aligner export``: get training data into Q-A-C JSONL, look at
it, and export corrections for trl.

Only argparse wiring at import time: ``datasets``/``pyarrow``/``transformers`` are imported by the
loaders when a command actually runs, so ``aligner --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any, Sequence

from ..contracts.correction import is_edit
from ..contracts.errors import ConfigError

_FORMATS = ("qac", "pku-saferlhf", "hh-rlhf")
_FIELDS = ("question", "answer", "correction")


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 30


def add_commands(subparsers: Any) -> None:
    """Register the ``data`` command and its actions on the top-level ``aligner`` parser."""
    data = subparsers.add_parser("data", help="convert, inspect and synthesise Q-A-C training data",
                                 description="Convert datasets to Q-A-C JSONL, print statistics, "
                                             "or generate the synthetic Q-A-C set the demo corrector learns from.")
    data.set_defaults(func=lambda args: _help(data))
    actions = data.add_subparsers(dest="data_action", metavar="ACTION")

    conv = actions.add_parser("convert", help="convert qac / pku-saferlhf / hh-rlhf data to Q-A-C JSONL",
                              description="Read a local JSON/JSONL/.gz/parquet file or a hub dataset id and "
                                          "write Q-A-C JSONL; reports rows written and rows skipped with why.")
    conv.add_argument("input", metavar="IN", help="local file or Hugging Face dataset id")
    conv.add_argument("output", metavar="OUT.jsonl", help="Q-A-C JSONL to write (.gz compresses)")
    conv.add_argument("--format", default="qac", choices=_FORMATS, help="input format (default: qac)")
    conv.add_argument("--split", default="train", help="split, for hub ids (default: train)")
    conv.add_argument("--lenient", action="store_true", help="skip bad rows (counted, with reasons) instead of stopping")
    conv.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N converted rows")
    conv.add_argument("--max-chars", type=int, default=None, metavar="N", help="reject texts longer than N characters")
    conv.set_defaults(func=run_convert)

    st = actions.add_parser("stats", help="row counts, categories and length percentiles of a dataset",
                            description="Counts, per-category counts, and p50/p90/p99/max lengths in characters "
                                        "(and tokens with --tokenizer) of question, answer and correction.")
    st.add_argument("file", metavar="FILE", help="local file or Hugging Face dataset id")
    st.add_argument("--format", default="qac", choices=_FORMATS, help="input format (default: qac)")
    st.add_argument("--split", default="train", help="split, for hub ids (default: train)")
    st.add_argument("--tokenizer", default=None, metavar="PATH", help="also count tokens with this tokenizer (path or hub id)")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(func=run_stats)

    sy = actions.add_parser("synth", help="generate the synthetic Q-A-C set (identity/redact/arithmetic/refusal)",
                            description="Seeded, deterministic synthetic Q-A-C rows a tiny corrector can learn.")
    sy.add_argument("output", metavar="OUT.jsonl", help="JSONL to write")
    sy.add_argument("--n", type=int, required=True, help="number of rows")
    sy.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows)")
    sy.add_argument("--hh-rlhf", default=None, metavar="PATH",
                    help="HH-RLHF JSONL(.gz) whose assistant sentences build the answers (default: built-in pool)")
    sy.add_argument("--mix", default=None, metavar="CAT=W,...",
                    help="category weights, e.g. identity=0.2,redact=0.3,arithmetic=0.2,refusal=0.3")
    sy.add_argument("--eval-out", default=None, metavar="PATH",
                    help="also write a held-out splice_contacts set built from sentences the generator did not use")
    sy.add_argument("--eval-n", type=int, default=200, help="rows in --eval-out (default: 200)")
    sy.set_defaults(func=run_synth)

    mg = actions.add_parser("merge", help="join `aligner generate` shard files into one file, in prompt order",
                            description="Rows of the shard files (OUT.shard-I-of-N.jsonl) sorted by their prompt "
                                        "number, each line copied byte for byte. The files must be every shard "
                                        "I/N of one run, each once, with every prompt done (their .meta.json say "
                                        "the run): a shard missing or given twice, prompts not generated, or "
                                        "files of different runs are an error (exit 2) naming them, and nothing "
                                        "is written.")
    mg.add_argument("shards", nargs="+", metavar="SHARD.jsonl", help="shard files written by aligner generate")
    mg.add_argument("--out", required=True, metavar="OUT.jsonl", help="merged JSONL to write")
    mg.add_argument("--allow-partial", action="store_true",
                    help="merge what is there although shards or prompts are missing (said on stderr and in "
                         "the summary line)")
    mg.set_defaults(func=run_merge)

    from .export import add_command as add_export

    add_export(subparsers)  # top-level ``aligner export``: corrections → trl SFT / DPO sets


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_convert(args: argparse.Namespace) -> int:
    from . import load, write_jsonl

    result = load(args.input, args.format, split=args.split, lenient=args.lenient, limit=args.limit,
                  max_chars=args.max_chars)
    n = write_jsonl(result.rows, args.output)
    print(f"{n} rows written to {args.output}, {len(result.skipped)} skipped")
    _print_skips(result)
    return 0


def _print_skips(result: Any, show: int = 5) -> None:
    for reason, count in result.skip_reasons().items():
        print(f"  skipped {count}: {reason}")
    for s in result.skipped[:show]:
        print(f"    e.g. {result.unit} {s.row}" + (f" ({s.field})" if s.field else "") + f": {s.reason}")


def percentiles(values: Sequence[int]) -> dict[str, int]:
    """Nearest-rank p50/p90/p99 and max: exact values that occur in the data, no interpolation."""
    if not values:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    v = sorted(values)
    pick = lambda p: v[max(0, math.ceil(p / 100 * len(v)) - 1)]  # noqa: E731
    return {"p50": pick(50), "p90": pick(90), "p99": pick(99), "max": v[-1]}


def compute_stats(rows: Sequence[Any], tokenizer: Any = None) -> dict[str, Any]:
    """Counts and length percentiles of Q-A-C rows (``tokenizer``: anything with ``encode``)."""
    out: dict[str, Any] = {"rows": len(rows)}
    cats: dict[str, int] = {}
    for r in rows:
        if r.category is not None:
            cats[r.category] = cats.get(r.category, 0) + 1
    if cats:
        out["categories"] = dict(sorted(cats.items()))
    out["changed"] = sum(1 for r in rows if is_edit(r.answer, r.correction))
    out["chars"] = {f: percentiles([len(getattr(r, f)) for r in rows]) for f in _FIELDS}
    if tokenizer is not None:
        out["tokens"] = {f: percentiles([len(tokenizer.encode(getattr(r, f), add_special_tokens=False))
                                         for r in rows]) for f in _FIELDS}
    return out


def run_stats(args: argparse.Namespace) -> int:
    from . import load

    result = load(args.file, args.format, split=args.split, lenient=True)
    tok = None
    if args.tokenizer:
        from pathlib import Path

        from ..runtime.hub import check_hub_model, looks_like_path

        if not Path(args.tokenizer).exists() and not looks_like_path(args.tokenizer):
            check_hub_model(args.tokenizer, field="tokenizer", flag="--tokenizer", local="a local tokenizer folder")
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(args.tokenizer)
        except Exception as exc:  # OSError for a bad path, ValueError for a bad config
            raise ConfigError(f"cannot load tokenizer {args.tokenizer!r} ({type(exc).__name__}: {exc}).",
                              field="tokenizer", fix="pass a local tokenizer folder or a cached hub id.") from exc
    stats = compute_stats(result.rows, tok)
    stats["skipped"] = len(result.skipped)
    if result.skipped:
        stats["skip_reasons"] = result.skip_reasons()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"{args.file}: {stats['rows']} rows ({stats['changed']} with correction != answer), "
          f"{stats['skipped']} skipped")
    for reason, count in stats.get("skip_reasons", {}).items():
        print(f"  skipped {count}: {reason}")
    for cat, count in stats.get("categories", {}).items():
        print(f"  category {cat}: {count}")
    for unit in ("chars", "tokens"):
        if unit in stats:
            print(f"{unit:>6}       p50    p90    p99    max")
            for f in _FIELDS:
                p = stats[unit][f]
                print(f"  {f:<10} {p['p50']:>6} {p['p90']:>6} {p['p99']:>6} {p['max']:>6}")
    return 0


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``"identity=0.2,redact=0.3"`` → ``{"identity": 0.2, "redact": 0.3}`` (unlisted categories get 0)."""
    if not text:
        return None
    mix: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            mix[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"cannot read {part!r}.", field="mix",
                              fix="write CATEGORY=WEIGHT pairs, e.g. identity=0.2,redact=0.3,arithmetic=0.2,refusal=0.3") from None
    return mix


def run_synth(args: argparse.Namespace) -> int:
    from . import write_jsonl
    from .synthetic import generate, sentences_from_hh_rlhf, splice_contacts, split_sentences

    sentences = None
    held: list[str] = []
    if args.hh_rlhf:
        from pathlib import Path

        if not Path(args.hh_rlhf).is_file():
            raise ConfigError(f"no such file {args.hh_rlhf!r}.", field="hh_rlhf",
                              fix="pass the HH-RLHF JSONL(.gz), e.g. shared/data/hh-rlhf-harmless-1700.jsonl.gz.")
        sentences, held = split_sentences(sentences_from_hh_rlhf(args.hh_rlhf))
    elif args.eval_out:
        from .synthetic import FALLBACK_SENTENCES

        sentences, held = split_sentences(FALLBACK_SENTENCES, 0.3)
    rows = generate(args.n, seed=args.seed, mix=parse_mix(args.mix), sentences=sentences)
    n = write_jsonl(rows, args.output)
    from .synthetic import CATEGORIES

    counts = {c: sum(1 for r in rows if r.category == c) for c in CATEGORIES}
    print(f"{n} synthetic rows written to {args.output} (seed {args.seed}): "
          + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    if args.eval_out:
        ev = splice_contacts(held, seed=args.seed, n=args.eval_n)
        print(f"{write_jsonl(ev, args.eval_out)} held-out splice rows written to {args.eval_out}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    import sys

    from .shards import merge_shards

    counts = merge_shards(args.shards, args.out, allow_partial=args.allow_partial)
    n = counts["shards"]
    what = f"{n} shard file{'s' if n != 1 else ''}" if counts["of"] > 1 else "an unsharded output"
    gaps = []
    if counts["missing_shards"]:
        listed = counts["missing_shards"]
        gaps.append(f"shard{'s' if len(listed) > 1 else ''} {', '.join(listed)} not given")
    if counts["short_shards"]:
        gaps.append(f"{sum(counts['short_shards'].values())} prompts of the given shards not generated "
                    "(or failed: see their .errors.jsonl)")
    if not gaps:
        print(f"{counts['rows']} rows from {what} (all {counts['of']} of one run) → {args.out}")
        return 0
    missing = counts["missing"]
    of = f"{counts['rows']} of {counts['total']}" if counts["total"] is not None else f"{counts['rows']}"
    print(f"warning: --allow-partial: {args.out} is INCOMPLETE: "
          + (f"{missing} prompts missing" if missing else "prompts missing") + f" ({'; '.join(gaps)}).",
          file=sys.stderr)
    print(f"PARTIAL merge: {of} prompts from {what} → {args.out} ({'; '.join(gaps)})")
    return 0
