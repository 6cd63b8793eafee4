"""Which tokenizer and shape serve copying best within 5 MB? Short equal-budget runs (issue 14, item 2).

``python -m aligner.train.demo_study --work /work/rebuild14 --steps 300 --minutes 12``

Each choice gets its own tokenizer (trained on the same rows) and a randomly initialised Llama, and
trains from scratch through :func:`aligner.train.corrector.train_corrector` on the same copy-curriculum
rows (the rebuild's stage-1 file) for the same number of optimizer steps and batch (so the same
examples), each capped by the same wall clock. They are compared on the rebuild's held-out sets in
**bits per character** of the right correction under teacher forcing — a measure that does not
depend on how a tokenizer cuts text, and which moves long before a from-scratch model copies a whole
answer exactly — plus greedy exact copy of the hand-written fine answers, size and parameters.
A few hundred steps is an early-training proxy, not the final quality of a choice: the report says so.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from aligner.train.demo_recipe import SHAPES, TEMPLATE

CHOICES = SHAPES  # the rebuild's own choices (``--shape``)


def build(work: Path, name: str, train_file: Path) -> Path:
    """Tokenizer + random init for one choice, saved under ``work/study/NAME/init``."""
    from aligner.data import load
    from aligner.contracts.templates import get_template
    from aligner.train.tiny import build_model, train_tokenizer
    from aligner.correctors.checkpoint import save_corrector

    choice = CHOICES[name]
    tpl = get_template(TEMPLATE)
    rows = load(str(train_file)).rows[:8000]
    texts = [tpl.render(r.question, r.answer) + " " + r.correction for r in rows]
    tok = train_tokenizer(texts, vocab_size=choice["vocab"], split_digits=True)
    net = build_model(tok, "causal", seed=0, **choice["model"])
    return save_corrector(net, tok, work / "study" / name / "init", template=TEMPLATE)


def bits_per_char(model_dir: Path, rows: list[Any], max_length: int) -> float:
    """Teacher-forced cross-entropy of each right correction (and its EOS), in bits per character."""
    import torch

    from aligner.correctors import load_corrector
    from aligner.contracts.templates import get_template
    from aligner.train.prepare import tokenize_example

    corrector = load_corrector(str(model_dir), device="cpu")
    model, tok = corrector.generator.model, corrector.generator.tokenizer
    tpl = get_template(TEMPLATE)
    nats, chars = 0.0, 0
    with torch.no_grad():
        for r in rows:
            ex = tokenize_example(tok, tpl, r.question, r.answer, r.correction, max_length=max_length)
            if ex is None:
                continue
            ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
            logits = model(input_ids=ids).logits[0, :-1]
            target = labels[0, 1:]
            mask = target != -100
            nats += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
            chars += len(" " + r.correction) + 1
    return round(nats / math.log(2) / max(1, chars), 4)


def _generation_scores(model_dir: Path, rows: list[Any]) -> dict[str, Any]:
    """Greedy exact copy of the hand-written fine answers, with the degenerate-output fallback off (a
    fallback hands the answer back unchanged, which would count a runaway model as a perfect copier)."""
    from aligner.correctors import load_corrector
    from aligner.data.synthetic import exact_copy
    from aligner.train.demo_measures import raw_decoding

    corrector = load_corrector(str(model_dir), device="cpu", decoding={**raw_decoding(), "max_new_tokens": 120})
    preds = corrector.correct_batch([(r.question, r.answer) for r in rows])
    return {"exact_copy_fine_hand": round(sum(exact_copy(r.answer, p) for r, p in zip(rows, preds)) / len(preds), 4),
            "decoding": "raw", "example": {"answer": rows[0].answer, "got": preds[0]}}


def study(work: Path, names: list[str], steps: int, minutes: float, threads: int, batch: int = 16) -> dict[str, Any]:
    """Train each choice for ``steps`` (capped at ``minutes``) and score it; results in ``work/study/results.json``."""
    import torch

    from aligner.correctors import load_corrector
    from aligner.data import load
    from aligner.train.config import CorrectorTrainConfig
    from aligner.train.corrector import train_corrector

    torch.set_num_threads(threads)
    out_file = work / "study" / "results.json"
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    train_file = work / "data" / "train.jsonl"
    sets = {"fine_hand": [r for r in load(str(work / "data" / "eval_hand_fine.jsonl")).rows],
            "fine_hh": [r for r in load(str(work / "data" / "eval_splice.jsonl")).rows if r.category == "identity"][:40],
            "splice_hh": [r for r in load(str(work / "data" / "eval_splice.jsonl")).rows if r.category == "redact"][:40],
            "synthetic": load(str(work / "data" / "eval_synthetic.jsonl")).rows[:80]}
    for name in names:
        if name in results and results[name].get("decoding") == "raw":
            continue
        if name in results:  # trained already; re-score its generations without the degenerate-output fallback
            results[name].update(_generation_scores(work / "study" / name / "model", sets["fine_hand"]))
            out_file.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps({name: results[name]}, indent=1), flush=True)
            continue
        choice = CHOICES[name]
        init = work / "study" / name / "init"
        if not (init / "config.json").is_file():
            build(work, name, train_file)
        cfg = CorrectorTrainConfig(
            data=str(train_file), base_model=str(init), output_dir=str(work / "study" / name / "model"),
            template=TEMPLATE, epochs=1.0, max_steps=steps, max_length=choice["max_length"], learning_rate=2e-3,
            lr_scheduler="cosine", warmup_ratio=0.03, batch_size=batch, effective_batch_size=batch,
            weight_decay=0.01, identity_warmup=0.0, group_by_length=True, bf16=False, logging_steps=20,
            eval_steps=10_000, save_steps=100, save_total_limit=1, torch_threads=threads,
            max_train_minutes=minutes, save_dtype="float16", progress=False, resume=True, seed=0,
            extra_metadata={"study": name})
        t0 = time.time()
        train_corrector(cfg)
        wall = time.time() - t0
        model_dir = Path(cfg.output_dir)
        state = json.loads((model_dir / "train_state.json").read_text())
        corrector = load_corrector(str(model_dir), device="cpu")
        size = sum(p.stat().st_size for p in model_dir.iterdir()
                   if p.name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"))
        results[name] = {
            "vocab": choice["vocab"], "model": choice["model"],
            "parameters": sum(p.numel() for p in corrector.generator.model.parameters()),
            "size_mb": round(size / 1e6, 3), "steps": state.get("global_step"), "batch": batch,
            "train_wall_s": round(wall, 1), "threads": threads,
            "bits_per_char": {k: bits_per_char(model_dir, rs, choice["max_length"]) for k, rs in sets.items()},
            **_generation_scores(model_dir, sets["fine_hand"]),
            "pieces_per_word": round(sum(len(corrector.generator.tokenizer.tokenize(" " + r.answer))
                                         for r in sets["fine_hand"]) / sum(len(r.answer.split())
                                                                          for r in sets["fine_hand"]), 3),
        }
        out_file.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aligner.train.demo_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="a demo rebuild work folder (its data/ is used)")
    ap.add_argument("--choices", nargs="+", default=list(CHOICES), choices=list(CHOICES))
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per choice (the equal budget)")
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock cap per choice")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    study(Path(args.work), args.choices, args.steps, args.minutes, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
