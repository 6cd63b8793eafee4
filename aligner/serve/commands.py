"""``aligner serve``: the OpenAI-compatible proxy on uvicorn.

Only the config is imported to build the parser; FastAPI, uvicorn and the model load when the
command runs, so ``aligner --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..contracts.config_parser import add_config_command, build_config
from .config import ServeConfig
from .logs import configure_logging


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..core.commands import DEMO_NOTE
    from .app import create_app
    from .connections import raise_open_files_limit

    cfg = build_config(ServeConfig, args, getattr(args, "config", None))
    configure_logging(getattr(args, "verbose", False))
    if cfg.workers > 1:  # each worker process builds its own app (aligner.serve.workers)
        from .workers import run_workers

        return run_workers(cfg, verbose=getattr(args, "verbose", False))
    app = create_app(cfg)
    state = app.state.aligner
    if state.aligner.is_demo:
        print(DEMO_NOTE, file=sys.stderr)
    print(f"aligner serve: http://{cfg.host}:{cfg.port}/v1 (models: {', '.join(state.model_names)}; "
          f"auth {'on' if state.keys else 'off'}; batching {'on' if cfg.batching else 'off'}; "
          f"bypass header {'allowed' if cfg.allow_bypass else 'refused'}; "
          f"browser origins {', '.join(cfg.cors_origin) if cfg.cors_origin else 'refused'})", file=sys.stderr)
    # room for every connection the cap allows plus the server's own files (model, logs, upstream)
    warning = raise_open_files_limit((cfg.max_connections or 4096) + 256)
    if warning:
        logging.getLogger("aligner.serve").warning(warning)
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="info",
                timeout_graceful_shutdown=cfg.graceful_timeout, **cfg.uvicorn_options())
    return 0


DESCRIPTION = """\
OpenAI-compatible proxy: POST /v1/chat/completions asks the upstream, then corrects its answer. Examples:
  aligner serve --upstream http://localhost:8001/v1 --upstream-model llama3 --port 8000
  ALIGNER_KEYS=secret aligner serve --upstream openai/gpt-4o-mini --api-keys-env ALIGNER_KEYS
  aligner serve --config serve.yaml --log-corrections traffic.jsonl
With --allow-bypass, a request with 'X-Aligner-Bypass: 1' gets the upstream's answer \
uncorrected (without it such a request gets 403). Requests from web pages (an Origin header) are \
refused unless --cors-origin lists their origin."""


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 50


def add_commands(sub: Any) -> None:
    add_config_command(sub, "serve", ServeConfig, run_serve, description=DESCRIPTION,
                       help="serve an OpenAI-compatible API whose answers come back corrected")
