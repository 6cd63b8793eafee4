"""The aligner command: in-process for speed, and as the real console script for the resume test."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aligner.cli import main

ALIGNER = [sys.executable, "-m", "aligner.cli"]


def test_templates_list_and_show(capsys):
    assert main(["templates", "list"]) == 0
    out = capsys.readouterr().out
    assert "aligner-v1.0 (default)" in out and "qac" in out and "metaaligner" in out
    assert main(["templates", "show", "qac", "--question", "Q", "--answer", "A"]) == 0
    assert capsys.readouterr().out == "BEGINNING OF CONVERSATION: USER: ##Question: Q\n##Answer: A\n##Correction:  ASSISTANT:\n"


def test_correct_json(capsys, tiny_causal_path):
    code = main(["correct", "How are you?", "--answer", "Fine.", "--corrector", str(tiny_causal_path),
                 "--max-new-tokens", "8", "--json"])
    assert code == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"question", "answer", "correction", "changed"} <= set(obj)
    assert obj["answer"] == "Fine." and obj["demo"] is False


def test_config_file_and_flags(tmp_path, capsys, tiny_causal_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"corrector: {tiny_causal_path}\nmax_new_tokens: 6\ntemplate: qac\njson: true\n")
    assert main(["correct", "Q?", "--answer", "A.", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["template"] == "qac"
    cfg.write_text("corector: x\n")
    assert main(["correct", "Q?", "--config", str(cfg)]) == 2
    assert "unknown key 'corector'" in capsys.readouterr().err


def test_errors_are_one_line_not_tracebacks(capsys, tiny_causal_path):
    assert main(["correct", "--corrector", str(tiny_causal_path)]) == 2
    assert "error: question: no question given." in capsys.readouterr().err
    assert main(["correct", "Q", "--answer", "A", "--corrector", "/nope/model"]) == 2
    err = capsys.readouterr().err
    assert "corrector: cannot load corrector '/nope/model'" in err and "Traceback" not in err
    assert main(["correct", "Q", "--answer", "A", "--corrector", str(tiny_causal_path), "--template", "zz"]) == 2
    assert "template: unknown template 'zz'" in capsys.readouterr().err
    assert main(["correct", "--input", "x.jsonl", "--corrector", str(tiny_causal_path)]) == 2
    assert "--input and --output go together" in capsys.readouterr().err


def test_bad_input_rows_name_file_row_and_field(tmp_path, capsys, tiny_causal_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"question": "ok"}\n{"answer": "no question"}\n')
    assert main(["correct", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                 "--corrector", str(tiny_causal_path)]) == 2
    assert f"file {src}, line 2, field 'question': missing (the row has: answer)." in capsys.readouterr().err


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_killed_file_run_resumes_without_loss_or_duplicates(tmp_path, tiny_causal_path):
    n = 160
    src = tmp_path / "questions.jsonl"
    src.write_text("".join(json.dumps({"question": f"Question number {i}?", "answer": f"Answer {i}."}) + "\n"
                           for i in range(n)))
    out = tmp_path / "out.jsonl"
    cmd = ALIGNER + ["correct", "--input", str(src), "--output", str(out), "--corrector", str(tiny_causal_path),
                     "--max-new-tokens", "8", "--batch-size", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size > 0 and len(out.read_text().splitlines()) >= 8:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _rows(out) if out.exists() else []
    assert 0 < len(first) < n, "the run should have been killed part-way"
    # a torn last line, as a crash mid-write leaves it, is cut off and redone
    with out.open("a") as fh:
        fh.write('{"row": 99999, "question": "torn')
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["total"] == n and counts["skipped"] == len(first) and counts["written"] == n - len(first)
    rows = _rows(out)
    assert sorted(r["row"] for r in rows) == list(range(n))
    assert all(r["question"] == f"Question number {r['row']}?" for r in rows)


def test_console_script_help():
    exe = Path(sys.executable).parent / "aligner"
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "correct" in res.stdout and "templates" in res.stdout
