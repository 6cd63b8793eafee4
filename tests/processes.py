"""A command started for a test (``aligner serve``, ``aligner demo``): waiting until it answers, stopping it.

Real processes on real sockets: a test waits for the page the way a user's browser would, and what
the process printed is the failure message when it exits or never answers.
"""
from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable


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


def stop(proc: subprocess.Popen) -> None:
    """Stop it as Ctrl+C's SIGTERM would, killed if it has not ended in 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
