"""A command started for a test (``aligner serve``, ``aligner demo``): waiting until it answers, stopping it.

Real processes on real sockets: a test waits for the page the way a user's browser would, and what
the process printed is the failure message when it exits or never answers. The benchmarks that
start ``aligner serve`` (bench/replicas.py, bench/serve_connections.py) start it here too.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now, for a server about to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(proc: subprocess.Popen, url: str, log: Path, seconds: float,
                  ready: Callable[[int, str], bool] = lambda status, body: status == 200) -> str:
    """The body of ``url`` once ``ready(status, body)`` says so; the test fails with ``log`` (what
    the process printed) if the process exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                body = page.read().decode("utf-8", "replace")
                if ready(page.status, body):
                    return body
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


def stop(proc: subprocess.Popen, seconds: float = 30) -> None:
    """Stop it as Ctrl+C's SIGTERM would, killed if it has not ended in ``seconds``."""
    proc.terminate()
    _reap(proc, seconds)


def _reap(proc: subprocess.Popen, seconds: float) -> None:
    """Wait for a process already told to stop (one SIGTERM only: a second one makes uvicorn skip its
    graceful shutdown), killed if it has not ended in ``seconds``."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def aligner_serve(*args: str, replicas: int = 1, cwd: Path | None = None, env: dict[str, str] | None = None,
                  seconds: float = 300) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """``replicas`` processes of ``aligner serve ARGS``, each on a free port of 127.0.0.1, started
    together (each loads its model meanwhile), until every one answers ``/health`` (``seconds`` in
    all): ``(url, process)`` pairs. ``env`` adds to this process's environment. On the way out all
    are sent SIGTERM at once, and each is killed if it has not ended in 60 s."""
    logs = Path(tempfile.mkdtemp(prefix="aligner-serve-"))
    started: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        for _ in range(replicas):
            port = free_port()
            log = logs / f"serve-{port}.log"
            with log.open("w") as out:
                proc = subprocess.Popen([sys.executable, "-m", "aligner", "serve", "--port", str(port),
                                         "--no-access-log", *args], stdout=out, stderr=subprocess.STDOUT,
                                        cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
            started.append((f"http://127.0.0.1:{port}", proc, log))
        deadline = time.monotonic() + seconds
        for url, proc, log in started:
            wait_for_page(proc, url + "/health", log, deadline - time.monotonic())
        yield [(url, proc) for url, proc, _ in started]
    finally:
        for _, proc, _ in started:
            proc.terminate()
        for _, proc, _ in started:
            _reap(proc, 60)
        shutil.rmtree(logs, ignore_errors=True)
