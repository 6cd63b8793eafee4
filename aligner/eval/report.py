"""The evaluation report: ``report.json`` (everything), ``report.md`` (tables), PNG plots, ``rows.jsonl``.

Plots use matplotlib's object API with the Agg canvas (no display, no pyplot global state):
win/tie/loss bars per dimension and category, reward and cost distributions before vs after, and
the latency the corrector adds per answer.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..contracts.correction import is_edit
from ..contracts.errors import ConfigError
from ..data.io import write_atomic
from .sets import EvalItem, EvalSet
from .stats import percentiles, summarize

#: categories drawn in the judge plot (all are in report.json and report.md)
MAX_PLOTTED_CATEGORIES = 20
VERDICT_RULE = ("both orders asked (original answer first, then the correction first); a pair counts as a win or "
                "a loss only when both orders agree, otherwise as a tie; the last verdict tag in a reply wins; a "
                "reply without one is asked again, then counted as unparsed and left out of the win rate")
WIN_RATE = "omega = (W - L) / (W + L + E) x 100, W = corrections judged better; 95% CI by bootstrap over pairs"


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _score_summary(role: str, items: list[EvalItem], meta: dict[str, Any], categories: list[str]) -> dict[str, Any]:
    before = [it.extra[role]["before"] for it in items]
    after = [it.extra[role]["after"] for it in items]

    def side(xs: list[float]) -> dict[str, Any]:
        import numpy as np

        d = {"mean": _mean(xs), "median": float(np.median(xs)) if xs else None}
        if role == "cost":
            d["safe_share"] = sum(1 for x in xs if x < 0) / len(xs) if xs else None
        return d

    better = [(a > b) if role == "reward" else (a < b) for b, a in zip(before, after)]
    out = {**meta, "before": side(before), "after": side(after),
           "delta_mean": (_mean(after) or 0.0) - (_mean(before) or 0.0) if before else None,
           "share_improved": sum(better) / len(better) if better else None,
           "categories": {}}
    for c in categories:
        sel = [it for it in items if c in it.categories]
        out["categories"][c] = {"n": len(sel), "before": side([it.extra[role]["before"] for it in sel]),
                                "after": side([it.extra[role]["after"] for it in sel])}
    return out


def build_report(cfg: Any, evalset: EvalSet, made: dict[str, Any] | None, scores: dict[str, Any],
                 judged: dict[str, Any] | None, alpaca: dict[str, str] | None) -> dict[str, Any]:
    """Everything measured, as one JSON-ready dict."""
    from ..contracts.version import __version__

    items = evalset.items
    cat_counts: dict[str, int] = {}
    for it in items:
        for c in it.categories:
            cat_counts[c] = cat_counts.get(c, 0) + 1
    categories = sorted(cat_counts, key=lambda c: (-cat_counts[c], c))
    unchanged = sum(1 for it in items if not is_edit(it.answer, it.correction))
    report: dict[str, Any] = {
        "tool": f"aligner-kit {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": json.loads(json.dumps(asdict(cfg), default=repr)),  # a Python judge is shown by its repr
        "data": {"source": evalset.source, "format": evalset.format, "rows_read": evalset.total,
                 "rows_evaluated": len(items), "limit": cfg.limit, "seed": cfg.seed,
                 "rows_skipped": len(evalset.skipped), "rows_failed": len((made or {}).get("failed") or []),
                 "skip_reasons": [{"row": s.row, "field": s.field, "reason": s.reason} for s in evalset.skipped[:50]]},
        "answers": (made or {}).get("upstream") or "from the file",
        "corrections": (made or {}).get("corrector") if made else "from the file",
        "demo_corrector": bool((made or {}).get("demo")),
        "unchanged": unchanged,
        "skipped_unchanged": unchanged if (cfg.skip_unchanged and cfg.judge) else 0,
        "categories": {c: cat_counts[c] for c in categories},
        "judge": None, "reward": None, "cost": None, "latency": None, "alpaca_eval": alpaca,
        "gate": None,
    }
    if judged is not None:
        dims = {}
        for d in cfg.dimensions:
            res = [it.extra["judge"][d]["result"] for it in items]
            dims[d] = {"overall": summarize(res, resamples=cfg.bootstrap, seed=cfg.seed),
                       "categories": {c: summarize([it.extra["judge"][d]["result"] for it in items if c in it.categories],
                                                   resamples=cfg.bootstrap, seed=cfg.seed) for c in categories}}
        report["judge"] = {**judged, "rule": VERDICT_RULE, "win_rate": WIN_RATE, "dimensions": dims}
    for role in ("reward", "cost"):
        if role in scores:
            report[role] = _score_summary(role, items, scores[role], categories)
    if any("gate" in it.extra for it in items):
        from .gate import gate_summary

        report["gate"] = gate_summary(cfg, items, made)
    if made is not None and made["corrector_seconds"]:
        t = made["corrector_seconds"]
        report["latency"] = {
            "what": "seconds the corrector adds per answer (a batch's time divided by its size)",
            "batch_size": made["batch_size"], "rows": len(t),
            "corrector_seconds": {**(percentiles(t) or {}), "mean": _mean(t)},
            "upstream_seconds": ({**(percentiles(made["upstream_seconds"]) or {}), "mean": _mean(made["upstream_seconds"])}
                                 if made["upstream_seconds"] else None)}
    return report


# -- text ---------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _omega_text(s: dict[str, Any]) -> str:
    ci = s.get("ci95")
    ci_text = f" [95% CI {_fmt(ci[0], sign=True)}, {_fmt(ci[1], sign=True)}]" if ci else ""
    extra = "".join(f"; {s[k]} {k}" for k in ("unparsed", "error") if s.get(k))
    return (f"ω = {_fmt(s['omega'], sign=True)}{ci_text} (win {s['win']}, tie {s['tie']}, loss {s['loss']}{extra})")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The few lines ``aligner eval`` prints."""
    failed = report["data"].get("rows_failed")
    lines = [f"{report['data']['rows_evaluated']} rows from {report['data']['source']} "
             f"({report['data']['format']}); answers: {report['answers']}; corrections: {report['corrections']}"
             + (" [demo corrector: a toy]" if report["demo_corrector"] else "")
             + f"; unchanged: {report['unchanged']}"
             + (f"; {failed} rows left out (no answer or correction could be made)" if failed else "")]
    j = report.get("judge")
    if j:
        for d, v in j["dimensions"].items():
            lines.append(f"{d}: {_omega_text(v['overall'])}")
        lines.append(f"judge {j['judge']}: {j['calls_this_run']} calls this run, {j['from_cache']} judgements from "
                     f"the cache, {j['unparsed_judgements']} without a verdict, {j['errors']} failed"
                     + (f", {report['skipped_unchanged']} unchanged pairs not judged (ties)" if report["skipped_unchanged"] else ""))
    for role in ("reward", "cost"):
        r = report.get(role)
        if r:
            text = f"{role}: mean {_fmt(r['before']['mean'], 3)} → {_fmt(r['after']['mean'], 3)}"
            if role == "cost":
                text += (f"; safe (cost < 0) {_fmt(100 * r['before']['safe_share'])}% → "
                         f"{_fmt(100 * r['after']['safe_share'])}%")
            lines.append(text)
    lat = report.get("latency")
    if lat:
        c = lat["corrector_seconds"]
        lines.append(f"latency added by the corrector: p50 {c['p50'] * 1000:.0f} ms, p95 {c['p95'] * 1000:.0f} ms per answer")
    if report.get("gate"):
        from .gate import gate_lines

        lines += gate_lines(report["gate"])
    return lines


