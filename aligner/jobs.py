"""Correct a JSONL file of questions: results are appended as they are made and a re-run resumes.

Three files sit side by side:

- ``OUT`` holds one line per corrected row: the input's ``row`` number, a ``key`` (a hash of the
  row's question and answer) and the :class:`~aligner.Correction`. A killed run loses at most the
  chunk in flight; a re-run skips the rows already there (no duplicates, none lost).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .core import Aligner
from .errors import AlignerError, ConfigError, CorrectorError, DataError, UpstreamError

log = logging.getLogger("aligner.jobs")

#: exit status of ``aligner correct --input`` when the run finished but some rows failed.
EXIT_ROWS_FAILED = 3
#: stop the run when this many rows in a row fail with a transient error (5xx, timeout, cannot
#: connect) after their retries: the upstream is down, not the rows bad.
STOP_AFTER_FAILURES_IN_A_ROW = 8
#: 4xx statuses that are about one request (its content, its length), not about the setup.
_ROW_STATUSES = frozenset(range(400, 500)) - {401, 403, 404, 408, 409, 429}


def row_key(question: str, answer: str | None) -> str:
    """What identifies a row across runs: a hash of its input, not its position alone."""
    return hashlib.sha256(json.dumps([question, answer], ensure_ascii=False).encode()).hexdigest()[:16]


def meta_path(output: "str | Path") -> Path:
    return Path(f"{output}.meta.json")


def errors_path(output: "str | Path") -> Path:
    return Path(f"{output}.errors.jsonl")


def read_questions(path: "str | Path") -> list[dict[str, Any]]:
    """Rows ``{"question"[, "answer"]}`` with their 0-based ``row`` and ``key``; a bad row is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file.", source=str(p), fix="pass an existing JSONL file to --input.")
    rows = []
    with p.open("rb") as fh:
        for i, raw in enumerate(fh):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("not UTF-8 text.", source=str(p), row=i, fix="save the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg}).", source=str(p), row=i,
                                fix="one JSON object per line.") from None
            if not isinstance(obj, dict):
                raise DataError("expected a JSON object.", source=str(p), row=i, fix='write {"question": "..."}.')
            q = obj.get("question")
            if not isinstance(q, str) or not q.strip():
                raise DataError("missing or empty.", source=str(p), row=i, field="question",
                                fix='every row needs a non-empty "question" string.')
            a = obj.get("answer")
            if a is not None and not isinstance(a, str):
                raise DataError(f"expected a string, got {type(a).__name__}.", source=str(p), row=i,
                                field="answer", fix='"answer" is optional; when given it must be a string.')
            rows.append({"row": i, "key": row_key(q, a), "question": q, "answer": a})
    if not rows:
        raise DataError("the file has no rows.", source=str(p), fix="add one JSON object per line.")
    return rows


def _fix_output(output: Path) -> str:
    return f"pass a new --output path, or add --overwrite to correct the input into {output} from scratch."


def check_output_writable(output: "str | Path") -> None:
    """A directory, or a path that cannot be created or appended to, is an error before any work."""
    p = Path(output)
    if p.is_dir():
        raise ConfigError(f"--output {p} is a directory.", field="output",
                          fix=f"pass a file path, e.g. --output {p / 'corrected.jsonl'}.")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            with p.open("ab"):
                pass
        else:
            with p.open("xb"):
                pass
            p.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write --output {p}: {exc.strerror or exc}.", field="output",
                          fix="pass a path in a directory you can write to.") from None


