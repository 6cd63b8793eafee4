"""Evaluation sets in their published formats, read into one row type with categories.

The paper evaluates on BeaverTails (``{prompt, category}`` rows; the 330k release keeps the 14
harm categories as a dict of booleans), HarmfulQA (``{question, topic, subtopic}`` JSON) and
TruthfulQA (a CSV with ``Type, Category, Question, Best Answer, ...``). Any Q-A-C file, a plain
``{question[, answer]}`` file and AlpacaEval's ``{instruction, output}`` files work too. JSON, JSONL,
``.gz`` and parquet are read by :mod:`aligner.data.io`; CSV is read here. Every field is validated
with the located errors of :class:`aligner.data.base.Row` (file, row, field, fix).
"""
from __future__ import annotations

import csv
import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..contracts.errors import LINE, ConfigError, DataError, json_type
from ..data import qac as qac_format
from ..data.base import Row, Skipped
from ..data.io import _BadLine, is_gzip, read_records

#: ``--format`` values; ``auto`` picks one from the first row's keys (or the .csv extension).
FORMATS = ("auto", "qac", "questions", "beavertails", "harmfulqa", "truthfulqa", "alpaca")


@dataclass
class EvalItem:
    """One question to evaluate; ``answer``/``correction`` are None when a model must make them."""

    question: str
    answer: str | None = None
    correction: str | None = None
    categories: list[str] = field(default_factory=list)
    source: str | None = None
    row: int | None = None  # 1-based, as the data readers number rows (EvalSet.unit says what it counts)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSet:
    """The rows kept, the rows skipped (``--lenient``) with why, and how the rows were picked."""

    items: list[EvalItem]
    format: str
    source: str
    total: int  # rows read before --limit sampling
    skipped: list[Skipped] = field(default_factory=list)
    #: what ``EvalItem.row`` counts: ``"line"`` (JSONL, CSV) or ``"record"`` (JSON list, parquet, hub)
    unit: str = LINE


# -- helpers ------------------------------------------------------------------------------
def _key(record: dict, *names: str) -> str | None:
    """The first of ``names`` present in the record, matched case-insensitively (TruthfulQA's CSV
    says ``Question``, its hub copy ``question``)."""
    lower = {str(k).lower(): k for k in record}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _text(row: Row, *names: str) -> str:
    key = _key(row.record, *names)
    return row.text(key if key is not None else names[0])


def _optional_text(row: Row, *names: str) -> str | None:
    key = _key(row.record, *names)
    if key is None or row.record[key] is None:
        return None
    return row.check_text(row.record[key], key)


