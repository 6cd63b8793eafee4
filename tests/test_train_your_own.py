"""The docs' "Train your own corrector in two minutes" recipe, run as written (smaller).

The commands are read from docs/train-your-own.md and run in a shell in a temporary folder, with
three numbers made smaller so the test stays CPU-cheap (112 rows instead of 2,000, 8 held-out rows
instead of 100, 20 steps instead of 120: about a minute of CPU in all) and the demo corrector's path made absolute. Everything
else — the flags, the learning rate, the ``sed`` policy step — is the page's. Checked: the data
holds the new placeholder, the training loss falls (the page's "what to watch"), and the trained
corrector loads through ``aligner correct`` and answers.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "train-your-own.md"
SMALLER = {"--n 2000": "--n 112", "--eval-n 100": "--eval-n 8", "--max-steps 120": "--max-steps 20 --logging-steps 5"}


def recipe() -> list[str]:
    block = re.search(r"## The recipe.*?```bash\n(.*?)```", PAGE.read_text(), re.S).group(1)
    text = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.skipif(shutil.which("sed") is None, reason="the recipe's policy step is a sed command")
@pytest.mark.timeout(1200)  # five processes, each loading torch: slow on a shared machine
def test_the_two_minute_recipe_runs_and_learns(tmp_path):
    pytest.importorskip("trl")
    commands = recipe()
    assert [c.split()[:2] for c in commands] == [["aligner", "data"], ["sed", "-E"], ["sed", "-E"],
                                                 ["aligner", "train"], ["aligner", "correct"]]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    outputs = []
    for command in commands:
        for big, small in SMALLER.items():
            command = command.replace(big, small)
        command = command.replace("aligner/assets/demo-corrector", str(REPO / "aligner" / "assets" / "demo-corrector"))
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, (command, done.stderr[-3000:])
        outputs.append(done.stdout)

    rows = [json.loads(line) for line in (tmp_path / "mine.jsonl").read_text().splitlines()]
    assert len(rows) == 112
    redacted = [r for r in rows if r["category"] == "redact"]
    assert redacted and all("[REDACTED]" in r["correction"] for r in redacted)
    assert not any(re.search(r"\[(EMAIL|PHONE|CARD|ADDRESS)\]", r["correction"]) for r in rows)
    assert len((tmp_path / "mine-heldout.jsonl").read_text().splitlines()) == 8

    out = tmp_path / "runs" / "mine"
    assert json.loads((out / "aligner_config.json").read_text())["template"] == "aligner-v1.0"
    losses = [h["loss"] for h in json.loads((out / "loss_history.json").read_text()) if "loss" in h]
    assert len(losses) >= 4
    assert losses[-1] < 0.5 * max(losses[:2]), losses  # the new placeholder is being learnt

    correction = outputs[-1].strip()
    assert correction.startswith("You can email Maria at ")
    assert "maria.lopez@example.com" not in correction
