"""``aligner serve --workers N``: N server processes sharing one port (uvicorn's workers).

One process decodes with one corrector; with a remote corrector (vLLM) or a small local one, more
processes on a many-core machine serve more clients. uvicorn starts each worker fresh (spawn), so
a worker cannot be handed the app object: it rebuilds it here from the ``ServeConfig`` the parent
put in ``ALIGNER_SERVE_CONFIG``, with the same connection limits (the bounded h11 protocol is
built in the worker too, named by import string). Metrics switch to prometheus-client's
multi-process mode: every worker writes to ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder
unless the operator set one; emptied at start), and a scrape of whichever worker answers sums
them all. Each worker has its own batcher and its own request and connection limits. The
corrections log is checked (and its schema migrated) once, in the parent, so a log out of reach
is one clear error before any worker starts.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import ServeConfig

CONFIG_ENV = "ALIGNER_SERVE_CONFIG"
VERBOSE_ENV = "ALIGNER_SERVE_VERBOSE"


def config_json(cfg: ServeConfig) -> str:
    return json.dumps({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init})


def _config() -> ServeConfig:
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: this module is started by `aligner serve --workers N`.")
    return ServeConfig(**json.loads(raw))


def app() -> Any:
    """The app of one worker (uvicorn calls it: ``factory=True``)."""
    from .app import create_app
    from .logs import configure_logging

    configure_logging(os.environ.get(VERBOSE_ENV) == "1")
    return create_app(_config())


def __getattr__(name: str) -> Any:
    if name == "protocol":  # uvicorn's ``http=``: the bounded h11 protocol, built in each worker
        from .connections import bounded_protocol

        cfg = _config()
        return bounded_protocol(cfg.header_timeout, cfg.max_connections or None)
    raise AttributeError(name)


def run_workers(cfg: ServeConfig, *, verbose: bool = False) -> int:
    import uvicorn

    from .metrics import multiprocess_dir

    if cfg.log_corrections:  # reached (and migrated) once here: one clear error, not one per worker
        from ..runtime.logs import open_log

        open_log(cfg.log_corrections).close()
    given = multiprocess_dir()
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="aligner-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):  # values of an earlier run would be summed in
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.environ[CONFIG_ENV] = config_json(cfg)
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    print(f"aligner serve: http://{cfg.host}:{cfg.port}/v1 with {cfg.workers} worker processes "
          f"(metrics summed in {folder})", file=sys.stderr)
    try:
        uvicorn.run("aligner.serve.workers:app", factory=True, workers=cfg.workers, host=cfg.host, port=cfg.port,
                    access_log=False, log_level="info", timeout_graceful_shutdown=cfg.graceful_timeout,
                    http="aligner.serve.workers:protocol", ws="none", timeout_keep_alive=cfg.timeout_keep_alive,
                    limit_concurrency=None)
    finally:
        if not given:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
