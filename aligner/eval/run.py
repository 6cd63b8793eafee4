"""The ``aligner eval`` pipeline: read the set, make answers and corrections, score, judge, report.

Answers and corrections are made by the resumable file job (:func:`aligner.core.batch.correct_file`) into
``OUTPUT_DIR/corrections.jsonl``, and judge verdicts are cached in SQLite, so a killed evaluation
run again with the same command redoes neither. What the file holds is used unless a model is named
to make it: ``--upstream`` answers every question, ``--corrector`` corrects every answer.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..contracts.correction import is_edit
from ..contracts.errors import ConfigError, DataError
from .config import EvalConfig
from .sets import EvalItem, EvalSet, load_eval_set


def _short(name: str) -> str:
    """A model's display name: the last folder of a local path, else the id as given."""
    p = Path(name)
    return p.name if p.is_absolute() or name.startswith(".") else name


def check_config(cfg: EvalConfig) -> None:
    """Errors a user can fix before any model loads."""
    if not cfg.data:
        raise ConfigError("no eval set given.", field="data",
                          fix="aligner eval --data questions.jsonl --judge openai/gpt-4-turbo (see --help).")
    if not (cfg.judge or cfg.reward_model or cfg.cost_model or cfg.alpaca_eval):
        raise ConfigError("nothing to measure: no judge, reward model, cost model or AlpacaEval export.", field="judge",
                          fix="pass --judge MODEL (pairwise win rate), --reward-model / --cost-model PATH, "
                              "or --alpaca-eval DIR.")
    if cfg.judge_model and not cfg.judge:
        raise ConfigError("--judge-model names the model at a --judge base URL, but no --judge was given.",
                          field="judge", fix="pass --judge http://host:port/v1 --judge-model NAME.")
    if not isinstance(cfg.bootstrap, int) or cfg.bootstrap < 1:
        raise ConfigError(f"must be a positive int, got {cfg.bootstrap!r}.", field="bootstrap", fix="e.g. --bootstrap 1000.")
    if cfg.judge:
        from .judge import check_dimensions

        cfg.dimensions = check_dimensions([cfg.dimensions] if isinstance(cfg.dimensions, str) else cfg.dimensions)


# -- answers and corrections --------------------------------------------------------------
def _corrections_meta(cfg: EvalConfig, evalset: EvalSet, questions_sha: str) -> dict[str, Any]:
    return {"data": evalset.source, "format": evalset.format, "limit": cfg.limit, "seed": cfg.seed,
            "questions_sha256": questions_sha, "upstream": cfg.upstream, "upstream_model": cfg.upstream_model,
            "corrector": cfg.corrector, "template": cfg.template, "paper_decoding": cfg.paper_decoding,
            "max_new_tokens": cfg.max_new_tokens,
            **({"gate": _spec_id(cfg.gate), "gate_threshold": cfg.gate_threshold, "gate_min_severity": cfg.gate_min_severity,
                "gate_on_error": cfg.gate_on_error} if cfg.gate else {})}


def _spec_id(spec: Any) -> Any:
    """A spec as it is recorded: a string as it is, a Python object (a gate function) by its name,
    so the same function resumes the same corrections."""
    if spec is None or isinstance(spec, str):
        return spec
    return ".".join(filter(None, [getattr(spec, "__module__", None), getattr(spec, "__qualname__", None)
                                  or type(spec).__name__]))


