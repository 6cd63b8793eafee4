"""Correct a JSONL file of questions: results are appended as they are made and a re-run resumes.

Each output line carries the input's ``row`` number, so a killed run loses at most the batch in
flight, and a re-run skips the rows already written (no duplicates, none lost).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .core import Aligner
from .errors import DataError


def read_questions(path: "str | Path") -> list[dict[str, Any]]:
    """Rows ``{"question"[, "answer"]}`` with their 0-based ``row``; a bad row is an error naming it."""
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file.", source=str(p), fix="pass an existing JSONL file to --input.")
    rows = []
    with p.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg}).", source=str(p), row=i,
                                fix="one JSON object per line.") from exc
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
            rows.append({"row": i, "question": q, "answer": a})
    if not rows:
        raise DataError("the file has no rows.", source=str(p), fix="add one JSON object per line.")
    return rows


def done_rows(path: "str | Path") -> set[int]:
    """Rows already in an output file. A torn last line (the run was killed mid-write) is cut off."""
    p = Path(path)
    if not p.exists():
        return set()
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with p.open("r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    done = set()
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            try:
                done.add(int(json.loads(line)["row"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return done


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def correct_file(aligner: Aligner, input_path: "str | Path", output_path: "str | Path", *,
                 chunk_size: int | None = None, progress: bool = True) -> dict[str, int]:
    """Correct every row not yet in ``output_path``; returns counts (total, skipped, written)."""
    from tqdm.auto import tqdm

    rows = read_questions(input_path)
    done = done_rows(output_path)
    todo = [r for r in rows if r["row"] not in done]
    size = chunk_size or aligner.batch_size
    written = 0
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "a", encoding="utf-8") as out, \
            tqdm(total=len(rows), initial=len(rows) - len(todo), desc="correcting", unit="row",
                 disable=not progress) as bar:
        for chunk in _chunks(todo, size):
            results = aligner.correct_batch([r["question"] for r in chunk], [r["answer"] for r in chunk],
                                            progress=False)
            for r, c in zip(chunk, results):
                out.write(json.dumps({"row": r["row"], **c.to_dict()}, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
            written += len(chunk)
            bar.update(len(chunk))
    return {"total": len(rows), "skipped": len(rows) - len(todo), "written": written}
