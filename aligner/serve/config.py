"""``ServeConfig``: every option of ``aligner serve`` — one field = one CLI flag = one YAML key.

Defaults are chosen to be safe on a shared host: bind to 127.0.0.1, bounded bodies, prompts and
generation, a per-request deadline, bounded connections, request heads and body reads, no uncorrected
bypass, no cross-origin browser requests, and no prompt text in the logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError
from ..core.options import AlignerOptions


@dataclass
class ServeConfig(AlignerOptions):
    """Options of ``aligner serve`` (and of ``create_app``): the shared
    :class:`~aligner.core.options.AlignerOptions` (with a server's defaults) plus these."""

    host: str = field(default="127.0.0.1", metadata={"help": "interface to bind (0.0.0.0 exposes it to the network)"})
    port: int = field(default=8000, metadata={"help": "TCP port (0 picks a free one)"})
    workers: int = field(default=1, metadata={
        "help": "server processes on the port, each with its own corrector (and batcher); /metrics sums them all"})
    served_model_name: list[str] | None = field(default=None, metadata={
        "help": "model name(s) clients must send and /v1/models lists; default: --upstream-model, else 'aligner'"})
    max_new_tokens: int = field(default=512, metadata={"help": "cap on the corrector's generated tokens per answer"})
    batching: bool = field(default=True, metadata={"help": "gather concurrent requests into one corrector batch"})
    max_batch_size: int = field(default=16, metadata={"help": "most answers the corrector decodes together"})
    batch_wait_ms: float = field(default=10.0, metadata={"help": "longest a request waits for others to join its batch"})
    api_keys_env: str | None = field(default=None, metadata={
        "help": "name of an env var holding accepted bearer keys (comma-separated); enables auth"})
    api_keys_file: str | None = field(default=None, metadata={"help": "file with one accepted bearer key per line; enables auth"})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "larger request bodies get 413"})
    max_prompt_chars: int = field(default=32_000, metadata={"help": "longer message lists (all contents) get 400"})
    max_tokens_limit: int = field(default=4096, metadata={"help": "requests asking for more max_tokens get 400"})
    request_timeout: float = field(default=120.0, metadata={"help": "seconds one request may take before 504"})
    # a server fails fast: its client has its own retry logic
    upstream_timeout: float = field(default=60.0, metadata={"help": "seconds one upstream attempt may take"})
    upstream_retries: int = field(default=2, metadata={"help": "retries of a failing upstream call (429/5xx/timeouts)"})
    graceful_timeout: int = field(default=30, metadata={"help": "seconds in-flight requests get to finish on shutdown"})
    log_prompts: bool = field(default=False, metadata={"help": "include question text in the access log"})
    log_corrections: str | None = field(default=None, metadata={
        "help": "append every correction to PATH.jsonl, PATH.sqlite or a PostgreSQL database "
                "(postgresql://user[:password]@host[:port]/dbname; replicas share it): training data, "
                "and the rows POST /v1/feedback rates"})
    log_buffer_rows: int = field(default=10_000, metadata={
        "help": "rows a postgresql:// corrections log holds per process while the database is down; a row "
                "beyond them is lost: counted, logged by id and shown on /health and /metrics"})
    access_log: bool = field(default=True, metadata={"help": "one JSON access-log line per request on stderr"})
    allow_bypass: bool = field(default=False, metadata={
        "help": "honour the X-Aligner-Bypass header (the upstream's answer, uncorrected); off, the header gets 403"})
    body_timeout: float = field(default=30.0, metadata={
        "help": "seconds a client may take to send its request body; a slower body gets 408"})
    timeout_keep_alive: int = field(default=5, metadata={"help": "seconds an idle keep-alive connection stays open"})
    header_timeout: float = field(default=10.0, metadata={
        "help": "seconds a connection may take to send a whole request head, from opening (or from its "
                "last response); idle and slower connections are closed (408 if a head had begun)"})
    max_connections: int = field(default=1024, metadata={
        "help": "most open connections; a new one beyond it closes the connection idle longest, or gets "
                "503 when all are busy (0: no cap)"})
    limit_concurrency: int = field(default=512, metadata={
        "help": "most requests handled at once (idle connections do not count); beyond it 503 (0: no limit)"})
    cors_origin: list[str] | None = field(default=None, metadata={
        "help": "browser origins allowed to call this API (CORS), e.g. https://app.example ('*': any); "
                "without it, a request from a web page (an Origin header) gets 403"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("workers", "max_batch_size", "max_new_tokens", "max_body_bytes", "max_prompt_chars", "max_tokens_limit",
                     "timeout_keep_alive", "log_buffer_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"must be a positive int, got {value!r}.", field=name,
                                  fix=f"e.g. --{name.replace('_', '-')} {ServeConfig.__dataclass_fields__[name].default}.")
        for name in ("request_timeout", "upstream_timeout", "batch_wait_ms", "body_timeout", "header_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and name != "batch_wait_ms"):
                raise ConfigError(f"must be a positive number of {'ms' if name.endswith('ms') else 'seconds'}, "
                                  f"got {value!r}.", field=name, fix=f"e.g. --{name.replace('_', '-')} 10.")
        for name in ("limit_concurrency", "max_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"must be a whole number (0 for no limit), got {value!r}.", field=name,
                                  fix=f"e.g. --{name.replace('_', '-')} {ServeConfig.__dataclass_fields__[name].default}.")
        if isinstance(self.cors_origin, str):
            self.cors_origin = [self.cors_origin]
        for origin in self.cors_origin or []:
            if origin != "*" and (not isinstance(origin, str) or "://" not in origin or origin.endswith("/")):
                raise ConfigError(f"{origin!r} is not an origin.", field="cors_origin",
                                  fix="give scheme://host[:port] as a browser sends it in its Origin header, "
                                      "e.g. --cors-origin https://app.example http://localhost:3000 (no path, "
                                      "no trailing slash), or '*' for any.")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"must be 0-65535, got {self.port!r}.", field="port", fix="e.g. --port 8000.")
        if isinstance(self.served_model_name, str):
            self.served_model_name = [self.served_model_name]
        if self.log_corrections:
            from ..runtime.records import check_target

            self.log_corrections = check_target(self.log_corrections)

    def decoding(self) -> dict[str, Any]:
        """--max-new-tokens is a ceiling, not a chosen length: the answer-relative cap stays."""
        return {"max_new_tokens": self.max_new_tokens, "cap_to_answer": True}

    def uvicorn_options(self) -> dict[str, Any]:
        """The connection limits uvicorn enforces, for ``aligner serve`` and ``ServerThread`` alike:
        its h11 protocol with a deadline for each request head and a connection cap
        (:mod:`aligner.serve.connections`). The request limit is the app's own
        (``RequestLimitMiddleware``): uvicorn's would count idle sockets and answer in plain text."""
        from .connections import bounded_protocol

        return {"http": bounded_protocol(self.header_timeout, self.max_connections or None), "ws": "none",
                "timeout_keep_alive": self.timeout_keep_alive, "limit_concurrency": None}

    def load_api_keys(self) -> set[str] | None:
        """Accepted bearer keys, or None when auth is off. A named but empty source is an error:
        a typo must not silently open the server to everyone."""
        if not self.api_keys_env and not self.api_keys_file:
            return None
        keys: set[str] = set()
        if self.api_keys_env:
            raw = os.environ.get(self.api_keys_env, "")
            keys |= {k.strip() for k in raw.split(",") if k.strip()}
            if not keys and not self.api_keys_file:
                raise ConfigError(f"env var {self.api_keys_env} is unset or empty.", field="api_keys_env",
                                  fix=f"export {self.api_keys_env}=key1,key2 (or drop --api-keys-env to disable auth).")
        if self.api_keys_file:
            p = Path(self.api_keys_file).expanduser()
            if not p.is_file():
                raise ConfigError(f"no such file {str(p)!r}.", field="api_keys_file",
                                  fix="pass a file with one key per line.")
            from_file = {ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
            if not from_file:
                raise ConfigError(f"{p} holds no keys.", field="api_keys_file", fix="write one key per line.")
            keys |= from_file
        return keys
