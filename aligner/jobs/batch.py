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
from typing import Any, Iterator

from ..runtime.core import Aligner
from ..contracts.errors import LINE, AlignerError, ConfigError, DataError, UpstreamError, json_type
from ..runtime.pipeline import is_transient

log = logging.getLogger("aligner.jobs.batch")

#: exit status of ``aligner correct --input`` when the run finished but some rows failed.
EXIT_ROWS_FAILED = 3
#: stop the run when this many rows in a row fail with a transient error (5xx, timeout, cannot
#: connect) after their retries: the upstream is down, not the rows bad.
STOP_AFTER_FAILURES_IN_A_ROW = 8


def row_key(question: str, answer: str | None) -> str:
    """What identifies a row across runs: a hash of its input, not its position alone."""
    return hashlib.sha256(json.dumps([question, answer], ensure_ascii=False).encode()).hexdigest()[:16]


def meta_path(output: "str | Path") -> Path:
    return Path(f"{output}.meta.json")


def errors_path(output: "str | Path") -> Path:
    return Path(f"{output}.errors.jsonl")


def read_questions(path: "str | Path", *, fields: tuple[str, ...] = ("question",),
                   split: str = "train") -> list[dict[str, Any]]:
    """Rows ``{"question"[, "answer"]}`` with their 0-based ``row`` and ``key``; a bad row is an error naming it.

    The file is read by :func:`aligner.data.io.read_records`, the reader of every other command
    (JSONL, a JSON list, either gzip-compressed, or parquet), so a bad row is named the same way
    everywhere: by the 1-based line an editor shows (``line 41`` is ``"row": 40`` in the output).
    ``fields`` are the names the question may have, first found wins (``aligner generate`` reads
    ``question`` or ``prompt``); with more than one, a path that is not a file may be a hub dataset id.
    """
    from ..data.io import _BadLine, read_records
    from ..runtime.hub import DATA_SUFFIXES, looks_like_path

    p = Path(path)
    flag = "--prompts" if len(fields) > 1 else "--input"
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.is_file() and f.name.endswith(DATA_SUFFIXES))[:3]
        example = f" (it holds {', '.join(inside)})" if inside else ""
        raise DataError(f"is a directory, not a file{example}.", source=str(p),
                        fix=f"pass one JSONL file to {flag}, e.g. {flag} {p / (inside[0] if inside else 'rows.jsonl')}.")
    if not p.is_file() and (len(fields) == 1 or p.exists() or looks_like_path(str(path), suffixes=DATA_SUFFIXES)):
        raise DataError("no such file.", source=str(p), fix=f"pass an existing JSONL file to {flag}.")
    source, records = read_records(str(path), split=split)
    source = str(p) if p.is_file() else source

    def checked() -> Iterator[tuple[int, Any]]:
        for n, obj in records:
            if isinstance(obj, _BadLine):
                raise DataError(obj.reason, source=source, row=n, unit=records.unit, fix="one JSON object per line.")
            yield n, obj

    return Questions(_check_rows(checked(), source, fields, records.unit), records.unit)


class Questions(list):
    """The rows :func:`read_questions` read, and what their location numbers count (``unit``:
    ``line`` for JSONL, ``record`` for a JSON list, parquet or hub split); row ``r`` is at ``r + 1``."""

    def __init__(self, rows: list[dict[str, Any]], unit: str = LINE):
        super().__init__(rows)
        self.unit = unit


