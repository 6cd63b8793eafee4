"""``aligner data merge``: join the shard outputs of one ``aligner generate`` run into one file, in
prompt order, refusing files of other runs and saying what is missing."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError, DataError
from .job_files import check_output_writable, errors_path, meta_path, read_json, read_output


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
    meta = read_json(meta_path(path))
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
        for (line_no, obj), raw in zip(read_output(sh.path), raw_lines):
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
