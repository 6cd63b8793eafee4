"""AlpacaEval export: the original and the corrected answers as two ``model_outputs`` files.

AlpacaEval reads ``model_outputs`` as a JSON list of objects with ``instruction`` and ``output``
(``generator`` names the model; ``dataset`` is kept when the eval set has it) and matches them to
its reference outputs by instruction, so the instruction text is written exactly as read. Each
file goes in its own folder because ``alpaca_eval`` writes its leaderboard and annotations next to
the file it scores::

    alpaca_eval --model_outputs DIR/original/model_outputs.json
    alpaca_eval --model_outputs DIR/corrected/model_outputs.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..data.io import write_atomic
from .sets import EvalItem


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(records, indent=2, ensure_ascii=False) + "\n")


def write_model_outputs(folder: "str | Path", items: Sequence[EvalItem], *, original: str,
                        corrected: str) -> dict[str, str]:
    """Write ``original/model_outputs.json`` and ``corrected/model_outputs.json``; returns their paths."""
    folder = Path(folder)
    paths = {}
    for which, name in (("original", original), ("corrected", corrected)):
        records = []
        for it in items:
            rec = {"instruction": it.question, "output": it.answer if which == "original" else it.correction,
                   "generator": name}
            if isinstance(it.extra.get("dataset"), str):
                rec["dataset"] = it.extra["dataset"]
            records.append(rec)
        path = folder / which / "model_outputs.json"
        _write(path, records)
        paths[which] = str(path)
    return paths