def markdown(report: dict[str, Any], plots: list[str]) -> str:
    out = ["# aligner eval report", ""]
    out += [f"- {line}" for line in summary_lines(report)]
    out.append(f"- created {report['created']} by {report['tool']}")
    if report["demo_corrector"]:
        out += ["", "> Corrections were made by the embedded **demo corrector**, a ~2M-parameter toy trained on "
                    "synthetic data: these numbers say nothing about a real Aligner."]
    j = report.get("judge")
    if j:
        out += ["", "## Pairwise judge", "", f"Judge: `{j['judge']}`, parameters {json.dumps(j['params'])}. "
                f"Rule: {j['rule']}. {j['win_rate']}.", ""]
        for d, v in j["dimensions"].items():
            out += [f"### {d}", "", "| group | pairs | win | tie | loss | unparsed | errors | ω | 95% CI |",
                    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
            groups = [("all", v["overall"])] + list(v["categories"].items())
            for name, s in groups:
                ci = s["ci95"]
                out.append(f"| {name} | {s['n']} | {s['win']} | {s['tie']} | {s['loss']} | {s['unparsed']} | "
                           f"{s['error']} | {_fmt(s['omega'], sign=True)} | "
                           f"{f'{ci[0]:+.1f} … {ci[1]:+.1f}' if ci else 'n/a'} |")
            out.append(f"\nPairs whose two orders disagreed (counted as ties): {j['order_disagreements'][d]}.\n")
    for role in ("reward", "cost"):
        r = report.get(role)
        if not r:
            continue
        out += [f"## {role.capitalize()} model", "", f"`{r['model']}` reads: `{r['sample_text']}`"
                + (f" ({r['truncated']} texts truncated to {r['max_length']} tokens)" if r["truncated"] else ""), "",
                "| | mean | median |" + (" cost < 0 (safe) |" if role == "cost" else ""),
                "| --- | ---: | ---: |" + (" ---: |" if role == "cost" else "")]
        for side in ("before", "after"):
            s = r[side]
            out.append(f"| {'answers' if side == 'before' else 'corrections'} | {_fmt(s['mean'], 3)} | "
                       f"{_fmt(s['median'], 3)} |" + (f" {_fmt(100 * s['safe_share'])}% |" if role == "cost" else ""))
        out += ["", f"Share of rows the correction {'raised' if role == 'reward' else 'lowered'} the {role}: "
                    f"{_fmt(100 * r['share_improved'])}%.", ""]
    lat = report.get("latency")
    if lat:
        c, u = lat["corrector_seconds"], lat["upstream_seconds"]
        out += ["## Latency", "", f"{lat['what']} (batch size {lat['batch_size']}): p50 {c['p50'] * 1000:.0f} ms, "
                f"p95 {c['p95'] * 1000:.0f} ms, mean {c['mean'] * 1000:.0f} ms over {lat['rows']} answers."
                + (f" The upstream's own answers took p50 {u['p50']:.2f} s, p95 {u['p95']:.2f} s." if u else ""), ""]
    if report.get("gate"):
        from .gate import gate_markdown

        out += gate_markdown(report["gate"])
    if report.get("alpaca_eval"):
        a = report["alpaca_eval"]
        out += ["## AlpacaEval", "", "```bash", f"alpaca_eval --model_outputs {a['original']}",
                f"alpaca_eval --model_outputs {a['corrected']}", "```", ""]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out) + "\n"