def make_corrections(cfg: EvalConfig, evalset: EvalSet, out: Path) -> dict[str, Any] | None:
    """Fill in answers (``--upstream``) and corrections (``--corrector``, or the demo corrector for
    rows without one). Returns who made them and the per-answer timings, or None when the file
    held everything."""
    items = evalset.items
    if not cfg.upstream:
        for it in items:
            if it.answer is None:
                raise DataError("no answer to evaluate.", source=it.source, row=it.row, unit=evalset.unit, field="answer",
                                fix="pass --upstream MODEL to have a model answer the questions, or use a file "
                                    "whose rows hold 'answer' (or 'response'/'output').")
    redo_all = bool(cfg.upstream or cfg.corrector)
    todo = [i for i, it in enumerate(items) if redo_all or it.correction is None]
    if not todo:
        return None
    from ..core.batch import correct_file

    lines = [json.dumps({"question": items[i].question} if cfg.upstream else
                        {"question": items[i].question, "answer": items[i].answer}, ensure_ascii=False) + "\n"
             for i in todo]
    text = "".join(lines)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    questions, corrections, meta_path = out / "questions.jsonl", out / "corrections.jsonl", out / "corrections.meta.json"
    meta = _corrections_meta(cfg, evalset, sha)
    if corrections.exists() and meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old != meta:
            changed = sorted(k for k in meta if old.get(k) != meta[k])
            raise ConfigError(f"{out} holds corrections made with other settings ({', '.join(changed)} differ), "
                              "so they cannot be resumed.", field="output_dir",
                              fix=f"pass another --output-dir, or delete {corrections} to make them again.")
    elif corrections.exists():
        corrections.unlink()  # no record of how it was made: never mix it with this run
    questions.write_text(text, encoding="utf-8")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    speed = None
    if len(_read_corrections(corrections)) < len(todo):  # all made: resume without loading any model
        aligner = cfg.build()
        from ..core.options import print_notes

        print_notes(aligner)
        try:
            t0 = time.perf_counter()
            counts = correct_file(aligner, questions, corrections, progress=cfg.progress)
            if counts["written"] == len(todo):  # every row made in this run: its speed is measured
                speed = {"rows": len(todo), "seconds": time.perf_counter() - t0}
            if cfg.gate and cfg.gate_compare:
                from .gate import compare_ungated

                speed = compare_ungated(aligner, questions, out, speed, progress=cfg.progress)
        finally:
            _close(aligner.upstream)
    made = _read_corrections(corrections)
    t_corr, t_up, failed, first = [], [], [], None
    for row, i in enumerate(todo):  # the job numbers the rows of questions.jsonl from 0
        rec, it = made.get(row), items[i]
        if rec is None:  # the upstream or the corrector failed on it (the job lists why)
            failed.append(i)
            continue
        if rec.get("question") != it.question:
            raise DataError(f'the row with "row": {row} does not match the eval set.', source=str(corrections),
                            field="question", fix=f"delete {corrections} and run again.")
        first = first or rec
        it.answer, it.correction = rec["answer"], rec["correction"]
        if rec.get("gate") is not None:
            it.extra["gate"] = rec["gate"]
        timings = rec.get("timings") or {}
        it.extra["latency"] = {k: timings.get(k) for k in ("upstream", "corrector")}
        if isinstance(timings.get("corrector"), (int, float)):
            t_corr.append(float(timings["corrector"]))
        if cfg.upstream and isinstance(timings.get("upstream"), (int, float)):
            t_up.append(float(timings["upstream"]))
    if first is None:
        raise DataError("no row could be answered and corrected.", source=str(corrections),
                        fix=f"see the reasons in {corrections}.errors.jsonl, fix the cause, and run again.")
    return {"corrector": first.get("corrector") or str(cfg.corrector),
            "demo": bool((first.get("metadata") or {}).get("demo")), "upstream": first.get("upstream") or None,
            "rows": len(todo) - len(failed), "failed": failed, "errors_file": f"{corrections}.errors.jsonl",
            "batch_size": cfg.batch_size, "corrector_seconds": t_corr, "upstream_seconds": t_up, "speed": speed}


def _close(upstream: Any) -> None:
    """Let an HTTP upstream close its connections (the others have nothing to close)."""
    close = getattr(upstream, "close", None)
    if callable(close):
        close()


