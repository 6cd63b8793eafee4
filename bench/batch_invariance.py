"""How often a row's correction depends on which rows share its batch, and what avoiding it costs.

Greedy decoding is deterministic for a given batch, but not across batches: padding, the batch's
shape and (in the lean loop) the widths of other rows' speculative drafts change the order of
floating-point sums, and a near-tie between two tokens can flip (issue 21 item 9: a resumed
``aligner generate`` differed from an uninterrupted run in 2 of 200 rows, a shard merge in 1).

Measured in one run, on held-out synthetic Q-A rows (``bench/correct_speed.py``'s) or, with
``--hh``, on HH-RLHF rows (their rejected answers: longer, varied text):
  * each row corrected alone (batch 1) — the reference;
  * the same rows in batches as ``Aligner.correct_batch`` forms them (similar lengths, 8 and 16),
    in shuffled batches of 8 (two seeds: other neighbours) and as a resumed run would (the first
    tenth already done, the rest bucketed);
  the flip rate is the share of rows whose correction differs from its correction alone;
  * ``decoding={"batch_invariant": True}`` (each row decoded on its own) in batches of 8 and 16:
    its flips (must be 0) and its speed against the batched default (rows/s, best of
    ``--repeats``, interleaved).

    python bench/batch_invariance.py [--n 200] [--grown] [--hh FILE.jsonl.gz] [--engine auto|hf] [--out runs/batch_invariance]

``--grown`` uses the ~30M benchmark corrector of ``bench/correct_speed.py`` (built and cached on
first use) instead of the embedded demo corrector.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def hh_pairs(path: Path, n: int, corrector) -> list[tuple[str, str]]:
    """The first ``n`` HH-RLHF rows as (question, rejected answer) whose question fits the
    corrector: real, varied answers."""
    import gzip

    from aligner.data.hh_rlhf import format_question, split_last_turn
    from aligner.contracts.errors import ConfigError

    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            prefix, answer = split_last_turn(json.loads(line)["rejected"])
            question = format_question(prefix)
            try:
                corrector.fit(question, "")
            except ConfigError:  # a conversation longer than the corrector's input budget
                continue
            if question.strip() and answer.strip():
                out.append((question, answer))
            if len(out) == n:
                break
    return out


def corrected(corrector, pairs, batches, decoding) -> tuple[list[str], float]:
    """Each pair's correction (input order) when corrected in ``batches`` (lists of positions),
    and the seconds it took."""
    out = [""] * len(pairs)
    t0 = time.perf_counter()
    for batch in batches:
        for i, res in zip(batch, corrector.correct_results([pairs[i] for i in batch], decoding=decoding)):
            out[i] = res.text
    return out, time.perf_counter() - t0


def compositions(pairs, seed: int = 0) -> dict[str, list[list[int]]]:
    from aligner.core.aligner import length_buckets

    n = len(pairs)

    def shuffled(size: int, s: int) -> list[list[int]]:
        order = list(range(n))
        random.Random(s).shuffle(order)
        return [order[i:i + size] for i in range(0, n, size)]

    done = n // 10
    rest = list(range(done, n))
    resumed = [[i] for i in range(done)] + [[rest[j] for j in b]
                                             for b in length_buckets([pairs[i] for i in rest], 8)]
    return {"bucketed 8": length_buckets(pairs, 8), "bucketed 16": length_buckets(pairs, 16),
            "shuffled 8 (seed 1)": shuffled(8, seed + 1), "shuffled 8 (seed 2)": shuffled(8, seed + 2),
            "resumed, bucketed 8": resumed}


def plot(path: Path, title: str, rates: dict[str, float]) -> bool:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(rates)
    ax.barh(names, [100 * rates[k] for k in names], color=["#c44" if "invariant" not in k else "#4a4" for k in names])
    ax.set_xlabel("rows whose correction differs from the row alone (%)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    import torch
    from tqdm import tqdm

    from aligner.correctors import load_corrector

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="held-out rows")
    ap.add_argument("--grown", action="store_true", help="the ~30M benchmark corrector instead of the demo one")
    ap.add_argument("--cache", default="/tmp/aligner-bench", help="where the grown corrector is kept")
    ap.add_argument("--hh", default=None, help="an HH-RLHF .jsonl.gz: correct its rows' rejected answers "
                    "(real, varied text) instead of the synthetic held-out rows")
    ap.add_argument("--engine", default="auto", choices=["auto", "hf"], help="decoding engine (auto: the lean loop)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the answer-relative cap")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each speed setting (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default="runs/batch_invariance", help="folder for results.json and the plot")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from correct_speed import grow_demo, held_out_pairs

    spec = str(grow_demo(Path(args.cache), 2, args.threads)) if args.grown else None
    decoding = {"engine": args.engine, **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {})}
    invariant = {**decoding, "batch_invariant": True}
    corrector = load_corrector(spec)
    pairs = hh_pairs(Path(args.hh), args.n, corrector) if args.hh else [(p.question, p.answer) for p in held_out_pairs(args.n)]
    corrector.correct_results(pairs[:2], decoding=decoding)  # warm-up
    alone, _ = corrected(corrector, pairs, [[i] for i in range(len(pairs))], decoding)
    rates: dict[str, float] = {}
    flipped: dict[str, list[int]] = {}
    for name, batches in tqdm(compositions(pairs).items(), desc="compositions"):
        texts, _ = corrected(corrector, pairs, batches, decoding)
        flipped[name] = [i for i, (a, b) in enumerate(zip(alone, texts)) if a != b]
        rates[name] = len(flipped[name]) / len(pairs)
    any_flip = sorted(set().union(*flipped.values()))
    speeds: dict[str, float] = {}
    for size in (8, 16):
        from aligner.core.aligner import length_buckets

        batches = length_buckets(pairs, size)
        best = {"batched": 0.0, "invariant": 0.0}
        for _ in range(args.repeats):  # interleaved: a shared machine's slow spells hit both
            for key, dec in (("batched", decoding), ("invariant", invariant)):
                texts, secs = corrected(corrector, pairs, batches, dec)
                best[key] = max(best[key], len(pairs) / secs)
                if key == "invariant":
                    name = f"batch_invariant, bucketed {size}"
                    flipped[name] = [i for i, (a, b) in enumerate(zip(alone, texts)) if a != b]
                    rates[name] = len(flipped[name]) / len(pairs)
        speeds[f"batch {size}"] = best["batched"]
        speeds[f"batch_invariant, batch {size}"] = best["invariant"]
    model = "grown 30M corrector" if args.grown else "demo corrector"
    rows = f"HH-RLHF rows of {Path(args.hh).name}" if args.hh else "held-out synthetic rows"
    print(f"{model}, {len(pairs)} {rows}, engine {args.engine}, {args.threads} torch thread(s)")
    for name, rate in rates.items():
        print(f"  {name:32s} {len(flipped[name]):4d} rows differ from alone ({100 * rate:.1f}%)")
    print(f"  in any batched composition      {len(any_flip):4d} rows ({100 * len(any_flip) / len(pairs):.1f}%)")
    for name, rps in speeds.items():
        print(f"  speed {name:26s} {rps:7.2f} rows/s")
    ratios = {f"invariant_vs_batched_{s}": round(speeds[f"batch_invariant, batch {s}"] / speeds[f"batch {s}"], 3)
              for s in (8, 16)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"model": model, "rows": len(pairs), "data": rows, "engine": args.engine, "flip_rates": rates,
              "any_flip": len(any_flip) / len(pairs), "rows_per_s": speeds, **ratios}
    tag = f"{'grown' if args.grown else 'demo'}-{'hh' if args.hh else 'synthetic'}-{args.engine}"
    (out / f"results-{tag}.json").write_text(json.dumps(result, indent=1))
    plot(out / f"flips-{tag}.png", f"{model}, {len(pairs)} {rows}, engine {args.engine}", rates)
    print(json.dumps({"any_flip_rate": round(len(any_flip) / len(pairs), 4), **ratios}))


if __name__ == "__main__":
    main()
