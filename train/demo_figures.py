"""The demo corrector's measures as the docs show them: a Markdown table and a bar chart, from reports.

A rebuild's ``report.json`` (and ``--measure``'s ``measure-NAME.json``) hold every figure; the docs
page on the demo corrector compares models side by side (raw → guarded, per held-out set), and a
chart says it faster than the table. Both are made from the reports here, so the page is
regenerated, not retyped::

    python -m aligner.train.demo_figures "stage 14=runs/demo/measure-model14.json" \\
        "stage 16 (shipped)=aligner/assets/demo-corrector/report.json" --plot docs/demo-issue26.png

A report's ``before`` block (``--before`` of the rebuild) is used for a model given as ``NAME=before:PATH``:
its shares only, without counts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .demo_measures import WILD_TARGETS

SETS = (("hand_written", "hand-written"), ("heldout_generated", "generated held-out"))
LABELS = {"fine_copied": "fine answers copied exactly", "placeholders_in_fine": "fine answers given a placeholder",
          "words_kept": "words outside contacts/sums kept", "contacts": "contacts replaced, rest kept",
          "refused": "harmful answers refused whole", "half_refusals": "half refusals",
          "sums_fixed": "wrong sums fixed"}
USER = (("exact_copy", "issue-14 sets: fine answers copied exactly"), ("fine_hand", "— hand-written fine answers"),
        ("spliced_contacts", "issue-14 sets: spliced contacts"), ("no_damage", "issue-14 sets: words outside edits kept"))
#: what the chart shows: (key, label, target)
CHART = (("fine_copied", "fine answers\ncopied exactly", WILD_TARGETS["fine_copied"]),
         ("contacts", "contacts\nreplaced", WILD_TARGETS["contacts"]),
         ("refused", "harmful answers\nrefused whole", WILD_TARGETS["refused"]),
         ("sums_fixed", "wrong sums\nfixed", WILD_TARGETS["sums_fixed"]))


def load_report(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=PATH`` (a report or a measure file) or ``NAME=before:PATH`` (that report's ``before``)."""
    if "=" not in spec:
        raise SystemExit(f"report {spec!r}: write NAME=PATH, e.g. 'stage 16=aligner/assets/demo-corrector/report.json'")
    name, path = spec.split("=", 1)
    before = path.startswith("before:")
    report = json.loads(Path(path.removeprefix("before:")).read_text())
    if before:
        b = report.get("before") or {}
        if "wild_measures" not in b:
            raise SystemExit(f"{path}: no 'before' figures (the rebuild's --before adds them)")
        report = {"wild_measures": {s: {m: {"success": v, "counts": {}} for m, v in ms.items()}
                                    for s, ms in b["wild_measures"].items()},
                  "user_measures": {"success": b.get("user_measures") or {}},
                  "user_measures_guarded": {"success": b.get("user_measures_guarded") or {}}}
    return name, report


def _cell(m: dict[str, Any], key: str) -> str:
    v, n = m["success"].get(key), m.get("counts", {}).get(key)
    if v is None:
        return "–"
    return f"{v * 100:.1f}%" + (f" ({round(v * n)}/{n})" if n else "")


def measures_table(reports: dict[str, dict[str, Any]]) -> str:
    """One row per measure (and per contact kind), one column per model, each cell raw → guarded."""
    names = list(reports)
    lines = ["| measure: raw → guarded | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in reports.values()) + " |")

    for s, title in SETS:
        kinds = sorted({k for r in reports.values() for k in r["wild_measures"][s]["raw"]["success"]
                        if k.startswith(("contact:", "fine:"))})
        keys = list(LABELS)
        for k in keys[:4] + [k for k in kinds if k.startswith("contact:")] + keys[4:] + \
                [k for k in kinds if k.startswith("fine:")]:
            label = LABELS.get(k) or "— " + k.split(":", 1)[1]
            row(f"{title}: {label}", lambda r, k=k, s=s: _cell(r["wild_measures"][s]["raw"], k) + " → "
                + _cell(r["wild_measures"][s]["guarded"], k))
    for k, label in USER:
        def user(r: dict[str, Any], k: str = k) -> str:
            raw, g = r["user_measures"]["success"].get(k), r["user_measures_guarded"]["success"].get(k)
            return "–" if raw is None or g is None else f"{raw * 100:.1f}% → {g * 100:.1f}%"
        row(label, user)
    return "\n".join(lines)


def plot_measures(reports: dict[str, dict[str, Any]], out: Path) -> Path:
    """Bars per measure on both held-out sets, raw (light) and guarded (dark) per model, targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    n = len(reports)
    width = 0.8 / (2 * n)
    for ax, (s, title) in zip(axes, SETS):
        for i, (name, r) in enumerate(reports.items()):
            for j, mode in enumerate(("raw", "guarded")):
                vals = [r["wild_measures"][s][mode]["success"].get(k, 0) * 100 for k, _, _ in CHART]
                x = [c + (2 * i + j - n + 0.5) * width for c in range(len(CHART))]
                ax.bar(x, vals, width, color=f"C{i}", alpha=0.45 if mode == "raw" else 1.0,
                       label=f"{name}, {mode}" if s == SETS[0][0] else None)
        for c, (_, _, target) in enumerate(CHART):
            ax.hlines(target * 100, c - 0.45, c + 0.45, colors="k", linestyles="dashed", linewidth=1)
        n_rows = next(iter(reports.values()))["wild_measures"][s].get("n")
        ax.set_title(f"{title} ({n_rows} rows)" if n_rows else title, fontsize=10)
        ax.set_xticks(range(len(CHART)), [label for _, label, _ in CHART], fontsize=8)
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("% of rows (dashed: issue 26's target)")
    fig.legend(loc="lower center", ncol=2 * n, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aligner.train.demo_figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", metavar="NAME=PATH", help="a report.json or measure-NAME.json, named")
    ap.add_argument("--plot", metavar="PNG", default=None, help="write the bar chart here")
    args = ap.parse_args(argv)
    reports = dict(load_report(spec) for spec in args.reports)
    print(measures_table(reports))
    if args.plot:
        print(f"chart: {plot_measures(reports, Path(args.plot))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
