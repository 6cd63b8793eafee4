"""Correct a JSONL file of questions: results are appended as they are made and a re-run resumes.

Three files sit side by side:

- ``OUT`` holds one line per corrected row: the input's ``row`` number, a ``key`` (a hash of the
  row's question and answer) and the :class:`~aligner.Correction`, appended as rows finish (the
  run is pipelined: upstream answers feed the corrector's batches, see :meth:`BatchJob.run`). A
  killed run loses at most the batches in flight; a re-run skips the rows already there (no
  duplicates, none lost). ``aligner generate`` is this job with prompts, shards and provenance.
- ``OUT.meta.json`` records which input file the output was made from (path, content hash, rows).
- ``OUT.errors.jsonl`` lists the rows that failed (the upstream rejected them, the corrector could
  not take them) with the reason. The run goes on past them; a re-run tries them again, and a row
  that then succeeds leaves the errors file (which is removed once empty).

Resume trusts only what it can check: every line of ``OUT`` must be a JSON object with a ``row``
and the ``key`` of that row of the input. An output made from another input file, or from rows
since edited, is an error naming both files (fix: a new ``--output`` or ``--overwrite``), and so is
a complete line that is not such an object (aligner-kit never writes one; a torn last line, which a
kill mid-write leaves, has no newline and is cut off).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts.errors import LINE, AlignerError, ConfigError, DataError, UpstreamError
from ..data.io import write_atomic
from ..data.job_files import (check_output_writable, describe_rows, errors_path, fix_output, meta_path, read_json,
                              read_output, read_questions, source_id)
from ..runtime.pipeline import is_transient
from .aligner import Aligner

log = logging.getLogger("aligner.batch_job")

#: exit status of ``aligner correct --input`` when the run finished but some rows failed.
EXIT_ROWS_FAILED = 3
#: stop the run when this many rows in a row fail with a transient error (5xx, timeout, cannot
#: connect) after their retries: the upstream is down, not the rows bad.
STOP_AFTER_FAILURES_IN_A_ROW = 8


@dataclass
class BatchJob:
    """One ``--input``/``--output`` pair, checked before any model is loaded.

    :meth:`open` reads the input, checks the output belongs to it and finds the rows still to do;
    :meth:`run` corrects them. ``aligner correct --input`` does exactly this.
    """

    input_path: Path
    output_path: Path
    rows: list[dict[str, Any]]
    done: set[int]
    #: failures recorded by earlier runs, by row, for rows still not done
    previous_errors: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: --overwrite: the output and errors file are replaced when the run starts
    fresh: bool = False
    #: (I, N): this job does the rows whose number is I modulo N (``aligner generate --shard I/N``)
    shard: tuple[int, int] | None = None
    #: ``aligner generate``: each output line also says where its answer came from (and the shard)
    provenance: bool = False
    #: what the input's location numbers count (``line`` or ``record``), for messages
    unit: str = LINE
    #: rows in the whole input (all shards), recorded so ``aligner data merge`` can tell a row missing
    input_rows: int = 0
    #: the settings that make the outputs what they are (``aligner generate``: upstream, corrector,
    #: template, decoding), recorded so ``aligner data merge`` refuses shards of different runs
    settings: dict[str, Any] | None = None

    @classmethod
    def open(cls, input_path: "str | Path", output_path: "str | Path", *, overwrite: bool = False,
             fields: tuple[str, ...] = ("question",), shard: tuple[int, int] | None = None,
             split: str = "train", provenance: bool = False,
             settings: dict[str, Any] | None = None) -> "BatchJob":
        inp, out = Path(input_path), Path(output_path)
        check_output_writable(out)
        questions = read_questions(input_path, fields=fields, split=split)
        rows: list[dict[str, Any]] = questions
        if shard is not None and shard[1] > 1:
            rows = [r for r in questions if r["row"] % shard[1] == shard[0]]
        else:
            shard = None
        extra = {"shard": shard, "provenance": provenance, "unit": questions.unit, "input_rows": len(questions),
                 "settings": settings}
        if overwrite:  # the old files go when the run starts, not if loading a model fails first
            return cls(inp, out, rows, set(), {}, fresh=True, **extra)
        by_row = {r["row"]: r for r in rows}
        meta = read_json(meta_path(out))
        source = (meta or {}).get("input")
        done: set[int] = set()
        for n, obj in read_output(out):
            mine = by_row.get(obj["row"])
            if mine is not None and mine["key"] == obj["key"]:
                done.add(obj["row"])
                continue
            where = f"{out}, line {n}"
            if source and source != source_id(inp):
                raise DataError(f"{out} was made from {source}, not from {inp}: its rows do not match.",
                                source=where, fix=fix_output(out))
            at = f"{questions.unit} {obj['row'] + 1}"
            what = (f"{at} of {inp} (\"row\": {obj['row']} in the output) has changed since {out} was written"
                    if mine is not None else f"{inp} has no {at} (\"row\": {obj['row']} in the output)")
            raise DataError(f"{what}{f' (the output was made from {source})' if source else ''}.",
                            source=where, fix=fix_output(out))
        previous: dict[int, dict[str, Any]] = {}
        if errors_path(out).exists():
            for line in errors_path(out).read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    e = json.loads(line)
                    r = by_row.get(e["row"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if r is not None and r["key"] == e.get("key") and r["row"] not in done:
                    previous[r["row"]] = e
        return cls(inp, out, rows, done, previous, **extra)

    @property
    def todo(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["row"] not in self.done]

    def check_answers(self, has_upstream: bool) -> None:
        """Rows without an answer need ``--upstream``: say so before a model is loaded, naming them."""
        missing = [r["row"] for r in self.todo if r["answer"] is None]
        if missing and not has_upstream:
            raise ConfigError(f"{describe_rows(missing, self.unit)} of {self.input_path} have no \"answer\", and no "
                              "--upstream was given to answer them.", field="upstream",
                              fix="pass --upstream (a LiteLLM model string such as openai/gpt-4o-mini, an "
                                  "http(s)://…/v1 base URL or hf:PATH), or give those rows an \"answer\".")

    def _write_meta(self) -> None:
        if self.input_path.is_file():
            digest = hashlib.sha256(self.input_path.read_bytes()).hexdigest()
        else:  # a hub dataset: the rows as read stand for the file
            digest = hashlib.sha256(json.dumps([r["key"] for r in self.rows]).encode()).hexdigest()
        meta: dict[str, Any] = {"input": source_id(self.input_path), "input_sha256": digest, "rows": len(self.rows),
                                "key": "sha256 of [question, answer] as JSON, first 16 hex digits"}
        if self.shard:
            meta["shard"] = f"{self.shard[0]}/{self.shard[1]}"
            meta["input_rows"] = self.input_rows
        if self.settings is not None:
            meta["settings"] = self.settings
        write_atomic(meta_path(self.output_path), json.dumps(meta, indent=2, default=str) + "\n")

    def _write_errors(self, errors: dict[int, dict[str, Any]]) -> None:
        path = errors_path(self.output_path)
        if errors:
            write_atomic(path, "".join(json.dumps(errors[r], ensure_ascii=False) + "\n" for r in sorted(errors)))
        else:
            path.unlink(missing_ok=True)

    def run(self, aligner: Aligner, *, progress: bool = True) -> dict[str, Any]:
        """Correct every row not yet in the output; returns counts (total, skipped, written, failed).

        Pipelined (:class:`aligner.runtime.pipeline.Pipeline`): upstream calls run concurrently
        (``max_concurrency``, and the upstream's requests-per-minute limit) and feed a queue that
        the corrector, in a worker thread, drains in batches of up to ``batch_size`` — neither
        waits for the other, and rows are appended as they finish (not in input order; ``aligner
        data merge`` sorts). A row that fails is recorded and the run goes on.
        """
        from tqdm.auto import tqdm

        from ..runtime.pipeline import Pipeline, Row, run_sync

        todo = self.todo
        self.check_answers(aligner.upstream is not None)
        if self.fresh:
            for p in (self.output_path, errors_path(self.output_path)):
                p.unlink(missing_ok=True)
        self._write_meta()
        concurrency = getattr(aligner.upstream, "max_concurrency", 1) if aligner.upstream else 1
        with tqdm(total=len(self.rows), initial=len(self.rows) - len(todo), desc="correcting", unit="row",
                  disable=not progress) as bar, _Sink(self, bar) as sink:
            pipeline = Pipeline(aligner, sink.record_rows, batch_size=aligner.batch_size, concurrency=concurrency,
                                isolate=True)
            run_sync(lambda: pipeline.run([Row(r["question"], r["answer"], tag=r) for r in todo]),
                     threads=concurrency)
        return {"total": len(self.rows), "skipped": len(self.rows) - len(todo), "written": sink.written,
                "failed": sink.failed, "errors_file": str(errors_path(self.output_path)) if sink.failed else None}

    def line(self, row: dict[str, Any], correction: Any) -> str:
        """One output line: the row's number and key, the correction, and (generate) its provenance."""
        obj = {"row": row["row"], "key": row["key"], **correction.to_dict()}
        if self.provenance:
            obj["answer_from"] = "input" if row["answer"] is not None else "upstream"
            if self.shard:
                obj["shard"] = f"{self.shard[0]}/{self.shard[1]}"
        return json.dumps(obj, ensure_ascii=False) + "\n"


class _Sink:
    """The one writer of ``OUT`` and ``OUT.errors.jsonl``: whole lines, flushed and fsynced per
    batch, so a kill loses at most the batch in flight and never leaves half a row but a torn last
    line (which the next open cuts). It also stops the run after a streak of transient failures."""

    def __init__(self, job: BatchJob, bar: Any):
        self.job, self.bar = job, bar
        self.errors = dict(job.previous_errors)
        self.written = self.failed = self.streak = 0
        self.last_transient: BaseException | None = None

    def __enter__(self) -> "_Sink":
        self.out = open(self.job.output_path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.out.close()

    def record_rows(self, done: list[tuple[Any, Any]], failed: list[tuple[Any, str, AlignerError]]) -> None:
        """:meth:`record` for a pipeline's rows (each tagged with its job row)."""
        self.record([(r.tag, c) for r, c in done], [(r.tag, stage, exc) for r, stage, exc in failed])

    def record(self, results: list[tuple[dict, Any]], failures: "list[Failure]") -> None:
        if results:
            self.out.write("".join(self.job.line(r, c) for r, c in results))
            self.out.flush()
            os.fsync(self.out.fileno())
        had = bool(self.errors)
        for r, _ in results:
            self.errors.pop(r["row"], None)
        for r, stage, exc in failures:
            self.errors[r["row"]] = {"row": r["row"], "key": r["key"], "question": r["question"], "stage": stage,
                                     "status": getattr(exc, "status", None), "error": str(exc),
                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if failures or had:
            self.job._write_errors(self.errors)
        self.written += len(results)
        self.failed += len(failures)
        # in the order rows finished: a success ends a streak of transient failures
        outcome = sorted([(r["row"], None) for r, _ in results] + [(r["row"], e) for r, _, e in failures],
                         key=lambda t: t[0])
        for _, exc in outcome:
            if exc is not None and is_transient(exc):
                self.streak, self.last_transient = self.streak + 1, exc
            else:
                self.streak = 0
        self.bar.update(len(results) + len(failures))
        if self.failed:
            self.bar.set_postfix(failed=self.failed)
        if self.streak >= STOP_AFTER_FAILURES_IN_A_ROW:
            last = self.last_transient
            assert last is not None
            raise UpstreamError(
                f"stopped after {self.streak} rows in a row failed ({self.written} rows corrected in this run, "
                f"{self.failed} failed, listed in {errors_path(self.job.output_path)}); the last error: "
                f"{last}", field=getattr(last, "field", None) or "upstream", status=getattr(last, "status", None),
                fix="check the upstream (URL, server, network), then run the same command again: "
                    "it resumes, and retries the failed rows.")


Failure = tuple[dict[str, Any], str, AlignerError]


def correct_file(aligner: Aligner, input_path: "str | Path", output_path: "str | Path", *,
                 progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Correct every row of ``input_path`` not yet in ``output_path`` (see the module docstring);
    returns counts: total, skipped (already done), written, failed (listed in ``OUTPUT.errors.jsonl``)."""
    job = BatchJob.open(input_path, output_path, overwrite=overwrite)
    return job.run(aligner, progress=progress)


def summary(counts: dict[str, Any], output: "str | Path") -> str:
    """The one line ``aligner correct --input`` prints at the end."""
    failed = counts.get("failed", 0)
    text = f"{counts['written']} rows corrected"
    if failed:
        text += f", {failed} failed (reasons in {counts['errors_file']}; run the same command again to retry them)"
    return text + f", {counts['skipped']} already done, {counts['total']} in all → {output}"


def most_common_error(output: "str | Path") -> str | None:
    """The most frequent failure reason in an errors file (or the first row's when all differ),
    to print beside the summary."""
    path = errors_path(output)
    if not path.exists():
        return None
    reasons: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            reasons[json.loads(line)["error"]] += 1
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    if not reasons:
        return None
    reason, n = reasons.most_common(1)[0]  # on a tie, the first row's reason
    return f"most common reason ({n} rows): {reason}" if n > 1 else f"for example: {reason}"