def _check_rows(records: "Iterator[tuple[int, Any]]", source: str, fields: tuple[str, ...],
                unit: str) -> list[dict[str, Any]]:
    """``records`` are numbered from 1 (see :class:`aligner.data.io.Records`); ``row`` is that - 1."""
    names = " or ".join(f'"{f}"' for f in fields)
    rows = []
    for n, obj in records:
        where = {"source": source, "row": n, "unit": unit}
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {json_type(obj)}.", **where,
                            fix=f'write {{{names.split(" or ")[0]}: "..."}}.')
        name = next((f for f in fields if f in obj), None)
        if name is None:
            have = ", ".join(sorted(map(str, obj))) or "none"
            raise DataError(f"missing (the row has: {have}).", **where, field=" or ".join(fields),
                            fix=f"every row needs a non-empty {names} string.")
        q = obj[name]
        if not isinstance(q, str):
            raise DataError(f"expected a string, got {json_type(q)}.", **where, field=name,
                            fix=f"make {name!r} the text of the question, e.g. {{\"{name}\": \"How do I ...?\"}}.")
        if not q.strip():
            raise DataError("is empty.", **where, field=name, fix=f"every row needs a non-empty {names} string.")
        a = obj.get("answer")
        if a is not None and not isinstance(a, str):
            raise DataError(f"expected a string, got {json_type(a)}.", **where,
                            field="answer", fix='"answer" is optional; when given it must be a string.')
        rows.append({"row": n - 1, "key": row_key(q, a), "question": q, "answer": a})
    if not rows:
        raise DataError("the file has no rows.", source=source, fix="add one JSON object per line.")
    return rows


def _source_id(path: Path) -> str:
    """How OUT.meta.json names the input: a file's absolute path, a hub dataset's id as given."""
    return str(path.resolve()) if path.exists() else str(path)


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


def _describe_rows(rows: list[int], unit: str, limit: int = 5) -> str:
    """0-based ``rows`` as a user finds them in the input: ``lines 1, 4 (2 rows)``."""
    shown = ", ".join(str(r + 1) for r in rows[:limit])
    if len(rows) == 1:
        return f"{unit} {shown}"
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{unit}s {shown}{more} ({len(rows)} rows)"


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
        meta = _read_json(meta_path(out))
        source = (meta or {}).get("input")
        done: set[int] = set()
        for n, obj in _read_output(out):
            mine = by_row.get(obj["row"])
            if mine is not None and mine["key"] == obj["key"]:
                done.add(obj["row"])
                continue
            where = f"{out}, line {n}"
            if source and source != _source_id(inp):
                raise DataError(f"{out} was made from {source}, not from {inp}: its rows do not match.",
                                source=where, fix=_fix_output(out))
            at = f"{questions.unit} {obj['row'] + 1}"
            what = (f"{at} of {inp} (\"row\": {obj['row']} in the output) has changed since {out} was written"
                    if mine is not None else f"{inp} has no {at} (\"row\": {obj['row']} in the output)")
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
        return cls(inp, out, rows, done, previous, **extra)

    @property
    def todo(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["row"] not in self.done]

    def check_answers(self, has_upstream: bool) -> None:
        """Rows without an answer need ``--upstream``: say so before a model is loaded, naming them."""
        missing = [r["row"] for r in self.todo if r["answer"] is None]
        if missing and not has_upstream:
            raise ConfigError(f"{_describe_rows(missing, self.unit)} of {self.input_path} have no \"answer\", and no "
                              "--upstream was given to answer them.", field="upstream",
                              fix="pass --upstream (a LiteLLM model string such as openai/gpt-4o-mini, an "
                                  "http(s)://…/v1 base URL or hf:PATH), or give those rows an \"answer\".")

    def _write_meta(self) -> None:
        if self.input_path.is_file():
            digest = hashlib.sha256(self.input_path.read_bytes()).hexdigest()
        else:  # a hub dataset: the rows as read stand for the file
            digest = hashlib.sha256(json.dumps([r["key"] for r in self.rows]).encode()).hexdigest()
        meta: dict[str, Any] = {"input": _source_id(self.input_path), "input_sha256": digest, "rows": len(self.rows),
                                "key": "sha256 of [question, answer] as JSON, first 16 hex digits"}
        if self.shard:
            meta["shard"] = f"{self.shard[0]}/{self.shard[1]}"
            meta["input_rows"] = self.input_rows
        if self.settings is not None:
            meta["settings"] = self.settings
        _write_atomic(meta_path(self.output_path), json.dumps(meta, indent=2, default=str) + "\n")

    def _write_errors(self, errors: dict[int, dict[str, Any]]) -> None:
        path = errors_path(self.output_path)
        if errors:
            _write_atomic(path, "".join(json.dumps(errors[r], ensure_ascii=False) + "\n" for r in sorted(errors)))
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


