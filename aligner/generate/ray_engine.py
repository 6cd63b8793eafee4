"""``aligner generate --engine ray``: the same job on Ray Data, for a cluster.

- upstream calls are Ray tasks (``map_batches`` with a function): each answers its batch with
  ``--concurrency`` requests in flight, from an upstream resolved once per worker process;
- corrector batches run on actors (``map_batches`` with a callable class, ``--ray-actors`` of
  them, ``--ray-gpus-per-actor`` GPUs each) that load the corrector once when they start — or
  call a served corrector (``--corrector http://…/v1``, e.g. vLLM);
- rows stream back to this process as they finish and are written by the batch job's one
  resumable writer (:class:`aligner.core.batch._Sink`): the same keys, meta, errors file and resume
  rule as the local engine, so a killed Ray run resumes with the local engine or Ray alike, and
  shards (``--shard``, one Ray job each) merge with ``aligner data merge``.

Ray is imported only here, only when this engine runs (``pip install "aligner-kit[ray]"``).
"""
from __future__ import annotations

import json
from typing import Any

from ..contracts.errors import AlignerError, ConfigError, CorrectorError, UpstreamError


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data, which is not installed.", field="engine",
                          fix='pip install "aligner-kit[ray]" (or "ray[data]"), or use --engine local.') from None
    return ray


_UPSTREAMS: dict[str, Any] = {}


def _upstream(options: Any) -> Any:
    """One upstream per worker process (Ray reuses workers across tasks), built from the job's
    options (:meth:`~aligner.core.options.AlignerOptions.build_upstream`) as the local engine builds it.
    Keyed by the options' repr: a config is a mutable dataclass, so it cannot be a cache key."""
    key = repr(options)
    if key not in _UPSTREAMS:
        _UPSTREAMS.clear()  # a worker serves one job at a time
        _UPSTREAMS[key] = options.build_upstream()
    return _UPSTREAMS[key]


def _error_json(stage: str, exc: AlignerError) -> str:
    return json.dumps({"stage": stage, "type": type(exc).__name__, "message": str(exc),
                       "status": getattr(exc, "status", None), "field": exc.field})


def answer_batch(batch: dict[str, Any], *, options: Any) -> dict[str, Any]:
    """A Ray task: the pipeline's answer stage (:func:`aligner.runtime.pipeline.answer_rows`) for the rows
    without an answer; a row's failure goes in ``error``."""
    from ..runtime.pipeline import Row, answer_rows, run_sync

    n = len(batch["row"])
    rows = [Row(str(batch["question"][i]), batch["answer"][i] if isinstance(batch["answer"][i], str) else None,
                tag=i) for i in range(n)]
    errors: list[str | None] = [None] * n

    def failed(fails: list[Any]) -> None:
        for row, stage, exc in fails:
            errors[row.tag] = _error_json(stage, exc)

    if any(r.answer is None for r in rows):
        up = _upstream(options)
        run_sync(lambda: answer_rows(up, rows, concurrency=options.concurrency, on_failed=failed),
                 threads=options.concurrency)
    return {"row": list(batch["row"]), "key": list(batch["key"]), "question": list(batch["question"]),
            "given": [isinstance(a, str) for a in batch["answer"]], "answer": [r.answer or "" for r in rows],
            "upstream_s": [r.asked.seconds if r.asked is not None else 0.0 for r in rows], "error": errors}


class CorrectorActor:
    """A Ray actor: loads the corrector (and the gate) once, then runs the pipeline's gate and correct
    stages (:func:`aligner.runtime.pipeline.judge_rows`, :func:`aligner.runtime.pipeline.correct_rows`) batch after batch."""

    def __init__(self, options: Any, upstream_name: str):
        self.aligner = options.build(upstream=False)
        self.upstream_name = upstream_name

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ..contracts.correction import Asked, is_blank
        from ..runtime.pipeline import Row, correct_rows, judge_rows, uncorrected

        n = len(batch["row"])
        errors: list[str | None] = [e if isinstance(e, str) else None for e in batch["error"]]
        # the job's upstream is named as the local engine names it, though this actor has none
        rows = [Row(str(batch["question"][i]), str(batch["answer"][i]), tag=i,
                    asked=Asked(0.0 if batch["given"][i] else float(batch["upstream_s"][i]), self.upstream_name))
                for i in range(n) if errors[i] is None]
        done = [(r, uncorrected(self.aligner, r)) for r in rows if is_blank(r.answer)]
        passed, flagged = judge_rows(self.aligner, [r for r in rows if not is_blank(r.answer)])
        more, failures = correct_rows(self.aligner, flagged, isolate=True)
        out: list[str | None] = [None] * n
        for r, c in done + passed + more:
            d = c.to_dict()
            d.pop("changed", None)
            out[r.tag] = json.dumps(d, ensure_ascii=False)
        for r, stage, exc in failures:
            errors[r.tag] = _error_json(stage, exc)
        return {"row": list(batch["row"]), "given": list(batch["given"]), "result": out, "error": errors}


