"""Reading raw records from local files or the Hugging Face hub, and writing Q-A-C JSONL.

Local files: JSON list, JSONL, either gzip-compressed (``.gz``), or parquet. Anything that is not
an existing path is treated as a ``datasets`` hub id and loaded with ``datasets.load_dataset`` —
imported only then, because ``import aligner`` must stay light.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DataError
from ..hub import DATA_SUFFIXES, looks_like_path


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _is_parquet(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".parquet", ".pq"))


def read_records(path_or_id: str | os.PathLike, *, split: str = "train") -> tuple[str, Iterator[tuple[int, Any]]]:
    """``(source, iterator of (row_number, record))`` for a local file or a hub dataset id.

    Row numbers are 1-based and mean what a user can look up: the line in a JSONL file, the
    position in a JSON list or parquet table, the index+1 in a hub split. Empty inputs raise a
    :class:`DataError` up front rather than producing a silent empty dataset.
    """
    path = Path(path_or_id)
    source = str(path_or_id)
    if path.is_dir():
        return source, _read_hub(source, split)  # a saved dataset folder / local dataset script dir
    if not path.exists():
        if not looks_like_path(source, suffixes=DATA_SUFFIXES):
            return source, _read_hub(source, split)
        raise DataError("no such file.", source=source,
                        fix="check the path, or pass a Hugging Face dataset id such as PKU-Alignment/PKU-SafeRLHF.")
    if path.stat().st_size == 0:
        raise DataError("the file is empty.", source=source,
                        fix="point at a file with rows (JSON list, JSONL, .gz of either, or parquet).")
    if _is_parquet(path):
        return source, _read_parquet(path)
    return source, _read_json(path)


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    source = str(path)
    with _open_text(path) as fh:
        try:
            text = fh.read()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the file ({exc}).", source=source,
                            fix="check it is UTF-8 JSON/JSONL (gzip-compressed only if named .gz).") from exc
    stripped = text.lstrip()
    if not stripped:
        raise DataError("the file is empty.", source=source,
                        fix="point at a file with rows (JSON list, JSONL, .gz of either, or parquet).")
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
                            source=source, fix="fix the JSON, or write one object per line (JSONL).") from exc
        if not data:
            raise DataError("the JSON list is empty.", source=source, fix="add rows to the list.")
        return ((i + 1, rec) for i, rec in enumerate(data))
    return _iter_jsonl(text, source)


def _iter_jsonl(text: str, source: str) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            record = _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno}).")
        yield lineno, record


class _BadLine:
    """A JSONL line that did not parse; the loader turns it into a located error (or a skip)."""

    def __init__(self, reason: str):
        self.reason = reason


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow ships with datasets
        raise DataError("reading parquet needs pyarrow.", source=str(path), fix="pip install pyarrow") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"cannot read parquet ({exc}).", source=str(path),
                        fix="check the file is a parquet table, or convert it to JSONL.") from exc
    if table.num_rows == 0:
        raise DataError("the parquet table has no rows.", source=str(path), fix="point at a table with rows.")
    return ((i + 1, rec) for i, rec in enumerate(table.to_pylist()))


def _read_hub(dataset_id: str, split: str) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise DataError("loading a hub dataset needs the datasets library.", source=dataset_id,
                        fix="pip install datasets, or download the data and pass a local file.") from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # network, unknown id, unknown split: all user-fixable
        raise DataError(f"cannot load dataset split '{split}' ({type(exc).__name__}: {str(exc)[:300]}).",
                        source=dataset_id,
                        fix="check the id and --split, that you are online (or the dataset is cached), "
                            "or pass a local JSON/JSONL/parquet file.") from exc
    if len(ds) == 0:
        raise DataError(f"split '{split}' is empty.", source=dataset_id, fix="pick another --split.")
    return ((i + 1, rec) for i, rec in enumerate(ds))


def write_jsonl(rows: Iterable[Any], path: str | os.PathLike) -> int:
    """Write rows (``QAC`` or dicts) as JSONL (gzip if the name ends in ``.gz``); returns the count.

    Written to a temporary name and renamed, so an interrupted conversion never leaves a
    half-written file that a later training run would silently read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8")) if path.suffix == ".gz" else (
        lambda p: open(p, "w", encoding="utf-8"))
    with opener(tmp) as fh:
        for row in rows:
            d = row.to_dict() if hasattr(row, "to_dict") else dict(row)
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