@dataclass
class _Shard:
    """One file given to :func:`merge_shards`: which run made it and which shard of it it is."""

    path: Path
    index: int  # I of I/N (0 for an unsharded output)
    count: int  # N of I/N (1 for an unsharded output)
    meta: dict[str, Any]

    @property
    def label(self) -> str:
        return f"shard {self.index}/{self.count}" if self.count > 1 else "an unsharded output"

    def run(self, settings: bool = True) -> tuple[Any, ...]:
        """What must be equal across the shards of one run (``settings``: compare them too; files
        written before aligner-kit recorded them have none)."""
        return (self.meta.get("input_sha256"), self.count,
                json.dumps(self.meta.get("settings"), sort_keys=True, default=str) if settings else None)


def _read_shard(path: Path, out: Path) -> _Shard:
    if path.is_dir():
        raise DataError("is a directory, not a shard file.", source=str(path),
                        fix="pass the OUT.shard-I-of-N.jsonl files aligner generate wrote.")
    if not path.is_file():
        raise DataError("no such file.", source=str(path), fix="pass the shard files aligner generate wrote.")
    if path.resolve() == out.resolve():
        raise ConfigError(f"--out {out} is one of the shards.", field="out", fix="write the merge to a new file.")
    meta = _read_json(meta_path(path))
    if not meta or not meta.get("input_sha256"):
        raise DataError(f"has no {meta_path(path).name} beside it, so merge cannot tell which run and which shard "
                        "it is.", source=str(path),
                        fix="merge the files aligner generate wrote, each with its .meta.json beside it.")
    spec = meta.get("shard")
    if spec is None:
        return _Shard(path, 0, 1, meta)
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise DataError(f'its {meta_path(path).name} says "shard": {spec!r}, not I/N.', source=str(path),
                        fix="merge the files aligner generate wrote, with their .meta.json unedited.") from None
    return _Shard(path, i, n, meta)


def _check_one_run(shards: list[_Shard]) -> None:
    """Every file from one run (one input, one N, the same settings); else an error naming the files."""
    runs: dict[tuple[Any, ...], list[_Shard]] = {}
    settings = all("settings" in sh.meta for sh in shards)
    for sh in shards:
        runs.setdefault(sh.run(settings), []).append(sh)
    if len(runs) == 1:
        return
    groups = list(runs.values())
    a, b = groups[0][0], groups[1][0]
    differ: list[str] = []
    if a.meta.get("input_sha256") != b.meta.get("input_sha256"):
        why = "different inputs"
    elif a.count != b.count:
        why = "runs split into a different number of shards"
    else:
        sa, sb = a.meta.get("settings") or {}, b.meta.get("settings") or {}
        differ = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        why = f"runs with different settings ({', '.join(differ) or 'settings'})"

    def describe(sh: _Shard) -> str:
        if why == "different inputs":
            return f"{sh.path} (from {sh.meta.get('input')}, sha256 {str(sh.meta.get('input_sha256'))[:12]})"
        if differ:
            settings = sh.meta.get("settings") or {}
            return f"{sh.path} ({', '.join(f'{k}={settings.get(k)!r}' for k in differ)})"
        return f"{sh.path} ({sh.label})"

    listed = "; ".join(", ".join(describe(sh) for sh in g) for g in groups)
    raise DataError(f"the files come from {why}: {listed}.", source=str(a.path),
                    fix="merge the shard files of one aligner generate run only (same --prompts, same --shard I/N "
                        "count, same settings).")


def _sibling(sh: _Shard, index: int) -> str:
    """The file name shard ``index`` of ``sh``'s run has (``OUT.shard-I-of-N.jsonl``), for messages."""
    import re

    name = re.sub(rf"\.shard-\d+-of-{sh.count}\.", lambda m: f".shard-{index:0{len(str(sh.count - 1))}d}-of-{sh.count}.",
                  sh.path.name)
    return str(sh.path.with_name(name)) if name != sh.path.name else f"shard {index}/{sh.count}"


