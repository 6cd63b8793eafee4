"""Every command and snippet the README shows is run: its quick starts here, its set-up by CI.

The blocks are read from README.md itself, so a changed quick start is tested as written. The
README's printed results (the comments after ``print``, the diff it quotes) are checked against what
the commands really print. Two substitutions only, at the network edge: the serve quick start's
upstream (Ollama on its default port) is a real OpenAI-protocol server on 127.0.0.1
(``tests/fake_openai.py``), and the ports are free ones. Everything else runs as a user runs it:
the installed ``aligner`` command in a subprocess, the Python blocks in a fresh interpreter, the
real ``openai`` client against a real ``aligner serve``.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from processes import stop, wait_for_page

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ALIGNER = str(Path(sys.executable).parent / "aligner")
DANA = ("You can write to Dana Whitfield at dana.whitfield@riverside.org or call her on 415-555-0132 "
        "before Friday.")
DANA_CORRECTED = "You can write to Dana Whitfield at [EMAIL] or call her on [PHONE] before Friday."
#: the commands of the README that this file runs (each test takes its lines from the README)
RUN_HERE = ("aligner correct ", "aligner serve ", "aligner demo")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def commands(block: str) -> list[str]:
    """The shell commands of a block: comments dropped, ``\\`` continuations joined."""
    text = re.sub(r"\\\n\s*", " ", block)
    return [line.split(" #")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def readme_commands(prefix: str) -> list[str]:
    return [c for b in blocks("bash") for c in commands(b) if c.startswith(prefix)]


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == "aligner"
    return [ALIGNER] + words[1:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def printed_comments(code: str) -> list[str]:
    """What a block's ``print(...)  # text`` lines say they print, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^print\(.*?\)\s+#\s*(.*)$", code, re.M)]


def test_every_readme_command_is_run_by_a_test():
    """A command added to the README without a test that runs it fails here."""
    ci = (REPO / ".ci" / "run").read_text()
    python_setup = [b for b in blocks("bash") if "pip install" in b]  # tests/test_readme_setup.py
    for block in blocks("bash"):
        for command in commands(block):
            covered = (command in ci or block in python_setup or command.startswith(RUN_HERE))
            assert covered, f"README command run by no test: {command}"
    assert "mkdocs build --strict" in ci and "\npytest -q" in ci  # the Development block's two commands
    assert len(blocks("python")) == 2  # the Python and the serve quick starts, both run below


def test_python_quick_start_prints_what_it_says():
    code = blocks("python")[0]
    assert "OPENAI_API_KEY" not in code  # the first snippet needs nothing
    out = run_python(code)
    correction, diff = printed_comments(code)
    assert correction == DANA_CORRECTED
    assert out[0] == correction
    assert out[1].startswith(diff.removesuffix("...]").rstrip(" ,"))  # the README shows its head
    assert "('-', '415-555-0132'), ('+', '[PHONE]')" in out[1]


def test_install_line_prints_what_the_readme_says():
    """The install line ends with a correction; CI runs the line, this checks what it prints."""
    install = commands(blocks("bash")[0])[0]
    maria = install.split("&&")[-1].strip()
    assert maria.startswith("aligner correct ")
    done = subprocess.run(argv(maria), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    said = re.search(r"It prints `([^`]+)`", README).group(1)
    assert done.stdout.strip() == said == "You can email Maria at [EMAIL]. Call Maria on [PHONE] after six."
    assert "demo corrector" in done.stderr  # the toy says it is one


def test_cli_quick_start_prints_what_the_readme_quotes():
    arithmetic, as_json = readme_commands("aligner correct \"")[-2:]  # the install line's Maria: above
    done = subprocess.run(argv(arithmetic), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    correction, diff = done.stdout.splitlines()
    assert correction == "I think 17 + 26 = 43, but check it."
    assert f"`{diff}`" in README  # the diff the README quotes, verbatim
    assert "[-44][+43]," in diff

    done = subprocess.run(argv(as_json), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["correction"] == DANA_CORRECTED and row["changed"] is True
    assert {"question", "answer", "correction", "changed", "timings"} <= set(row)


def test_serve_quick_start_with_the_openai_client(tmp_path):
    (serve,) = readme_commands("aligner serve ")
    client_code = blocks("python")[1]
    words = argv(serve)
    port = free_port()
    with FakeOpenAI(responder=lambda req: DANA, models=("llama3.2",)) as upstream:
        words[words.index("--upstream") + 1] = upstream.base_url  # Ollama's place, at the network edge
        words[words.index("--port") + 1] = str(port)
        log = tmp_path / "serve.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(words, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for_page(proc, f"http://127.0.0.1:{port}/health", log, 300)
            assert "http://localhost:8000/v1" in client_code
            out = run_python(client_code.replace("http://localhost:8000/v1", f"http://127.0.0.1:{port}/v1"))
        finally:
            stop(proc)
        body = upstream.last_body("/v1/chat/completions")
    assert out == [DANA_CORRECTED, DANA]  # the correction, then what the upstream said
    assert body["model"] == "llama3.2"
    assert body["messages"] == [{"role": "user", "content": "How do I reach Dana?"}]


def test_demo_quick_start_serves_the_page(tmp_path):
    (demo,) = readme_commands("aligner demo")
    assert demo == "aligner demo"
    port = free_port()
    assert "http://127.0.0.1:7860" in README  # the README's address is the default port
    log = tmp_path / "demo.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv(demo) + ["--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)
    try:
        html = wait_for_page(proc, f"http://127.0.0.1:{port}/", log, 300)
    finally:
        stop(proc)
    assert "gradio" in html.lower()
    assert "demo corrector" in log.read_text()  # the CLI says the toy is in use


@pytest.mark.parametrize("page", sorted(set(re.findall(r"\]\((docs/[^)#]+)", README))))
def test_readme_links_into_the_site_resolve(page):
    assert (REPO / page).is_file(), page
