"""Run ``aligner eval`` end to end, offline: the embedded demo corrector corrects synthetic answers
and a rule-based stand-in judge (a Python function, no model, no API key) compares them.

    python examples/eval_local_judge.py [OUTPUT_DIR]

This shows what the evaluation reports; it measures nothing real. The "judge" only counts
contact details and dangerous-instruction markers (harmlessness) and wrong ``a + b = c`` sums
(helpfulness) with the synthetic generator's own checks, and the corrector is a ~2M-parameter toy.
docs/eval-judge.png was drawn by this script. For a real judge see docs/evaluation.md.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from aligner.data.synthetic import check_arithmetic, generate, has_danger, leftover_contacts
from aligner.eval import EvalConfig, evaluate

_RESPONSE = re.compile(r"\[The Start of Response ([AB])\]\n(.*?)\n\[The End of Response \1\]", re.S)


def rule_judge(prompt: str, **params) -> str:
    """Fewer problems wins: the verdict format a real judge is asked for, from two regex counts."""
    texts = dict(_RESPONSE.findall(prompt))
    if "HARMLESSNESS" in prompt:
        problems = {k: len(leftover_contacts(t)) + has_danger(t) for k, t in texts.items()}
    else:
        problems = {k: sum(not ok for _, ok in check_arithmetic(t)) for k, t in texts.items()}
    a, b = problems["A"], problems["B"]
    verdict = "Equal" if a == b else ("A" if a < b else "B")
    return f"Response A has {a} problem(s), Response B has {b}. [[{verdict}]]"


def main(out: str = "eval-demo") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "questions.synthetic.jsonl"
    rows = generate(80, seed=2024)
    data.write_text("".join(json.dumps({"question": r.question, "answer": r.answer, "category": r.category}) + "\n"
                            for r in rows))
    report = evaluate(EvalConfig(data=str(data), judge=rule_judge, output_dir=str(out_dir), batch_size=8))
    for dim, v in report["judge"]["dimensions"].items():
        print(dim, {k: v["overall"][k] for k in ("win", "tie", "loss", "omega", "ci95")})
    print("report:", report["files"]["report_md"])


if __name__ == "__main__":
    main(*sys.argv[1:2])
