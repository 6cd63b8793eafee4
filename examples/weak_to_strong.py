"""Weak-to-strong in miniature: a weak Aligner's corrections teach a "strong" model, round after round.

Everything is built here, on CPU, in minutes:

* the **strong** model: a tiny causal LM (random weights, a tokenizer trained on the data) first
  fine-tuned to answer like an unaligned model — on the ``answer`` side of synthetic rows
  (:mod:`aligner.data.synthetic`): answers that leak e-mail addresses, phone numbers, street
  addresses and card numbers, and arithmetic with wrong sums;
* the **weak Aligner**: the embedded demo corrector (a ~2M-parameter toy);

then, for ``--rounds`` rounds, the three commands of the weak-to-strong page (docs/weak-to-strong.md), through
their Python functions:

1. ``aligner generate`` — the strong model (``hf:PATH`` upstream) answers the training prompts and
   the Aligner corrects them (pipelined, resumable: re-running this script resumes);
2. ``aligner export --format sft`` — the corrections as trl prompt/completion rows;
3. ``aligner train-strong --method sft`` — trl's SFTTrainer on them, from the current strong model;

and the next round's upstream is the model just trained. Before round 1 and after every round the
strong model answers held-out prompts (other names, other numbers), which the Aligner corrects:

* ``changed``: share of held-out answers the Aligner still changes;
* ``leak``: share of held-out answers that contain a contact detail;
* ``wrong_sum``: share of held-out arithmetic answers with a wrong ``a op b = c``;
* ``mean_edit``: mean edit size (words removed + added) from answer to correction;
* ``heldout_loss``: per-token SFT loss on the held-out corrections made of the *unaligned* model's
  answers (a fixed target set), and ``pref_token_acc``: share of those held-out pairs where the
  model gives the correction a higher per-token log-probability than the unaligned answer.

The paper's claim is that the first two fall after round 1; the script reports what it measures,
whatever it is, in ``OUT/report.json`` and ``OUT/weak_to_strong.png``.

    python examples/weak_to_strong.py --out runs/w2s                    # 3 rounds, ~6-10 min on 2 busy cores
    python examples/weak_to_strong.py --out /tmp/w2s --rounds 1 --tiny  # the test's size, ~1 min
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PLAIN = "User: {question}\nAssistant:"  # the transcript the hf: upstream gives a model without a chat template


def synthetic_rows(n: int, seed: int) -> list[Any]:
    from aligner.data.synthetic import generate

    return generate(n, seed=seed, mix={"redact": 0.6, "arithmetic": 0.4}, variants={"redact": {"template": 1.0}})


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def strong_config(**kw: Any) -> Any:
    from aligner.train.config import StrongTrainConfig

    opts: dict[str, Any] = dict(method="sft", max_length=160, batch_size=8, effective_batch_size=8, logging_steps=10,
                                save_steps=100_000, progress=False, bf16=False, seed=0, torch_threads=1)
    opts.update(kw)
    return StrongTrainConfig(**opts)


def build_unaligned(out: Path, n: int, epochs: float, size: dict[str, int]) -> Path:
    """The strong model before weak-to-strong: a tiny causal LM trained on unaligned answers."""
    from aligner.train.tiny import make_tiny_corrector
    from aligner.train.strong import train_strong

    model_dir = out / "model-0"
    if (model_dir / "config.json").is_file():
        return model_dir
    rows = synthetic_rows(n, seed=100)
    texts = [f"{PLAIN.format(question=r.question)} {r.answer} {r.correction}" for r in rows]
    base = make_tiny_corrector(out / "random-init", texts, "causal", vocab_size=size["vocab"], context=192,
                               hidden_size=size["hidden"], layers=size["layers"], heads=4)
    data = write_jsonl([{"prompt": PLAIN.format(question=r.question), "completion": " " + r.answer} for r in rows],
                       out / "unaligned-sft.jsonl")
    train_strong(strong_config(data=str(data), base_model=str(base), output_dir=str(model_dir),
                               learning_rate=3e-3, epochs=epochs))
    return model_dir


def aligner_for(model_dir: Path, max_new_tokens: int) -> Any:
    """Upstream = the strong model (hf:PATH), corrector = the embedded demo corrector."""
    from aligner import Aligner
    from aligner.adapters.hf_local import HFUpstream

    upstream = HFUpstream(str(model_dir), decoding={"max_new_tokens": max_new_tokens}, max_concurrency=1)
    return Aligner(upstream, None, batch_size=8)


def run_generate(aligner: Any, prompts: Path, out: Path, model_dir: Path) -> list[dict]:
    from aligner.generate.commands import GenerateConfig, generate

    counts = generate(GenerateConfig(prompts=str(prompts), out=str(out), upstream=f"hf:{model_dir}",
                                     concurrency=1, batch_size=8, progress=False), aligner=aligner)
    if counts["failed"]:
        print(f"  {counts['failed']} rows failed (see {counts['errors_file']})", file=sys.stderr)
    return sorted(read_jsonl(out), key=lambda r: r["row"])


def measure(rows: list[dict]) -> dict[str, float]:
    from aligner.contracts.correction import edit_size
    from aligner.data.synthetic import check_arithmetic, leftover_contacts

    n = max(1, len(rows))
    sums = [r for r in rows if any(w in r["question"].lower() for w in ("compute", "plus", "minus", "times",
                                                                          "work out", "how much", "what is"))]
    wrong = [r for r in sums if any(not ok for _, ok in check_arithmetic(r["answer"]))]
    return {"rows": len(rows),
            "changed": sum(bool(r["changed"]) for r in rows) / n,
            "leak": sum(bool(leftover_contacts(r["answer"])) for r in rows) / n,
            "wrong_sum": len(wrong) / max(1, len(sums)),
            "mean_edit": sum(edit_size(r["answer"], r["correction"]) for r in rows) / n,
            "mean_answer_words": sum(len(r["answer"].split()) for r in rows) / n}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in report["rounds"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.2), dpi=90)
    for key, label in (("changed", "answers the Aligner changes"), ("leak", "answers leaking a contact"),
                       ("wrong_sum", "sums answered wrong"), ("pref_token_acc", "prefers correction (per token)")):
        a.plot(rounds, [r[key] for r in report["rounds"]], marker="o", label=label)
    a.set_xlabel("weak-to-strong rounds (0 = unaligned model)")
    a.set_ylabel("share of held-out prompts")
    a.set_ylim(-0.03, 1.03)
    a.set_xticks(rounds)
    a.legend(fontsize=7)
    b.plot(rounds, [r["heldout_loss"] for r in report["rounds"]], marker="o", color="tab:purple",
           label="held-out SFT loss on corrections")
    b2 = b.twinx()
    b2.plot(rounds, [r["mean_edit"] for r in report["rounds"]], marker="s", color="tab:gray", label="mean edit (words)")
    b.set_xlabel("rounds")
    b.set_ylabel("nats per token")
    b2.set_ylabel("words")
    b.set_xticks(rounds)
    lines = b.get_legend_handles_labels()[0] + b2.get_legend_handles_labels()[0]
    b.legend(lines, [ln.get_label() for ln in lines], fontsize=7)
    fig.suptitle("Weak-to-strong on toys: tiny strong model, demo corrector as the weak Aligner", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/weak-to-strong", help="working directory (re-running resumes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-prompts", type=int, default=96, help="prompts the strong model answers per round")
    ap.add_argument("--heldout", type=int, default=32, help="held-out prompts measured each round")
    ap.add_argument("--unaligned-rows", type=int, default=384, help="rows the unaligned model is trained on")
    ap.add_argument("--unaligned-epochs", type=float, default=10.0)
    ap.add_argument("--epochs", type=float, default=2.0, help="SFT epochs per round")
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--max-new-tokens", type=int, default=72, help="strong model's answer length cap")
    ap.add_argument("--tiny", action="store_true", help="the test's size: fewer rows, smaller model, short answers")
    ap.add_argument("--plot", default=None, help="PNG to write (default: OUT/weak_to_strong.png)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.train_prompts, args.heldout, args.unaligned_rows = 16, 8, 48
        args.unaligned_epochs, args.epochs, args.max_new_tokens = 3.0, 1.0, 24
    size = {"vocab": 384, "hidden": 48, "layers": 2} if args.tiny else {"vocab": 768, "hidden": 96, "layers": 2}

    import torch

    torch.set_num_threads(1)
    from aligner.data.export import export
    from aligner.train.strong import completion_loss, preference_accuracy, read_export, train_strong

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train_q = write_jsonl([{"question": r.question} for r in synthetic_rows(args.train_prompts, seed=1)],
                          out / "train-prompts.jsonl")
    held_q = write_jsonl([{"question": r.question} for r in synthetic_rows(args.heldout, seed=2)],
                         out / "heldout-prompts.jsonl")
    print(f"building the unaligned strong model ({args.unaligned_rows} rows) …", file=sys.stderr)
    model = build_unaligned(out, args.unaligned_rows, args.unaligned_epochs, size)
    unaligned = model
    report: dict[str, Any] = {"rounds": [], "config": {k: v for k, v in vars(args).items()}, "model_size": size}
    fixed: dict[str, list[dict]] = {}
    for rnd in range(args.rounds + 1):
        t0 = time.perf_counter()
        aligner = aligner_for(model, args.max_new_tokens)
        held = run_generate(aligner, held_q, out / f"round-{rnd}" / "heldout.jsonl", model)
        if rnd == 0:  # the fixed held-out targets: the Aligner's corrections of the unaligned model's answers
            for fmt in ("sft", "dpo"):
                try:
                    export(out / "round-0" / "heldout.jsonl", out / f"heldout-{fmt}.jsonl", fmt)
                    fixed[fmt] = read_export(str(out / f"heldout-{fmt}.jsonl"), fmt)["train"]
                except Exception as exc:  # e.g. DPO: no changed pair at all — reported, not hidden
                    print(f"  held-out {fmt} set: {exc}", file=sys.stderr)
                    fixed[fmt] = []
        m = measure(held)
        m["heldout_loss"] = completion_loss(model, fixed["sft"]) if fixed["sft"] else float("nan")
        pref = preference_accuracy(model, fixed["dpo"]) if fixed["dpo"] else {}
        m["pref_token_acc"] = pref.get("per_token_accuracy", float("nan"))
        entry: dict[str, Any] = {"round": rnd, "model": str(model), **{k: round(v, 4) for k, v in m.items()}}
        if rnd < args.rounds:
            rows = run_generate(aligner, train_q, out / f"round-{rnd}" / "generated.jsonl", model)
            summary = export(out / f"round-{rnd}" / "generated.jsonl", out / f"round-{rnd}" / "sft.jsonl", "sft")
            nxt = out / f"model-{rnd + 1}"
            if not (nxt / "config.json").is_file():
                result = train_strong(strong_config(data=str(out / f"round-{rnd}" / "sft.jsonl"), base_model=str(model),
                                                    output_dir=str(nxt), learning_rate=args.learning_rate,
                                                    epochs=args.epochs))
                entry["train_steps"] = result.global_step
            entry["train_rows"] = summary.train
            entry["train_changed"] = round(sum(bool(r["changed"]) for r in rows) / max(1, len(rows)), 4)
            model = nxt
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        report["rounds"].append(entry)
        print(f"round {rnd}: changed {m['changed']:.2f}, leak {m['leak']:.2f}, wrong sums {m['wrong_sum']:.2f}, "
              f"mean edit {m['mean_edit']:.1f} words, held-out loss {m['heldout_loss']:.3f}, "
              f"prefers correction {m['pref_token_acc']:.2f} ({entry['seconds']} s)", file=sys.stderr)
        del aligner
    report["unaligned_model"] = str(unaligned)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    png = Path(args.plot) if args.plot else out / "weak_to_strong.png"
    plot(report, png)
    print(json.dumps({"report": str(out / "report.json"), "plot": str(png), "seconds": report["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