def merge_shards(shards: "list[str | Path]", output: "str | Path", *, allow_partial: bool = False) -> dict[str, Any]:
    """Join the shard outputs of one ``aligner generate`` run into one file in prompt (row) order,
    each line as it was written.

    Nothing is lost without saying so: every shard I/N of the run must be given exactly once (their
    ``.meta.json`` say the run: the input's hash, N, the settings) and every prompt of each shard
    must be done; otherwise it is a :class:`DataError` naming the missing or doubled shards and the
    prompts not generated, and nothing is written. ``allow_partial`` merges what there is instead;
    the counts say what is missing (``missing_shards``, ``missing``) for the caller to say loudly.
    Files of different runs are refused, naming them.
    """
    out = Path(output)
    check_output_writable(out)
    found = [_read_shard(Path(s), out) for s in shards]
    _check_one_run(found)
    n = found[0].count
    by_index: dict[int, list[_Shard]] = {}
    for sh in found:
        by_index.setdefault(sh.index, []).append(sh)
    doubled = {i: group for i, group in sorted(by_index.items()) if len(group) > 1}
    if doubled:
        said = "; ".join(f"shard {i}/{n} is given {len(g)} times ({', '.join(str(sh.path) for sh in g)})"
                         if n > 1 else f"the unsharded output is given {len(g)} times ({', '.join(str(sh.path) for sh in g)})"
                         for i, g in doubled.items())
        raise DataError(f"{said}.", source=str(doubled[min(doubled)][0].path),
                        fix="pass each shard file once.")
    missing_shards = [i for i in range(n) if i not in by_index]
    by_row: dict[int, tuple[str, bytes]] = {}
    short: list[tuple[_Shard, int]] = []  # shards with prompts not (yet) generated, and how many
    for sh in sorted(found, key=lambda s: s.index):
        raw_lines = [line for line in sh.path.read_bytes().split(b"\n")[:-1] if line.strip()]
        rows = 0
        for (line_no, obj), raw in zip(_read_output(sh.path), raw_lines):
            where = f"{sh.path}, line {line_no}"
            if obj["row"] % n != sh.index:
                raise DataError(f'holds "row": {obj["row"]}, which is not one of {sh.label}\'s prompts.',
                                source=where, fix="merge the files aligner generate wrote, unedited.")
            seen = by_row.get(obj["row"])
            if seen is not None and seen[0] != obj["key"]:
                raise DataError(f'"row": {obj["row"]} is twice in this file, with two different prompts.',
                                source=where, fix="merge the files aligner generate wrote, unedited.")
            rows += seen is None
            by_row[obj["row"]] = (obj["key"], raw)
        expected = int(sh.meta.get("rows") or 0)
        if rows < expected:
            short.append((sh, expected - rows))
    known_total = [int(sh.meta["input_rows"]) for sh in found if isinstance(sh.meta.get("input_rows"), int)]
    total = known_total[0] if known_total else (sum(int(sh.meta.get("rows") or 0) for sh in found)
                                                if not missing_shards else None)
    missing = total - len(by_row) if total is not None else None
    if (missing_shards or short) and not allow_partial:
        parts = []
        if missing_shards:
            parts.append(f"{len(missing_shards)} of the run's {n} shards are not given: "
                         + ", ".join(f"{i}/{n} ({_sibling(found[0], i)})" for i in missing_shards))
        if short:
            parts.append("; ".join(f"{sh.path} lacks {k} of its {sh.meta.get('rows')} prompts (not generated yet, "
                                   f"or failed: see {errors_path(sh.path)})" for sh, k in short))
        lost = f" ({missing} of {total} prompts would be missing)" if missing else ""
        raise DataError(f"incomplete{lost}: " + "; ".join(parts) + ".", source=str(found[0].path),
                        fix="pass every shard file (run the missing --shard I/N, re-run a shard's command to finish "
                            "it), or add --allow-partial to merge only what is there.")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as fh:
        for row in sorted(by_row):
            fh.write(by_row[row][1] + b"\n")
    os.replace(tmp, out)
    return {"rows": len(by_row), "shards": len(found), "of": n, "total": total, "missing": missing,
            "missing_shards": [f"{i}/{n}" for i in missing_shards],
            "short_shards": {str(sh.path): k for sh, k in short}, "input": found[0].meta.get("input")}


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