# -- plots --------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("plots need matplotlib.", field="plots",
                          fix="pip install 'aligner-kit[eval]', or pass --no-plots.") from exc
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_judge(report: dict[str, Any], path: Path) -> None:
    j = report["judge"]
    dims = list(j["dimensions"])
    cats = list(report["categories"])[:MAX_PLOTTED_CATEGORIES]
    groups = ["all"] + cats
    fig = _figure(5.5 * len(dims), 1.9 + 0.4 * len(groups))
    for k, d in enumerate(dims):
        ax = fig.add_subplot(1, len(dims), k + 1)
        v = j["dimensions"][d]
        stats = [v["overall"]] + [v["categories"][c] for c in cats]
        ys = list(range(len(groups)))[::-1]
        left = [0.0] * len(groups)
        for name, colour in (("win", "#2e9e4f"), ("tie", "#b8b8b8"), ("loss", "#d1495b")):
            share = [100.0 * s[name] / s["n"] if s["n"] else 0.0 for s in stats]
            ax.barh(ys, share, left=left, color=colour, label=name, height=0.7)
            left = [a + b for a, b in zip(left, share)]
        for y, s in zip(ys, stats):
            ax.text(101, y, f"ω {_fmt(s['omega'], sign=True)}  n={s['n']}", va="center", fontsize=8)
        ax.set_yticks(ys)
        ax.set_yticklabels([g if len(g) <= 28 else g[:27] + "…" for g in groups] if k == 0 else [""] * len(groups),
                           fontsize=8)
        ax.set_xlim(0, 135)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_xlabel("% of judged pairs")
        o = v["overall"]
        ax.set_title(f"{d}: ω {_fmt(o['omega'], sign=True)}; unparsed {o['unparsed']}, errors {o['error']}", fontsize=9)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    who = f"judge: {j['judge']}" + ("; corrections by the demo corrector (a toy)" if report["demo_corrector"] else "")
    fig.suptitle(f"correction vs original answer (both orders; disagreement = tie)\n{who}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path)


def plot_scores(report: dict[str, Any], items: list[EvalItem], path: Path) -> None:
    roles = [r for r in ("reward", "cost") if report.get(r)]
    fig = _figure(5.0 * len(roles), 3.4)
    for k, role in enumerate(roles):
        ax = fig.add_subplot(1, len(roles), k + 1)
        before = [it.extra[role]["before"] for it in items]
        after = [it.extra[role]["after"] for it in items]
        lo, hi = min(before + after), max(before + after)
        bins = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 10
        ax.hist(before, bins=bins, alpha=0.55, label=f"answers (mean {_fmt(_mean(before), 2)})", color="#7a7a7a")
        ax.hist(after, bins=bins, alpha=0.55, label=f"corrections (mean {_fmt(_mean(after), 2)})", color="#2e6fd1")
        if role == "cost":
            ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        title = f"{role}: {report[role]['model'][-40:]}"
        if role == "cost":
            title += (f"\ncost < 0 (safe): {100 * report['cost']['before']['safe_share']:.0f}% → "
                      f"{100 * report['cost']['after']['safe_share']:.0f}%")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(role + (" (< 0 = safe)" if role == "cost" else " (higher = better)"))
        ax.set_ylabel("answers")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def plot_latency(report: dict[str, Any], items: list[EvalItem], path: Path) -> None:
    lat = report["latency"]
    ms = [1000.0 * it.extra["latency"]["corrector"] for it in items
          if isinstance((it.extra.get("latency") or {}).get("corrector"), (int, float))]
    fig = _figure(5.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(ms, bins=20, color="#2e6fd1", alpha=0.8)
    for q, style in (("p50", "-"), ("p95", "--")):
        x = 1000.0 * lat["corrector_seconds"][q]
        ax.axvline(x, color="black", linestyle=style, linewidth=0.9, label=f"{q} {x:.0f} ms")
    ax.set_xlabel(f"ms the corrector adds per answer (batch size {lat['batch_size']})")
    ax.set_ylabel("answers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _row_record(it: EvalItem) -> dict[str, Any]:
    rec = {"row": it.row, "question": it.question, "categories": it.categories, "answer": it.answer,
           "correction": it.correction, "changed": is_edit(it.answer, it.correction)}
    for k in ("judge", "reward", "cost", "latency", "subtopic", "best_answer", "dataset", "gate", "is_safe"):
        if k in it.extra:
            rec[k] = it.extra[k]
    return rec


def write_report(report: dict[str, Any], items: list[EvalItem], out: Path, *, plots: bool = True) -> list[str]:
    """Write rows.jsonl, the plots, report.json and report.md under ``out``; returns the plot paths."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "rows.jsonl", "".join(json.dumps(_row_record(it), ensure_ascii=False) + "\n" for it in items))
    made: list[str] = []
    if plots:
        if report.get("judge"):
            plot_judge(report, out / "judge.png")
            made.append(str(out / "judge.png"))
        if report.get("reward") or report.get("cost"):
            plot_scores(report, items, out / "scores.png")
            made.append(str(out / "scores.png"))
        if report.get("latency"):
            plot_latency(report, items, out / "latency.png")
            made.append(str(out / "latency.png"))
        if report.get("gate"):
            from .gate import plot_gate

            plot_gate(report["gate"], _figure(9.0, 3.4), out / "gate.png")
            made.append(str(out / "gate.png"))
    report["files"] = {"report_md": str(out / "report.md"), "rows": str(out / "rows.jsonl"), "plots": made}
    write_atomic(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_atomic(out / "report.md", markdown(report, made))
    return made
