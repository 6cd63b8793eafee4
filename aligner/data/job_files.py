"""The files of a batch job (``aligner correct --input``, ``aligner generate``), read and checked
before any model loads.

Three files sit side by side: ``OUT`` (one line per corrected row, with the input's ``row`` number
and a ``key``, a hash of the row's question and answer), ``OUT.meta.json`` (which input the output
was made from: path, content hash, rows, and for ``aligner generate`` the shard and the settings)
and ``OUT.errors.jsonl`` (the rows that failed, with the reason). :mod:`aligner.core.batch` writes
them; :mod:`aligner.data.shards` joins the shard outputs of one run.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from ..contracts.errors import LINE, ConfigError, DataError, json_type

log = logging.getLogger("aligner.batch_job")


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


def source_id(path: Path) -> str:
    """How OUT.meta.json names the input: a file's absolute path, a hub dataset's id as given."""
    return str(path.resolve()) if path.exists() else str(path)


def fix_output(output: Path) -> str:
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


def read_output(output: Path) -> list[tuple[int, dict[str, Any]]]:
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
                            fix=fix_output(output)) from None
        except json.JSONDecodeError:
            raise DataError("not a JSON line aligner-kit wrote; resume cannot tell which row it is.",
                            source=where, fix=fix_output(output)) from None
        if not (isinstance(obj, dict) and isinstance(obj.get("row"), int) and isinstance(obj.get("key"), str)):
            raise DataError('has no "row" and "key" (written by another tool or an older aligner-kit); '
                            "resume cannot check which input row it is.", source=where, fix=fix_output(output))
        lines.append((n, obj))
    return lines


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError("not the JSON aligner-kit wrote.", source=str(path),
                        fix="delete it (it only records the input file's name) or pass --overwrite.") from None
    return obj if isinstance(obj, dict) else None


def describe_rows(rows: list[int], unit: str, limit: int = 5) -> str:
    """0-based ``rows`` as a user finds them in the input: ``lines 1, 4 (2 rows)``."""
    shown = ", ".join(str(r + 1) for r in rows[:limit])
    if len(rows) == 1:
        return f"{unit} {shown}"
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{unit}s {shown}{more} ({len(rows)} rows)"
