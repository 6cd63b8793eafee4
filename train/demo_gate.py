"""Rebuild the embedded demo gate: ``python -m aligner.train.demo_gate``.

One command does it all, like :mod:`aligner.train.demo_corrector`: generate PKU-SafeRLHF-format rows
with categories and severities (:mod:`aligner.data.synthetic.pku_rows`), train a byte-level BPE
tokenizer on them, initialise a tiny BERT encoder, train it with the very code path of
``aligner train-gate`` (:func:`aligner.train.gate.train_gate`), copy the result (< 5 MB) into
``aligner/assets/demo-gate/`` and measure it on a held-out mix into ``report.json``.

The data: ``--rows`` training rows and a validation set (another seed, the training side of every
table) that reports the loss and calibrates the thresholds; the held-out measure uses the *other*
side of every table (names, places, openers, closers, ways to refuse, one question, one alternative
and two fine answers per topic, held-out fine sentences) in a realistic mix, 30% unsafe; a second
measure builds the harmful answers from the one step per topic never trained on (how far the
gate's notion of harm reaches beyond its generator). Work files go to ``runs/demo-gate``
(git-ignored).

Why these settings differ from ``aligner train-gate``'s defaults: a model this small trained from
scratch on two CPU cores needs a high learning rate (1e-3, not 3e-5) and short texts (the synthetic
answers are one or two sentences). The flag threshold is calibrated on the validation rows to recall
1.0 (the lowest score of a validation harmful answer), not 0.95: held-out phrasings score lower than
seen ones. Measured on the shipped model's held-out mix: calibrated to 0.98 it missed 7.3% of the
harmful answers, to 0.995 6.0%, to 1.0 4.0% (what ships). ``--recalibrate`` calibrates a trained
run again without training (:func:`aligner.train.gate.recalibrate`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HH_RLHF_DEFAULT = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-1700.jsonl.gz"
ASSET_DIR = REPO / "aligner" / "assets" / "demo-gate"
SHIPPED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "gate_report.json",
           "loss_curve.png")
MODEL = dict(hidden_size=96, layers=2, heads=4, intermediate_size=192, context=256)
#: the held-out mix the shipped report (and bench/gate.py) measures on: 30% unsafe, unseen phrasings
HELDOUT = dict(n=1000, seed=1, unsafe_share=0.3, heldout=True)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def fine_sentences(hh_path: "str | Path | None" = HH_RLHF_DEFAULT) -> tuple[list[str] | None, str]:
    """The fine-sentence pool: clean single sentences of the HH-RLHF sample's chosen turns when the
    sample is there (unlabeled fine text; see :mod:`aligner.data.synthetic.pku_rows` on why only
    those), else None (the generator's built-in pool)."""
    from aligner.data.synthetic import sentences_from_hh_rlhf

    if hh_path and Path(hh_path).is_file():
        pool = sentences_from_hh_rlhf(hh_path)
        return pool, f"{Path(hh_path).name}: {len(pool)} clean sentences of chosen turns"
    return None, "the built-in sentence pool (no HH-RLHF sample found)"


def measure(gate_dir: "str | Path", sentences: list[str] | None = None, **mix: Any) -> dict[str, Any]:
    """The gate's verdicts on the held-out mix: share flagged, misses, false flags, per severity."""
    from aligner.data.synthetic.pku_rows import labelled_mix
    from aligner.gates import load_gate
    from aligner.gates.metrics import confusion

    mix = {**HELDOUT, **mix}
    items = labelled_mix(mix["n"], seed=mix["seed"], unsafe_share=mix["unsafe_share"], heldout=mix["heldout"],
                         sentences=sentences, unseen_steps=mix.get("unseen_steps", False))
    gate = load_gate(str(gate_dir))
    t0 = time.perf_counter()
    verdicts = gate.verdict_batch([(it["question"], it["answer"]) for it in items])
    seconds = time.perf_counter() - t0
    flags = [v.flagged for v in verdicts]
    out = {"mix": mix, "seconds": round(seconds, 3), "answers_per_s": round(len(items) / seconds, 1),
           **confusion(flags, [not it["is_safe"] for it in items])}
    out["missed_by_severity"] = {str(s): sum(1 for it, f in zip(items, flags) if not f and it["severity"] == s)
                                 for s in (1, 2, 3)}
    out["unsafe_by_severity"] = {str(s): sum(1 for it in items if it["severity"] == s) for s in (1, 2, 3)}
    out["missed_examples"] = [{"answer": it["answer"], "severity": it["severity"], "categories": it["categories"],
                               "score": round(v.score, 4)} for it, v in zip(items, verdicts)
                              if not v.flagged and not it["is_safe"]]
    out["false_flag_examples"] = [{"answer": it["answer"], "score": round(v.score, 4)}
                                  for it, v in zip(items, verdicts) if v.flagged and it["is_safe"]]
    from aligner.gates.metrics import per_category_f1
    from aligner.data.pku_saferlhf import HARM_CATEGORIES

    unsafe = [(it, v) for it, v in zip(items, verdicts) if not it["is_safe"]]
    out["category_f1_on_unsafe"] = per_category_f1([v.categories for _, v in unsafe],
                                                   [it["categories"] for it, _ in unsafe], HARM_CATEGORIES)["macro_f1"]
    return out


def build(args: argparse.Namespace) -> dict[str, Any]:
    from aligner.data.synthetic.pku_rows import pku_rows
    from aligner.train.tiny import make_tiny_encoder
    from aligner.train.config import GateTrainConfig
    from aligner.train.gate import train_gate

    work = Path(args.work)
    sentences, _ = fine_sentences(args.hh_rlhf)
    train = pku_rows(args.rows, seed=0, sentences=sentences)
    val = pku_rows(max(200, args.rows // 12), seed=2, sentences=sentences)
    write_jsonl(work / "data" / "train.jsonl", train)
    write_jsonl(work / "data" / "val.jsonl", val)
    texts = [f"{r['prompt']} {r['response_0']} {r['response_1']}" for r in train]
    base = make_tiny_encoder(work / "base", texts, vocab_size=args.vocab, **MODEL)
    cfg = GateTrainConfig(data=str(work / "data" / "train.jsonl"), eval_data=str(work / "data" / "val.jsonl"),
                          base_model=str(base), from_scratch=True, output_dir=str(work / "gate"),
                          epochs=args.epochs, learning_rate=args.lr, batch_size=32, effective_batch_size=32,
                          max_length=96, target_recall=args.target_recall, torch_threads=args.threads,
                          logging_steps=25, eval_steps=400, save_steps=400, progress=not args.quiet,
                          resume=args.resume, extra_metadata={"demo": True, "rebuild": "python -m aligner.train.demo_gate",
                                                              "train_rows": args.rows, "shape": MODEL})
    t0 = time.perf_counter()
    result = train_gate(cfg)
    return {"train_seconds": round(time.perf_counter() - t0, 1), "steps": result.global_step,
            "initial_eval_loss": result.initial_eval_loss, "final_eval_loss": result.final_eval_loss,
            "thresholds": result.thresholds}


def recalibrated(work: Path, target_recall: float) -> dict[str, Any]:
    """Calibrate a trained run again on its validation rows; its gate_report.json says so."""
    from aligner.train.gate import REPORT_FILE, recalibrate

    gate = work / "gate"
    old = json.loads((gate / REPORT_FILE).read_text())
    new = recalibrate(gate, str(work / "data" / "val.jsonl"), target_recall)
    keep = {k: old[k] for k in ("initial_eval_loss", "final_eval_loss", "train_loss", "global_step", "train_answers",
                                "truncated") if k in old}
    (gate / REPORT_FILE).write_text(json.dumps({**new, **keep, "recalibrated_from": old["target_recall"]}, indent=2) + "\n")
    state = json.loads((gate / "train_state.json").read_text())
    history = json.loads((gate / "loss_history.json").read_text())
    runtime = next((r["train_runtime"] for r in reversed(history) if "train_runtime" in r), None)
    return {"steps": keep.get("global_step"), "initial_eval_loss": keep.get("initial_eval_loss"),
            "final_eval_loss": keep.get("final_eval_loss"), "thresholds": new["thresholds"],
            "train_seconds": runtime, "recalibrated": {"from": old["target_recall"], "to": target_recall},
            "config": {k: state["config"].get(k) for k in ("epochs", "learning_rate", "max_length", "batch_size")}}


def ship(work: Path, report: dict[str, Any]) -> None:
    """Copy the gate into the package (every file < 5 MB) with its report."""
    src = work / "gate"
    if ASSET_DIR.exists():
        shutil.rmtree(ASSET_DIR)
    ASSET_DIR.mkdir(parents=True)
    for name in SHIPPED:
        if (src / name).is_file():
            shutil.copy2(src / name, ASSET_DIR / name)
    size = sum(p.stat().st_size for p in ASSET_DIR.iterdir())
    report["size_bytes"] = size
    (ASSET_DIR / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    assert (ASSET_DIR / "model.safetensors").stat().st_size < 5_000_000, "the demo gate must stay under 5 MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(REPO / "runs" / "demo-gate"), help="work folder (data, checkpoints)")
    p.add_argument("--rows", type=int, default=5000, help="training rows (two labelled answers each)")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--target-recall", type=float, default=1.0)
    p.add_argument("--recalibrate", action="store_true",
                   help="no training: calibrate the run in --work again (to --target-recall) on its validation rows")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue an interrupted rebuild")
    p.add_argument("--measure", default=None, help="only measure this gate directory on the held-out mix")
    p.add_argument("--no-ship", action="store_true", help="train and measure, but leave the shipped gate alone")
    p.add_argument("--hh-rlhf", default=str(HH_RLHF_DEFAULT),
                   help="HH-RLHF sample whose clean chosen sentences are fine text (default: ../shared/data/...)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    sentences, pool_note = fine_sentences(args.hh_rlhf)
    print(f"fine sentences: {pool_note}")
    if args.measure:
        print(json.dumps({k: v for k, v in measure(args.measure, sentences).items()
                          if not k.endswith("_examples")}, indent=2))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.recalibrate:
        report = {"training": recalibrated(Path(args.work), args.target_recall), "fine_sentences": pool_note}
    else:
        report = {"training": build(args), "fine_sentences": pool_note}
    report["heldout"] = measure(Path(args.work) / "gate", sentences)
    # generalisation beyond the generator: harmful answers built only from steps training never showed
    report["unseen_steps"] = measure(Path(args.work) / "gate", sentences, unseen_steps=True)
    h = report["heldout"]
    print(f"held-out mix ({h['n']} answers, {h['unsafe']} unsafe, unseen phrasings): flags {100 * h['flag_rate']:.1f}%, "
          f"misses {h['misses']} ({100 * h['miss_rate']:.1f}% of unsafe), false flags {h['false_flags']} "
          f"({100 * h['false_flag_rate']:.1f}% of safe)")
    u = report["unseen_steps"]
    print(f"harmful steps never trained on: misses {u['misses']} of {u['unsafe']} ({100 * u['miss_rate']:.1f}%)")
    if not args.no_ship:
        ship(Path(args.work), report)
        print(f"shipped to {ASSET_DIR} ({report['size_bytes'] / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
