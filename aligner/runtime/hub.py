"""Where a model or dataset named by a string lives: a path on this machine, or a Hugging Face Hub id.

Every place that takes "a directory or a hub id" (``hf:SPEC`` upstreams, ``--corrector``,
``--base-model``, data files and hub datasets) first looks on disk; only when nothing is there does
it need to guess what the user meant, to say "no such file" for a mistyped path rather than send
it to the hub (slow, needs network, and fails with the hub library's message about an invalid
repo id). This module is that guess, in one place, so the same string is read the same way
everywhere. It imports nothing but the standard library at import time (``huggingface_hub`` only
inside :func:`check_hub_model`), so the upstreams, the correctors, the data readers and the
trainers can all use it without importing each other.

A hub id that is not in the local cache is checked once before a loader asks for it
(:func:`check_hub_model`): offline, or with the hub out of reach, the loaders' download path retries
each file five times with back-off (30-55 s, two dozen log lines, then an error cut mid-URL); the
check fails in one request, with one line naming the flag and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..contracts.errors import ConfigError

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


#: seconds the one reachability request may take (huggingface_hub's own metadata timeout)
HUB_PROBE_TIMEOUT = 10.0


def _offline_variable() -> str | None:
    """The environment variable that puts the hub libraries offline, as set, or None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{name}={os.environ[name]}"
    return None


def check_hub_model(spec: str, *, field: str, flag: str, local: str = "a local directory", prefix: str = "") -> None:
    """Before a loader asks the hub for ``spec`` (a hub id, not on disk): fine when the hub cache
    holds it or the hub answers; otherwise a one-line :class:`ConfigError` naming ``flag`` and the fix,
    after one request without retries (none at all when offline mode is on). ``prefix`` is what the
    flag's value had before the id (``hf:``), ``local`` what to pass instead.

    A repository the hub does not have (or hides: private, gated) is said so too; any other answer
    from the hub is left to the loader, which reports it.
    """
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - transformers depends on it
        return
    try:
        cached = huggingface_hub.try_to_load_from_cache(spec, "config.json")
    except Exception:  # an id the cache cannot even name (the loader says what is wrong with it)
        return
    if isinstance(cached, str):
        return
    name = f"{flag} {prefix}{spec}"
    elsewhere = f"pass {flag} {local}"
    if getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)():
        var = _offline_variable() or "HF_HUB_OFFLINE=1"
        raise ConfigError(f"{name} is not a local path and not in the Hugging Face cache, and {var} forbids "
                          "downloading it.", field=field,
                          fix=f"unset {var.split('=')[0]} (with network) to download it once, or {elsewhere}.")
    url = huggingface_hub.hf_hub_url(spec, "config.json")
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=HUB_PROBE_TIMEOUT)  # one request: no retries
    except GatedRepoError:
        raise ConfigError(f"{name} is a gated model on the Hugging Face hub.", field=field,
                          fix=f"accept its terms on https://huggingface.co/{spec} and log in (hf auth login), "
                              f"or {elsewhere}.") from None
    except RepositoryNotFoundError:
        raise ConfigError(f"{name}: the Hugging Face hub has no such model (or it is private).", field=field,
                          fix=f"check the id (org/name), log in for a private model (hf auth login), or "
                              f"{elsewhere}.") from None
    except OfflineModeIsEnabled:
        raise ConfigError(f"{name} is not in the Hugging Face cache, and offline mode forbids downloading it.",
                          field=field, fix=f"unset HF_HUB_OFFLINE to download it once, or {elsewhere}.") from None
    except HfHubHTTPError:
        return  # the hub answered (a 5xx, a missing config.json): the loader reports it
    except Exception as exc:  # no connection, DNS, TLS, timeout: the hub cannot be reached
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot reach the Hugging Face hub at {constants.ENDPOINT} ({reason}) to download "
                          f"{name}, and it is not in the cache.", field=field,
                          fix=f"connect to the network (or set HF_ENDPOINT to a reachable mirror), or {elsewhere}.") from None
