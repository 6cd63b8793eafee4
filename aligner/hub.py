"""Where a model or dataset named by a string lives: a path on this machine, or a Hugging Face Hub id.

Every place that takes "a directory or a hub id" (``hf:SPEC`` upstreams, ``--corrector``,
``--base-model``, data files and hub datasets) first looks on disk; only when nothing is there does
it need to guess what the user meant, to say "no such file" for a mistyped path rather than send
it to the hub (slow, needs network, and fails with the hub library's message about an invalid
repo id). This module is that guess, in one place, so the same string is read the same way
everywhere. It imports nothing but the standard library, so the upstreams, the correctors, the
data readers and the trainers can all use it without importing each other.
"""
from __future__ import annotations

import os
from pathlib import Path

#: file names that are data files, never hub dataset ids (what :func:`aligner.data.read_records` reads).
DATA_SUFFIXES = (".json", ".jsonl", ".gz", ".parquet")


def looks_like_path(spec: "str | os.PathLike[str]", *, suffixes: tuple[str, ...] = (),
                    local_folder: bool = False) -> bool:
    """Whether ``spec``, which is not on disk, was meant as a local path (so it is missing) rather
    than a hub id (so the hub, or its local cache, should be asked).

    A hub id is ``name`` or ``org/name``: at most one slash, no empty part, and it never starts with
    ``.`` or ``~`` or holds a backslash or a colon (``Qwen/Qwen2.5-0.5B`` is a hub id; the dot inside
    is fine). Anything else is a path: ``./rel``, ``../x``, ``/abs``, ``~/x``, ``a/b/c``,
    ``C:\\models\\x``, ``C:/x``. A :class:`os.PathLike` (e.g. a ``Path``) is always a path.

    ``suffixes``: names ending so are files too (pass :data:`DATA_SUFFIXES` where a data file is
    expected, so ``rows.jsonl`` is a missing file, not a dataset called ``rows.jsonl``).
    ``local_folder``: ``org/name`` whose ``org`` is a folder here is a path (``runs/x`` beside a
    ``runs/`` folder); the trainer's ``--base-model`` uses it, since a run folder is what it is
    usually given, while other callers keep sending such a name to the hub.
    """
    if isinstance(spec, os.PathLike):
        return True
    text = str(spec)
    if text.startswith((".", "/", "~")) or "\\" in text or ":" in text:
        return True
    parts = text.split("/")
    if len(parts) > 2 or not all(parts):
        return True
    if suffixes and text.endswith(suffixes):
        return True
    return local_folder and len(parts) == 2 and Path(parts[0]).is_dir()