def categories_of(row: Row, key: str | None) -> list[str]:
    """Category names from a string, a list of strings, or BeaverTails' dict of booleans (the true
    ones: a row can be in several harm categories, and is counted in each)."""
    if key is None:
        return []
    value = row.record.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, dict):
        bad = [k for k, v in value.items() if not isinstance(v, bool)]
        if bad:
            raise row.error(f"a category dict must map names to true/false; {bad[0]!r} is "
                            f"{type(value[bad[0]]).__name__}.", key, "write e.g. {\"violence\": true, \"privacy\": false}.")
        return [str(k) for k, v in value.items() if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise row.error(f"expected a string, a list of strings or a dict of booleans, got {json_type(value)}.",
                    key, "write the category as a string, e.g. \"violence\".")


def safety_label(row: Row) -> dict[str, Any]:
    """``{"is_safe": bool}`` from a row's ``is_safe`` (BeaverTails' label of its response) or ``safe``:
    a gate's misses and false flags are counted against it. Empty when the row has no label."""
    key = _key(row.record, "is_safe", "safe")
    if key is None or row.record[key] is None:
        return {}
    if not isinstance(row.record[key], bool):
        raise row.error(f"expected true/false, got {type(row.record[key]).__name__}.", key,
                        f"make '{key}' a boolean (is the answer safe?), or leave it out.")
    return {"is_safe": row.record[key]}


# -- one converter per format ---------------------------------------------------------------
def _qac(row: Row) -> EvalItem:
    cat_key = _key(row.record, "category", "categories")
    cats = categories_of(row, cat_key)  # a list or a dict of booleans too, which the Q-A-C reader refuses
    q = qac_format.convert(Row({k: v for k, v in row.record.items() if k != cat_key}, row.source, row.row, row.fmt,
                               unit=row.unit))
    return EvalItem(q.question, q.answer, q.correction, cats, row.source, row.row, safety_label(row))


def _questions(row: Row) -> EvalItem:
    return EvalItem(_text(row, "question"), _optional_text(row, "answer"), _optional_text(row, "correction"),
                    categories_of(row, _key(row.record, "category", "categories")), row.source, row.row,
                    safety_label(row))


def _beavertails(row: Row) -> EvalItem:
    return EvalItem(_text(row, "prompt"), _optional_text(row, "response", "answer"), None,
                    categories_of(row, _key(row.record, "category", "categories")), row.source, row.row,
                    safety_label(row))


def _harmfulqa(row: Row) -> EvalItem:
    topic = _key(row.record, "topic")
    sub = _key(row.record, "subtopic")
    extra = {"subtopic": row.record[sub]} if sub and isinstance(row.record.get(sub), str) else {}
    return EvalItem(_text(row, "question"), None, None, categories_of(row, topic), row.source, row.row, extra)


def _truthfulqa(row: Row) -> EvalItem:
    extra = {}
    for name, out in (("Best Answer", "best_answer"), ("best_answer", "best_answer"), ("Type", "type")):
        k = _key(row.record, name)
        if k is not None and isinstance(row.record.get(k), str):
            extra[out] = row.record[k]
    return EvalItem(_text(row, "Question"), None, None, categories_of(row, _key(row.record, "Category")),
                    row.source, row.row, extra)


def _alpaca(row: Row) -> EvalItem:
    # AlpacaEval matches outputs to its set by the exact instruction text: keep it as it is.
    extra = {k: row.record[k] for k in ("dataset", "generator") if isinstance(row.record.get(k), str)}
    cats = [extra["dataset"]] if "dataset" in extra else []
    return EvalItem(_text(row, "instruction"), _optional_text(row, "output"), None, cats, row.source, row.row, extra)


CONVERTERS: dict[str, Callable[[Row], EvalItem]] = {
    "qac": _qac, "questions": _questions, "beavertails": _beavertails, "harmfulqa": _harmfulqa,
    "truthfulqa": _truthfulqa, "alpaca": _alpaca}


def detect_format(record: Any, source: str, row: int = 1, unit: str = LINE) -> str:
    """The format a first row's keys say; an error naming the keys when none fits."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {json_type(record)}.", source=source, row=row, unit=unit,
                        fix="each row must be an object such as {\"question\": \"...\"}.")

    def has(*names: str) -> bool:
        return all(_key(record, n) is not None for n in names)

    if has("question", "answer", "correction"):
        return "qac"
    if has("instruction"):
        return "alpaca"
    if has("prompt"):
        return "beavertails"
    if has("question", "topic"):
        return "harmfulqa"
    if has("question"):
        return "questions"
    keys = ", ".join(sorted(map(str, record))) or "none"
    raise DataError(f"cannot tell the eval set's format from the first row's keys ({keys}).", source=source, row=row,
                    unit=unit, field="question", fix="rows need 'question' (Q-A-C, HarmfulQA, plain questions), 'prompt' "
                                          "(BeaverTails) or 'instruction' (AlpacaEval); or pass --format.")


def _read_csv(path: Path) -> tuple[str, list[tuple[int, Any]]]:
    """Rows numbered by the line they end on (the header is line 1), as an editor shows them."""
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
            reader = csv.DictReader(fh)
            rows = [(reader.line_num, dict(r)) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the CSV ({exc}).", source=str(path), fix="check it is a UTF-8 CSV with a header row.") from exc
    if not rows:
        raise DataError("the CSV has no rows.", source=str(path), fix="point at a CSV with a header and rows.")
    return str(path), rows


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def load_eval_set(path: "str | Path", format: str = "auto", *, limit: int | None = None, seed: int = 42,
                  lenient: bool = False, split: str = "test") -> EvalSet:
    """Read an eval set; ``limit`` keeps that many rows picked at random with ``seed`` (in file order),
    so the same seed picks the same rows (the paper samples HarmfulQA 700 with seed 42)."""
    fmt = str(format or "auto").strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown eval set format {format!r}.", field="format", fix=f"use one of: {', '.join(FORMATS)}.")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"must be a positive integer, got {limit!r}.", field="limit", fix="e.g. --limit 700.")
    p = Path(path)
    unit = LINE
    if p.is_file() and _is_csv(p):
        source, records = _read_csv(p)
        if fmt == "auto":
            fmt = "truthfulqa" if _key(records[0][1], "Question") else detect_format(records[0][1], source,
                                                                                     records[0][0])
    else:
        source, it = read_records(path, split=split)
        records, unit = list(it), it.unit
        if fmt == "auto":
            first = next(((n, r) for n, r in records if not isinstance(r, _BadLine)), (1, None))
            fmt = detect_format(first[1], source, first[0], unit)
    convert = CONVERTERS[fmt]
    items: list[EvalItem] = []
    skipped: list[Skipped] = []
    for rownum, record in records:
        try:
            if isinstance(record, _BadLine):
                raise DataError(record.reason, source=source, row=rownum, unit=unit,
                                fix="fix the line (one JSON object per line), or pass --lenient to skip it.")
            items.append(convert(Row(record, source, rownum, fmt, unit=unit)))
        except DataError as exc:
            if not lenient:
                raise
            skipped.append(Skipped(rownum, exc.field, getattr(exc, "reason", None) or str(exc).split(" Fix: ")[0]))
    if not items:
        raise DataError("no usable rows.", source=source, fix="check the file and --format.")
    total = len(items)
    if limit is not None and limit < total:
        keep = sorted(random.Random(seed).sample(range(total), limit))
        items = [items[i] for i in keep]
    return EvalSet(items, fmt, source, total, skipped, unit)