def _read_output(output: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of an existing output; a torn last line is cut off."""
    if not output.exists():
        return []
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: cutting off a torn last line (the previous run stopped mid-write)", output)
        with output.open("r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    lines = []
    for n, raw in enumerate(data.split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        where = f"{output}, line {n}"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text, so not a row aligner-kit wrote.", source=where,
                            fix=_fix_output(output)) from None
        except json.JSONDecodeError:
            raise DataError("not a JSON line aligner-kit wrote; resume cannot tell which row it is.",
                            source=where, fix=_fix_output(output)) from None
        if not (isinstance(obj, dict) and isinstance(obj.get("row"), int) and isinstance(obj.get("key"), str)):
            raise DataError('has no "row" and "key" (written by another tool or an older aligner-kit); '
                            "resume cannot check which input row it is.", source=where, fix=_fix_output(output))
        lines.append((n, obj))
    return lines


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError("not the JSON aligner-kit wrote.", source=str(path),
                        fix="delete it (it only records the input file's name) or pass --overwrite.") from None
    return obj if isinstance(obj, dict) else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _describe_rows(rows: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    if len(rows) == 1:
        return f"row {shown}"
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"rows {shown}{more} ({len(rows)} rows)"


def _is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` is about this row (record it and go on), False when it is about the setup
    (a bad key, model or URL: every row would fail the same way, so stop)."""
    if isinstance(exc, UpstreamError):
        return exc.status not in (401, 403, 404)
    if isinstance(exc, (DataError, CorrectorError)):
        return True
    return isinstance(exc, ConfigError) and exc.field in ("question", "answer")


def _is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the row (server error, timeout, no connection)."""
    return isinstance(exc, UpstreamError) and exc.status not in _ROW_STATUSES


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

    @classmethod
    def open(cls, input_path: "str | Path", output_path: "str | Path", *, overwrite: bool = False) -> "BatchJob":
        inp, out = Path(input_path), Path(output_path)
        check_output_writable(out)
        rows = read_questions(inp)
        if overwrite:  # the old files go when the run starts, not if loading a model fails first
            return cls(inp, out, rows, set(), {}, fresh=True)
        by_row = {r["row"]: r for r in rows}
        meta = _read_json(meta_path(out))
        source = (meta or {}).get("input")
        done: set[int] = set()
        for n, obj in _read_output(out):
            mine = by_row.get(obj["row"])
            if mine is not None and mine["key"] == obj["key"]:
                done.add(obj["row"])
                continue
            where = f"{out}, line {n}"
            if source and Path(source) != inp.resolve():
                raise DataError(f"{out} was made from {source}, not from {inp}: its rows do not match.",
                                source=where, fix=_fix_output(out))
            what = (f"row {obj['row']} of {inp} has changed since {out} was written" if mine is not None
                    else f"{inp} has no row {obj['row']}")
            raise DataError(f"{what}{f' (the output was made from {source})' if source else ''}.",
                            source=where, fix=_fix_output(out))
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
        return cls(inp, out, rows, done, previous)

    @property
    def todo(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["row"] not in self.done]

    def check_answers(self, has_upstream: bool) -> None:
        """Rows without an answer need ``--upstream``: say so before a model is loaded, naming them."""
        missing = [r["row"] for r in self.todo if r["answer"] is None]
        if missing and not has_upstream:
            raise ConfigError(f"{_describe_rows(missing)} of {self.input_path} have no \"answer\", and no "
                              "--upstream was given to answer them.", field="upstream",
                              fix="pass --upstream (a LiteLLM model string such as openai/gpt-4o-mini, an "
                                  "http(s)://…/v1 base URL or hf:PATH), or give those rows an \"answer\".")

    def _write_meta(self) -> None:
        digest = hashlib.sha256(self.input_path.read_bytes()).hexdigest()
        _write_atomic(meta_path(self.output_path), json.dumps({
            "input": str(self.input_path.resolve()), "input_sha256": digest, "rows": len(self.rows),
            "key": "sha256 of [question, answer] as JSON, first 16 hex digits"}, indent=2) + "\n")

    def _write_errors(self, errors: dict[int, dict[str, Any]]) -> None:
        path = errors_path(self.output_path)
        if errors:
            _write_atomic(path, "".join(json.dumps(errors[r], ensure_ascii=False) + "\n" for r in sorted(errors)))
        else:
            path.unlink(missing_ok=True)

    def run(self, aligner: Aligner, *, chunk_size: int | None = None, progress: bool = True) -> dict[str, Any]:
        """Correct every row not yet in the output; returns counts (total, skipped, written, failed)."""
        from tqdm.auto import tqdm

        todo = self.todo
        self.check_answers(aligner.upstream is not None)
        if self.fresh:
            for p in (self.output_path, errors_path(self.output_path)):
                p.unlink(missing_ok=True)
        self._write_meta()
        errors = dict(self.previous_errors)
        concurrency = getattr(aligner.upstream, "max_concurrency", 1) if aligner.upstream else 1
        size = chunk_size or max(aligner.batch_size, concurrency)
        written = failed = streak = 0
        last_transient: BaseException | None = None
        with open(self.output_path, "a", encoding="utf-8") as out, \
                tqdm(total=len(self.rows), initial=len(self.rows) - len(todo), desc="correcting", unit="row",
                     disable=not progress) as bar:
            for chunk in _chunks(todo, size):
                results, failures = _correct_chunk(aligner, chunk)
                for r, c in results:
                    out.write(json.dumps({"row": r["row"], "key": r["key"], **c.to_dict()}, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
                for r, _ in results:
                    errors.pop(r["row"], None)
                for r, stage, exc in failures:
                    errors[r["row"]] = {"row": r["row"], "key": r["key"], "question": r["question"], "stage": stage,
                                        "status": getattr(exc, "status", None), "error": str(exc),
                                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                self._write_errors(errors)
                written += len(results)
                failed += len(failures)
                # rows in input order: a success ends a streak of transient failures
                outcome = sorted([(r["row"], None) for r, _ in results] + [(r["row"], e) for r, _, e in failures],
                                 key=lambda t: t[0])
                for _, exc in outcome:
                    if exc is not None and _is_transient(exc):
                        streak, last_transient = streak + 1, exc
                    else:
                        streak = 0
                bar.update(len(chunk))
                if failed:
                    bar.set_postfix(failed=failed)
                if streak >= STOP_AFTER_FAILURES_IN_A_ROW:
                    assert last_transient is not None
                    raise UpstreamError(
                        f"stopped after {streak} rows in a row failed ({written} rows corrected in this run, "
                        f"{failed} failed, listed in {errors_path(self.output_path)}); the last error: "
                        f"{last_transient}", field=getattr(last_transient, "field", None) or "upstream",
                        status=getattr(last_transient, "status", None),
                        fix="check the upstream (URL, server, network), then run the same command again: "
                            "it resumes, and retries the failed rows.")
        return {"total": len(self.rows), "skipped": len(self.rows) - len(todo), "written": written,
                "failed": failed, "errors_file": str(errors_path(self.output_path)) if failed else None}


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


Failure = tuple[dict[str, Any], str, AlignerError]


def _answer_rows(aligner: Aligner, chunk: list[dict[str, Any]]) -> tuple[dict[int, tuple[str, float]], list[Failure]]:
    """The upstream's answer to each row lacking one, concurrently; a row's failure is kept, not raised."""
    need = [r for r in chunk if r["answer"] is None]
    if not need:
        return {}, []

    def ask(question: str) -> tuple[str, float]:
        t0 = time.perf_counter()
        return aligner.answer(question), time.perf_counter() - t0

    answers: dict[int, tuple[str, float]] = {}
    failures: list[Failure] = []
    workers = min(getattr(aligner.upstream, "max_concurrency", 8), len(need))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [(r, pool.submit(ask, r["question"])) for r in need]
        for r, fut in futures:
            try:
                answers[r["row"]] = fut.result()
            except AlignerError as exc:
                if not _is_row_error(exc):
                    raise
                failures.append((r, "upstream", exc))
    return answers, failures


def _correct_chunk(aligner: Aligner, chunk: list[dict[str, Any]]) -> tuple[list[tuple[dict, Any]], list[Failure]]:
    """Corrections for the rows of ``chunk`` that could be made, and the rows that failed."""
    answers, failures = _answer_rows(aligner, chunk)
    failed = {r["row"] for r, _, _ in failures}
    ready = [r for r in chunk if r["row"] not in failed]
    texts = [r["answer"] if r["answer"] is not None else answers[r["row"]][0] for r in ready]

    def correct(rows: list[dict[str, Any]], texts: list[str]) -> list[Any]:
        out = aligner.correct_batch([r["question"] for r in rows], texts, progress=False)
        for r, c in zip(rows, out):
            if r["row"] in answers:  # the upstream was asked here, not inside correct_batch
                c.timings["upstream"] = answers[r["row"]][1]
                c.timings["total"] = c.timings.get("total", 0.0) + answers[r["row"]][1]
        return out

    results: list[tuple[dict, Any]] = []
    if ready:
        try:
            results = list(zip(ready, correct(ready, texts)))
        except AlignerError as exc:
            if not _is_row_error(exc):
                raise
            if _is_transient(exc):  # the corrector server is failing, not one row: no use in one by one
                return results, failures + [(r, "corrector", exc) for r in ready]
            # one row spoiled the batch: correct the rows one by one to find it
            for r, t in zip(ready, texts):
                try:
                    results.append((r, correct([r], [t])[0]))
                except AlignerError as one:
                    if not _is_row_error(one):
                        raise
                    failures.append((r, "corrector", one))
    return results, failures


def correct_file(aligner: Aligner, input_path: "str | Path", output_path: "str | Path", *,
                 chunk_size: int | None = None, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Correct every row of ``input_path`` not yet in ``output_path`` (see the module docstring);
    returns counts: total, skipped (already done), written, failed (listed in ``OUTPUT.errors.jsonl``)."""
    job = BatchJob.open(input_path, output_path, overwrite=overwrite)
    return job.run(aligner, chunk_size=chunk_size, progress=progress)


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