def _correction(d: dict[str, Any]) -> Any:
    """A Correction back from its ``to_dict()`` (an actor's result), its gate verdict an object again."""
    from ..contracts.correction import Correction

    if d.get("gate") is not None:
        from ..gates.base import GateVerdict

        d["gate"] = GateVerdict(**d["gate"])
    return Correction(**d)


def _rebuild_error(text: str) -> AlignerError:
    e = json.loads(text)
    if e["stage"] == "upstream":
        return UpstreamError(e["message"], status=e.get("status"), field=None)
    return CorrectorError(e["message"])


def _aligner_error_in(exc: BaseException) -> AlignerError | None:
    """The aligner error behind a Ray error: its ``cause`` (a task's error), or — for an actor that
    died in its constructor, whose error reaches the driver only as text — the last
    ``aligner.contracts.errors.X: message`` line of its traceback, rebuilt as that class."""
    import re

    from ..contracts import errors

    cause = getattr(exc, "cause", None)
    if isinstance(cause, AlignerError):
        return cause
    found = re.findall(rf"^{re.escape(errors.__name__)}\.(\w+): (.+)$", str(exc), re.M)
    if not found:
        return None
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, AlignerError)):
        cls = AlignerError
    try:
        return cls(message, field=None)
    except TypeError:
        return AlignerError(message)


def run_ray(job: Any, cfg: Any) -> dict[str, Any]:
    """Run ``job``'s rows still to do on Ray Data; rows are written as their batches come back."""
    from tqdm.auto import tqdm

    from ..core.batch import _Sink
    from ..data.job_files import errors_path

    ray = _import_ray()
    todo = job.todo
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    upstream_name = ""
    if cfg.upstream:
        upstream_name = _upstream(cfg).name
    items = [{"row": r["row"], "key": r["key"], "question": r["question"], "answer": r["answer"]} for r in todo]
    ds = ray.data.from_items(items)
    ds = ds.map_batches(answer_batch, batch_size=cfg.concurrency, num_cpus=0.25, fn_kwargs={"options": cfg})
    ds = ds.map_batches(CorrectorActor, batch_size=cfg.batch_size, concurrency=cfg.ray_actors,
                        num_cpus=0 if cfg.ray_gpus_per_actor else 1, num_gpus=cfg.ray_gpus_per_actor or None,
                        fn_constructor_kwargs={"options": cfg, "upstream_name": upstream_name})
    by_row = {r["row"]: r for r in todo}
    job.check_answers(bool(cfg.upstream))
    if job.fresh:
        for p in (job.output_path, errors_path(job.output_path)):
            p.unlink(missing_ok=True)
    job._write_meta()
    with tqdm(total=len(job.rows), initial=len(job.rows) - len(todo), desc="generating (ray)", unit="row",
              disable=not cfg.progress) as bar, _Sink(job, bar) as sink:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                results, failures = [], []
                for row, result, error in zip(batch["row"], batch["result"], batch["error"]):
                    r = by_row[int(row)]
                    if isinstance(error, str):
                        exc = _rebuild_error(error)
                        failures.append((r, json.loads(error)["stage"], exc))
                    else:
                        results.append((r, _correction(json.loads(result))))
                sink.record(results, failures)
        except Exception as exc:
            mine = _aligner_error_in(exc)
            if mine is not None:  # a task's or actor's own error (a bad corrector path ...), not Ray's wrapper
                raise mine from None
            raise
    return {"total": len(job.rows), "skipped": len(job.rows) - len(todo), "written": sink.written,
            "failed": sink.failed, "errors_file": str(errors_path(job.output_path)) if sink.failed else None}
