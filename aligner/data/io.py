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
from typing import Any, Callable, Iterable, Iterator

from ..contracts.errors import LINE, RECORD, DataError
from ..runtime.hub import DATA_SUFFIXES, looks_like_path


GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


def is_gzip(path: Path) -> bool:
    """Whether the file is gzip-compressed, by its first bytes (a ``.jsonl.gz`` renamed ``.jsonl``
    is still read; a ``.gz`` that is plain text is read as text)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


class Records:
    """``(number, record)`` pairs from one source, and what the numbers count (``unit``): the
    1-based line of a JSONL or CSV file (:data:`~aligner.contracts.errors.LINE`), or the 1-based position in
    a JSON list, a parquet table or a hub split (:data:`~aligner.contracts.errors.RECORD`). Every message
    about a record says ``{unit} {number}``, whichever command read it."""

    def __init__(self, items: Iterable[tuple[int, Any]], unit: str):
        self._items = iter(items)
        self.unit = unit

    def __iter__(self) -> "Records":
        return self

    def __next__(self) -> tuple[int, Any]:
        return next(self._items)


def _is_parquet(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".parquet", ".pq"))


def read_records(path_or_id: str | os.PathLike, *, split: str = "train") -> tuple[str, Records]:
    """``(source, records)`` for a local file or a hub dataset id (see :class:`Records`).

    A JSON list, JSONL, either gzip-compressed (told by its bytes, not its name), or parquet; a
    directory is a saved dataset folder. Empty inputs raise a :class:`DataError` up front rather
    than producing a silent empty dataset.
    """
    path = Path(path_or_id)
    source = str(path_or_id)
    if path.is_dir():  # a folder of data files, or a dataset script folder
        return source, Records(_read_hub(source, split, folder=True), RECORD)
    if not path.exists():
        if not looks_like_path(source, suffixes=DATA_SUFFIXES):
            return source, Records(_read_hub(source, split), RECORD)
        raise DataError("no such file.", source=source,
                        fix="check the path, or pass a Hugging Face dataset id such as PKU-Alignment/PKU-SafeRLHF.")
    if path.stat().st_size == 0:
        raise DataError("the file is empty.", source=source,
                        fix="point at a file with rows (JSON list, JSONL, .gz of either, or parquet).")
    if _is_parquet(path):
        return source, Records(_read_parquet(path), RECORD)
    first = _first_byte(path)
    if not first:
        raise DataError("the file is empty.", source=source,
                        fix="point at a file with rows (JSON list, JSONL, .gz of either, or parquet).")
    if first == b"[":
        return source, Records(_read_json_list(path), RECORD)
    return source, Records(_iter_jsonl(path), LINE)


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError(f"cannot read the file ({type(exc).__name__}: {exc}).", source=str(path),
                     fix="check the file is complete (a .gz must be a whole gzip file).")


def _first_byte(path: Path) -> bytes:
    """The first byte that is not whitespace (or a UTF-8 byte order mark); b"" when there is none."""
    try:
        with _open_binary(path) as fh:
            start = True
            while chunk := fh.read(1 << 16):
                if start and chunk.startswith(_BOM):
                    chunk = chunk[len(_BOM):]
                start = False
                chunk = chunk.lstrip()
                if chunk:
                    return chunk[:1]
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    return b""


def _read_json_list(path: Path) -> Iterator[tuple[int, Any]]:
    source = str(path)
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError("not UTF-8 text.", source=source, row=line, fix="save the file as UTF-8.") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg}, column {exc.colno}).", source=source, row=exc.lineno,
                        fix="fix the JSON, or write one object per line (JSONL).") from None
    if not items:
        raise DataError("the JSON list is empty.", source=source, fix="add rows to the list.")
    return ((i + 1, rec) for i, rec in enumerate(items))


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line, numbered as an editor numbers it: lines end at ``\n`` only (a JSON
    string may hold U+2028 or a form feed unescaped), bytes that are not UTF-8 make that line bad,
    not the file unreadable."""
    try:
        with _open_binary(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield lineno, _BadLine("not UTF-8 text; save the file as UTF-8.")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    record = _BadLine(f"not valid JSON ({exc.msg} at column {exc.colno}).")
                yield lineno, record
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
        raise _unreadable(path, exc) from None


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


def _read_hub(dataset_id: str, split: str, folder: bool = False) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise DataError("loading a hub dataset needs the datasets library.", source=dataset_id,
                        fix="pip install datasets, or download the data and pass a local file.") from exc
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # network, unknown id, unknown split: all user-fixable
        if folder:
            raise DataError(f"is a directory, and datasets cannot read it as a dataset folder ({type(exc).__name__}: "
                            f"{str(exc)[:300]}).", source=dataset_id,
                            fix="pass a data file (JSONL, JSON, .gz of either, or parquet), or a folder of such "
                                "files.") from exc
        raise DataError(f"cannot load dataset split '{split}' ({type(exc).__name__}: {str(exc)[:300]}).",
                        source=dataset_id,
                        fix="check the id and --split, that you are online (or the dataset is cached), "
                            "or pass a local JSON/JSONL/parquet file.") from exc
    if len(ds) == 0:
        raise DataError(f"split '{split}' is empty.", source=dataset_id, fix="pick another --split.")
    return ((i + 1, rec) for i, rec in enumerate(ds))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path`` and rename it: a reader (a resumed job, a
    report viewer) sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def read_rows(path_or_id: str | os.PathLike, convert: Callable[[Any], Any], *, name: str, split: str = "train",
              lenient: bool = False, max_chars: int | None = None,
              full: Callable[[], bool] = lambda: False) -> tuple[str, str, list[Any]]:
    """Hand each record of a data file (or hub id) to ``convert`` as a :class:`~aligner.data.base.Row`
    of format ``name``, until ``full()``: the one reading loop of every loader. A line that is not
    JSON, or a row ``convert`` rejects (a :class:`DataError`), raises unless ``lenient``, which
    skips it with its reason; a row the format leaves out by design (``RowDropped``) is always
    skipped. Returns the source, its unit (line or record) and the rows skipped."""
    from .base import Row, RowDropped, Skipped

    source, records = read_records(path_or_id, split=split)
    skipped: list[Skipped] = []
    seen = 0
    for rownum, record in records:
        if full():
            break
        seen += 1
        try:
            if isinstance(record, _BadLine):
                bad = DataError(record.reason, source=source, row=rownum, unit=records.unit,
                                fix="fix the line (one JSON object per line), or pass --lenient to skip it.")
                bad.reason = record.reason
                raise bad
            convert(Row(record, source, rownum, name, max_chars, unit=records.unit))
        except RowDropped as drop:
            skipped.append(Skipped(rownum, drop.field, drop.reason))
        except DataError as exc:
            if not lenient:
                raise
            skipped.append(Skipped(rownum, exc.field, getattr(exc, "reason", None) or str(exc).split(" Fix: ")[0]))
    if seen == 0:
        raise DataError("no rows found.", source=source, fix="point at a file with rows.")
    return source, records.unit, skipped