def _read_corrections(path: Path) -> dict[int, dict[str, Any]]:
    """Rows the file job has written, by row number (a torn last line, from a kill, is not one)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # what follows the last newline is unfinished
    out = {}
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rec = json.loads(line)
                out[int(rec["row"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"not a corrected row ({exc}).", source=str(path), row=n,
                                fix=f"delete {path} and run again.") from exc
    return out


# -- reward and cost ----------------------------------------------------------------------
def score_all(cfg: EvalConfig, items: list[EvalItem]) -> dict[str, Any]:
    """Reward and cost of every answer and every correction (each model loaded, used, dropped)."""
    from ..runtime.scoring import SequenceScorer

    out: dict[str, Any] = {}
    for role, model_id in (("reward", cfg.reward_model), ("cost", cfg.cost_model)):
        if not model_id:
            continue
        scorer = SequenceScorer(model_id, role=role, device=cfg.device, batch_size=cfg.score_batch_size,
                                text_format=cfg.score_format)
        before = scorer.score([(it.question, it.answer) for it in items], progress=cfg.progress,
                              desc=f"{role}: answers")
        after = scorer.score([(it.question, it.correction) for it in items], progress=cfg.progress,
                             desc=f"{role}: corrections")
        for it, b, a in zip(items, before, after):
            it.extra[role] = {"before": b, "after": a}
        out[role] = {"model": model_id, "text_format": scorer.text_format, "truncated": scorer.truncated,
                     "max_length": scorer.max_length, "sample_text": scorer.text("{question}", "{answer}")}
        del scorer
    return out


# -- judge -------------------------------------------------------------------------------
def build_judge(cfg: EvalConfig, cache_path: Path) -> Any:
    from ..adapters.base import RetryPolicy, bare_message
    from ..adapters.resolve import resolve_upstream
    from .cache import JudgeCache
    from .judge import PairwiseJudge

    kw: dict[str, Any] = {"retry": RetryPolicy(max_retries=cfg.judge_max_retries, timeout=cfg.judge_timeout),
                          "max_concurrency": cfg.judge_concurrency}
    spec = cfg.judge.strip() if isinstance(cfg.judge, str) else cfg.judge  # the Python API takes any upstream
    if cfg.judge_api_base:
        if not isinstance(spec, str) or spec.startswith(("http://", "https://")):
            raise ConfigError("--judge-api-base is for a LiteLLM model string; a base-URL judge already names its server.",
                              field="judge_api_base", fix="drop --judge-api-base.")
        kw["api_base"] = cfg.judge_api_base
    try:
        upstream = resolve_upstream(spec, model=cfg.judge_model, **kw)
    except ConfigError as exc:
        field = "judge_model" if exc.field == "upstream_model" else ("judge" if exc.field == "upstream" else exc.field)
        raise ConfigError(bare_message(exc), field=field, fix=exc.fix) from exc
    if isinstance(spec, str):
        judge_id = "|".join([spec, cfg.judge_model or "", cfg.judge_api_base or ""])
    else:  # a function or an Upstream: named by what it is, so a cache survives across runs
        judge_id = "python:" + ".".join(filter(None, [getattr(spec, "__module__", None),
                                                      getattr(spec, "__qualname__", None) or upstream.name]))
    params = {"temperature": cfg.judge_temperature, "max_tokens": cfg.judge_max_tokens}
    return PairwiseJudge(upstream, judge_id, JudgeCache(cache_path), params=params, retries=cfg.judge_retries)


def judge_all(cfg: EvalConfig, items: list[EvalItem], judge: Any) -> dict[str, Any]:
    """Per-row verdicts in both orders and per-pair outcomes, stored on each item."""
    from .judge import ORDERS, both_orders, outcome

    tasks = []
    for i, it in enumerate(items):
        it.extra["judge"] = {}
        unchanged = not is_edit(it.answer, it.correction)
        for dim in cfg.dimensions:
            if cfg.skip_unchanged and unchanged:
                it.extra["judge"][dim] = {"AB": None, "BA": None, "result": "tie", "skipped_unchanged": True}
                continue
            for order in ORDERS:
                tasks.append(judge.task(i, dim, order, it.question, it.answer, it.correction))
    t0 = time.perf_counter()
    results = judge.run(tasks, progress=cfg.progress)
    seconds = time.perf_counter() - t0
    by_row: dict[tuple[int, str], dict[str, Any]] = {}
    for t in tasks:
        by_row.setdefault((t.row, t.dimension), {})[t.order] = results[t.key]
    disagreements = {d: 0 for d in cfg.dimensions}
    for (row, dim), res in by_row.items():
        ab, ba = res["AB"], res["BA"]
        if ab.error or ba.error:
            result = "error"
        else:
            o1, o2 = outcome(ab.verdict, "AB"), outcome(ba.verdict, "BA")
            result = both_orders(o1, o2)
            if o1 is not None and o2 is not None and o1 != o2:
                disagreements[dim] += 1
        items[row].extra["judge"][dim] = {"AB": ab.verdict, "BA": ba.verdict, "result": result,
                                          "calls": ab.calls + ba.calls}
    s = judge.stats
    name = cfg.judge if isinstance(cfg.judge, str) else judge.upstream.name
    return {"judge": name + (f" ({cfg.judge_model})" if cfg.judge_model else ""), "params": judge.params, "calls_this_run": s.calls, "http_attempts": judge.upstream.stats.attempts,
            "judgements": len({t.key for t in tasks}), "from_cache": s.cached, "unparsed_judgements": s.unparsed,
            "errors": s.errors, "error_samples": s.error_samples, "order_disagreements": disagreements,
            "retries_without_verdict": judge.retries, "seconds": round(seconds, 3), "cache": str(judge.cache.path)}


# -- the whole run ------------------------------------------------------------------------
def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run an evaluation and write its report; returns the report (what ``report.json`` holds)."""
    from .report import build_report, write_report

    check_config(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    evalset = load_eval_set(cfg.data, cfg.format, limit=cfg.limit, seed=cfg.seed, lenient=cfg.lenient,
                            split=cfg.split)
    made = make_corrections(cfg, evalset, out)
    if made and made["failed"]:
        drop = set(made["failed"])
        print(f"warning: {len(drop)} rows could not be answered or corrected and are left out of the evaluation "
              f"(reasons in {made['errors_file']}; run the same command again to retry them).", file=sys.stderr)
        evalset.items = [it for i, it in enumerate(evalset.items) if i not in drop]
    items = evalset.items
    scores = score_all(cfg, items) if (cfg.reward_model or cfg.cost_model) else {}
    judged = None
    if cfg.judge:
        judge = build_judge(cfg, Path(cfg.cache) if cfg.cache else out / "judge_cache.sqlite")
        try:
            judged = judge_all(cfg, items, judge)
        finally:
            judge.cache.close()
            _close(judge.upstream)
    alpaca = None
    if cfg.alpaca_eval:
        from .alpaca import write_model_outputs

        original = (made or {}).get("upstream") or cfg.upstream or next(
            (it.extra["generator"] for it in items if isinstance(it.extra.get("generator"), str)), "original")
        corrector = _short((made or {}).get("corrector") or "corrector")
        alpaca = write_model_outputs(cfg.alpaca_eval, items, original=_short(original),
                                     corrected=f"{_short(original)}+{corrector}")
    report = build_report(cfg, evalset, made, scores, judged, alpaca)
    write_report(report, items, out, plots=cfg.plots)
    return report
