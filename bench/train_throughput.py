"""Corrector-training throughput: padded batches vs length grouping vs padding-free vs packing.

Q-A-C examples vary a lot in length (a one-line refusal next to a three-sentence answer copied
twice), so a padded batch spends much of its compute on pad tokens. This runs the real
``aligner train`` code path (:func:`aligner.train.corrector.train_corrector`) on the same tiny
model and the same synthetic data in four modes and prints *real* (non-pad) training tokens per
second, and each mode's ratio to plain padded batches measured in the same run — absolute numbers
on a shared machine are noise, ratios are not.

    python bench/train_throughput.py [--rows 512] [--steps 20] [--batch 16] [--hidden 128] [--layers 2]

Real-token counts are trl's ``num_tokens`` (attention-mask sum for padded batches, the flattened
length for padding-free / packed ones); time is the trainer's own ``train_runtime``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODES = {
    "padded": {},
    "padded+group_by_length": {"group_by_length": True},
    "padding_free": {"padding_free": True},
    "packing(bfd)": {"packing": True},
}


def run_mode(name: str, extra: dict, base: Path, data: Path, work: Path, args: argparse.Namespace) -> dict:
    from aligner.train.config import CorrectorTrainConfig
    from aligner.train.corrector import train_corrector

    cfg = CorrectorTrainConfig(data=str(data), base_model=str(base), output_dir=str(work / name.replace("(", "_").rstrip(")")),
                               epochs=1, max_steps=args.steps, batch_size=args.batch,
                               effective_batch_size=args.batch, learning_rate=1e-3, max_length=args.max_length,
                               logging_steps=1, save_steps=10_000, progress=False, bf16=False,
                               torch_threads=args.threads, seed=0, **extra)
    result = train_corrector(cfg)
    runtime = next(r["train_runtime"] for r in reversed(result.history) if "train_runtime" in r)
    tokens = max(r.get("num_tokens", 0) for r in result.history)
    return {"mode": name, "tokens": int(tokens), "seconds": float(runtime), "tokens_per_s": tokens / runtime,
            "final_loss": next((r["loss"] for r in reversed(result.history) if "loss" in r), float("nan"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=512, help="synthetic Q-A-C rows")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per mode")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = ap.parse_args(argv)

    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate
    from aligner.contracts.templates import get_template
    from aligner.train.tiny import build_model, train_tokenizer
    from aligner.correctors.checkpoint import save_corrector

    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        work = Path(tmp)
        rows = generate(args.rows, seed=0)
        data = work / "train.jsonl"
        write_jsonl([r.to_dict() for r in rows], data)
        tpl = get_template(None)
        tok = train_tokenizer([tpl.render(r.question, r.answer) + " " + r.correction for r in rows], vocab_size=1024)
        base = save_corrector(build_model(tok, hidden_size=args.hidden, layers=args.layers, context=1024), tok,
                              work / "base", template=tpl.name)
        results = [run_mode(m, MODES[m], base, data, work, args) for m in args.modes]

    ref = next((r for r in results if r["mode"] == "padded"), results[0])
    print(f"\ncorrector SFT throughput ({args.rows} synthetic rows, {args.steps} steps × batch {args.batch}, "
          f"Llama hidden {args.hidden} × {args.layers} layers, {args.threads} threads)")
    print(f"{'mode':<24}{'real tokens':>12}{'seconds':>10}{'tokens/s':>11}{'× padded':>10}")
    for r in results:
        print(f"{r['mode']:<24}{r['tokens']:>12}{r['seconds']:>10.2f}{r['tokens_per_s']:>11.0f}"
              f"{r['tokens_per_s'] / ref['tokens_per_s']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
