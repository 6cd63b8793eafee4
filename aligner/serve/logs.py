"""The server's own log lines: structured JSON on stderr, set up alike by ``aligner serve`` and by
each worker process of ``--workers N``."""
from __future__ import annotations

import json
import logging
import sys


class JsonLineFormatter(logging.Formatter):
    """Access-log records already are JSON; other records become ``{"level", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == "aligner.serve.access":
            return msg
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "message": msg}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(verbose: bool = False) -> None:
    """Structured JSON lines on stderr for the server's own loggers (uvicorn's access log is off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    for name in ("aligner.serve", "aligner.upstream"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(logging.DEBUG if verbose else logging.INFO)
        lg.propagate = False
