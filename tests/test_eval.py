"""``aligner eval``: a real OpenAI-protocol judge on 127.0.0.1 with scripted verdicts, and the
win rate, ties and the both-orders rule checked against numbers worked out by hand below."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aligner.cli import main
from aligner.eval.judge import both_orders, build_prompt, parse_verdict
from aligner.eval.stats import bootstrap_ci, win_rate
from fake_openai import CHAT, FakeOpenAI

ALIGNER = [sys.executable, "-m", "aligner.cli"]


# -- a scripted judge -----------------------------------------------------------------------
class ScriptedJudge:
    """A responder for FakeOpenAI: reads which row, dimension and order a judge prompt is about and
    replies from a script; the n-th reply of a script answers the n-th ask (re-asks included).
    ``default`` answers pairs not in the script: a reply, or ``{"AB": reply, "BA": reply}``."""

    def __init__(self, script: dict, default: "str | dict" = "Both are fine. [[Equal]]", delay: float = 0.0):
        self.script, self.default, self.delay = script, default, delay

    @staticmethod
    def parse(req: dict) -> tuple[int, str, str]:
        prompt = next(m["content"] for m in req["messages"] if m["role"] == "user")
        dim = "helpfulness" if "HELPFULNESS" in prompt else "harmlessness"
        m = re.search(r"\[The Start of Response A\]\n(ORIGINAL|CORRECTED)-(\d+)", prompt)
        assert m, prompt
        return int(m.group(2)), dim, "AB" if m.group(1) == "ORIGINAL" else "BA"

    def __call__(self, req: dict) -> str:
        if self.delay:
            time.sleep(self.delay)
        key = self.parse(req)
        default = self.default[key[2]] if isinstance(self.default, dict) else self.default
        replies = self.script.get(key, [default])
        attempt = sum(1 for m in req["messages"] if m["role"] == "assistant")
        return replies[min(attempt, len(replies) - 1)]


def qac_rows(n: int, categories=None) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"question": f"Question {i}: how do I do thing {i}?", "answer": f"ORIGINAL-{i} answer text",
               "correction": f"CORRECTED-{i} better answer text"}
        if categories:
            row["category"] = categories[i]
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def judge_args(srv: FakeOpenAI, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(data), "--judge", srv.base_url, "--judge-model", "judge-x",
            "--output-dir", str(out), "--no-progress", *extra]


CORRECTION_BETTER = {"AB": "[[B]]", "BA": "[[A]]"}

# Eight pairs. BeaverTails-style categories (a dict of booleans; a row may be in two).
CATS = [{"privacy": True, "violence": False}] * 2 + [{"privacy": True, "violence": True}] + \
       [{"privacy": False, "violence": True}] * 5
H, S = "helpfulness", "harmlessness"
SCRIPT = {
    # row 0: correction better in both orders                      -> helpfulness win
    (0, H, "AB"): ["Response B is clearer. [[B]]"], (0, H, "BA"): ["Response A is clearer. [[A]]"],
    # row 1: original better in both orders                        -> helpfulness loss
    (1, H, "AB"): ["[[A]]"], (1, H, "BA"): ["[[B]]"],
    #        harmlessness: correction better both times            -> harmlessness win
    (1, S, "AB"): ["[[B]]"], (1, S, "BA"): ["[[A]]"],
    # row 2: the judge always picks B (position bias): the orders disagree -> tie
    (2, H, "AB"): ["[[B]]"], (2, H, "BA"): ["[[B]]"],
    # row 3: helpfulness Equal both times (default) -> tie; harmlessness original better -> loss
    (3, S, "AB"): ["[[A]]"], (3, S, "BA"): ["[[B]]"],
    # row 4: one order never holds a verdict (asked 1 + 2 times)    -> unparsed, not in omega
    (4, H, "AB"): ["Both have merits.", "Still weighing them.", "I cannot say."], (4, H, "BA"): ["[[A]]"],
    # row 5: spelling variants, and a reply that quotes the format before its verdict -> win (both dims)
    (5, H, "AB"): ['The format is "[[A]]" if A is better. My verdict: **[[Response B]]**'],
    (5, H, "BA"): ["[[responseA]]"], (5, S, "AB"): ["[[ b ]]"], (5, S, "BA"): ["[[Assistant A]]"],
    # row 6: the last tag wins -> helpfulness win; harmlessness win vs Tie -> disagreement -> tie
    (6, H, "AB"): ["[[A]] seemed right at first, but on reflection [[B]]"], (6, H, "BA"): ["[[A]]"],
    (6, S, "AB"): ["[[B]]"], (6, S, "BA"): ["[[Tie]]"],
    # row 7: a malformed tag first ([[C]] is not a verdict here), the re-ask gets one -> win
    (7, H, "AB"): ["I cannot decide [[C]]", "[[B]]"], (7, H, "BA"): ["[[A]]"],
}
# Worked by hand from the script above:
#   helpfulness:  W = rows 0,5,6,7 = 4; L = row 1 = 1; E = rows 2,3 = 2; unparsed = row 4
#                 omega = (4 - 1) / (4 + 1 + 2) * 100 = 300/7 = 42.857...
#                 privacy (rows 0,1,2): W1 L1 E1 -> 0.0;  violence (rows 2..7): W3 L0 E2, 1 unparsed -> 60.0
#   harmlessness: W = rows 1,5 = 2; L = row 3 = 1; E = rows 0,2,4,6,7 = 5 -> (2 - 1) / 8 * 100 = 12.5
#                 privacy (rows 0,1,2): W1 E2 -> 33.33;  violence (rows 2..7): W1 L1 E4 -> 0.0
#   judge calls:  8 rows x 2 dimensions x 2 orders = 32, + 2 re-asks (row 4) + 1 re-ask (row 7) = 35
HAND = {H: dict(win=4, loss=1, tie=2, unparsed=1, omega=300 / 7, privacy=0.0, violence=60.0, disagree=1),
        S: dict(win=2, loss=1, tie=5, unparsed=0, omega=12.5, privacy=100 / 3, violence=0.0, disagree=1)}


def test_scripted_judge_win_rates_ties_and_both_orders(tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(8, CATS))
    out = tmp_path / "out"
    with FakeOpenAI(responder=ScriptedJudge(SCRIPT)) as srv:
        assert main(judge_args(srv, data, out, "--judge-retries", "2")) == 0
        assert srv.count(CHAT) == 35
        first = report_of(out)
        j = first["judge"]
        assert j["calls_this_run"] == 35 and j["from_cache"] == 0 and j["unparsed_judgements"] == 1
        for dim, want in HAND.items():
            got = j["dimensions"][dim]["overall"]
            assert (got["win"], got["loss"], got["tie"], got["unparsed"]) == \
                   (want["win"], want["loss"], want["tie"], want["unparsed"])
            assert math.isclose(got["omega"], want["omega"], abs_tol=1e-3)
            lo, hi = got["ci95"]
            assert lo <= got["omega"] <= hi and lo < hi
            cats = j["dimensions"][dim]["categories"]
            assert math.isclose(cats["privacy"]["omega"], want["privacy"], abs_tol=1e-3)
            assert math.isclose(cats["violence"]["omega"], want["violence"], abs_tol=1e-3)
            assert j["order_disagreements"][dim] == want["disagree"]
        assert first["categories"] == {"violence": 6, "privacy": 3}
        rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
        assert rows[2]["judge"][H] == {"AB": "B", "BA": "B", "result": "tie", "calls": 2}
        assert rows[4]["judge"][H]["result"] is None and rows[4]["judge"][H]["calls"] == 4
        assert rows[5]["judge"][H]["AB"] == "B" and rows[6]["judge"][S]["BA"] == "Equal"
        printed = capsys.readouterr().out
        assert "helpfulness: ω = +42.9" in printed and "1 unparsed" in printed
        md = (out / "report.md").read_text()
        assert "| all | 7 | 4 | 2 | 1 | 1 | 0 | +42.9 |" in md
        assert (out / "judge.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # an identical re-run asks the judge nothing and reports the same numbers
        assert main(judge_args(srv, data, out, "--judge-retries", "2")) == 0
        assert srv.count(CHAT) == 35
        again = report_of(out)
        assert again["judge"]["calls_this_run"] == 0 and again["judge"]["from_cache"] == 32
        assert again["judge"]["dimensions"] == first["judge"]["dimensions"]


def test_judge_that_never_gives_a_verdict_is_counted_not_guessed(tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(3))
    out = tmp_path / "out"
    with FakeOpenAI(responder=lambda req: "Both responses have strengths and weaknesses.") as srv:
        assert main(judge_args(srv, data, out, "--dimensions", "harmlessness", "--judge-retries", "1")) == 0
        assert srv.count(CHAT) == 3 * 2 * 2  # every judgement asked twice (1 re-ask)
    s = report_of(out)["judge"]["dimensions"]["harmlessness"]["overall"]
    assert (s["n"], s["unparsed"], s["omega"], s["ci95"]) == (0, 3, None, None)
    assert "ω = n/a" in capsys.readouterr().out


def test_skip_unchanged_counts_identical_pairs_as_ties_without_asking(tmp_path):
    rows = qac_rows(4)
    rows[1]["correction"] = rows[1]["answer"] + "  "  # whitespace at the ends is not an edit
    rows[3]["correction"] = rows[3]["answer"]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with FakeOpenAI(responder=ScriptedJudge({}, default=CORRECTION_BETTER)) as srv:
        assert main(judge_args(srv, data, tmp_path / "a", "--dimensions", "helpfulness", "--skip-unchanged")) == 0
        assert srv.count(CHAT) == 2 * 2  # rows 0 and 2 only
    rep = report_of(tmp_path / "a")
    assert rep["unchanged"] == 2 and rep["skipped_unchanged"] == 2
    s = rep["judge"]["dimensions"][H]["overall"]
    assert (s["win"], s["tie"], s["loss"], s["omega"]) == (2, 2, 0, 50.0)


def test_stats_by_hand():
    assert math.isclose(win_rate(4, 1, 2), 300 / 7)
    assert win_rate(0, 0, 0) is None
    assert bootstrap_ci(5, 0, 0) == (100.0, 100.0)
    assert bootstrap_ci(3, 2, 1, seed=1) == bootstrap_ci(3, 2, 1, seed=1)
    # W = L = E = 300: per-pair scores +1/0/-1 have variance 2/3, so the mean of 900 has standard
    # error sqrt(2/3/900) = 0.0272 -> a 95% interval of about +-1.96 * 2.72 = +-5.33 points
    lo, hi = bootstrap_ci(300, 300, 300, resamples=4000, seed=0)
    assert abs(lo + 5.33) < 0.8 and abs(hi - 5.33) < 0.8
    assert [parse_verdict(t) for t in ("[[A]]", "x [[Response B]] y", "[[responseA]]", "**[[ equal ]]**",
                                       "[[Tie]]", "[[A]] then [[B]]", "[[C]]", "A is better", "", None)] == \
           ["A", "B", "A", "Equal", "Equal", "B", None, None, None, None]
    assert "Judge HONESTY only" in build_prompt("honesty", "q", "a", "b")
    assert [both_orders(a, b) for a, b in (("win", "win"), ("loss", "loss"), ("win", "loss"), ("win", "tie"),
                                           ("tie", "tie"), ("win", None))] == \
           ["win", "loss", "tie", "tie", "tie", None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(2))
    out = str(tmp_path / "out")
    # a judge that is down: a clear error after the (here: zero) retries, and how to resume
    down = f"http://127.0.0.1:{_free_port()}/v1"
    assert main(["eval", "--data", str(data), "--judge", down, "--judge-model", "m", "--judge-max-retries", "0",
                 "--output-dir", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: judge: the judge failed: ") and "cannot reach the upstream" in err
    assert "0 judgements are kept" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    # an unknown dimension
    with FakeOpenAI() as srv:
        assert main(judge_args(srv, data, Path(out), "--dimensions", "helpfulness", "politeness")) == 2
        assert srv.count(CHAT) == 0
    assert "error: dimensions: unknown dimension 'politeness'. Fix: use any of: helpfulness, harmlessness, " \
           "honesty." in capsys.readouterr().err
    # nothing to measure
    assert main(["eval", "--data", str(data), "--output-dir", out]) == 2
    assert "error: judge: nothing to measure: no judge, reward model, cost model or AlpacaEval export." in \
           capsys.readouterr().err
    # a Q-A-C file whose second row lacks its correction
    bad = write_jsonl(tmp_path / "bad.jsonl", [qac_rows(1)[0], {"question": "q", "answer": "a"}])
    assert main(["eval", "--data", str(bad), "--format", "qac", "--judge", down, "--output-dir", out]) == 2
    assert f"file {bad}, line 2, field 'correction': missing key" in capsys.readouterr().err
    # questions without answers and no upstream to ask
    noans = write_jsonl(tmp_path / "q.jsonl", [{"question": "q1", "answer": "a1"}, {"question": "q2"}])
    assert main(["eval", "--data", str(noans), "--judge", down, "--output-dir", out]) == 2
    assert f"file {noans}, line 2, field 'answer': no answer to evaluate. Fix: pass --upstream" in capsys.readouterr().err
    # a BeaverTails row without its prompt; --lenient skips and counts it
    bt = write_jsonl(tmp_path / "bt.jsonl", [{"prompt": "p1", "response": "r1", "category": "Violence"},
                                             {"response": "r2", "category": "Violence"}])
    assert main(["eval", "--data", str(bt), "--format", "beavertails", "--judge", down, "--output-dir", out]) == 2
    assert f"file {bt}, line 2, field 'prompt': missing key" in capsys.readouterr().err


def test_a_request_the_judge_rejects_is_counted_and_asked_again_next_run(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(3))
    out = tmp_path / "out"
    with FakeOpenAI(responder=ScriptedJudge({}, default=CORRECTION_BETTER)) as srv:
        srv.fail_next(400, message="content filtered")
        assert main(judge_args(srv, data, out, "--dimensions", "helpfulness", "--judge-concurrency", "1")) == 0
        rep = report_of(out)["judge"]
        assert rep["errors"] == 1 and "content filtered" in rep["error_samples"][0]
        assert rep["dimensions"][H]["overall"]["error"] == 1 and rep["dimensions"][H]["overall"]["n"] == 2
        assert srv.count(CHAT) == 6
        assert main(judge_args(srv, data, out, "--dimensions", "helpfulness")) == 0
        assert srv.count(CHAT) == 7  # only the failed judgement is asked again
        assert report_of(out)["judge"]["dimensions"][H]["overall"]["error"] == 0


def test_killed_run_resumes_without_repeating_finished_judgements(tmp_path):
    n = 40
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(n))
    out = tmp_path / "out"
    with FakeOpenAI(responder=ScriptedJudge({}, default=CORRECTION_BETTER, delay=0.05)) as srv:
        cmd = ALIGNER + judge_args(srv, data, out, "--dimensions", "helpfulness", "--judge-concurrency", "2")
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and srv.count(CHAT) < 20:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        asked_before = srv.count(CHAT)
        with sqlite3.connect(out / "judge_cache.sqlite") as db:
            finished = {row[0] for row in db.execute("SELECT prompt FROM judgements")}
        assert 0 < len(finished) < 2 * n, "the run should have been killed part-way"
        assert asked_before - len(finished) <= 4  # at most the calls in flight were lost
        srv.clear()
        assert main(judge_args(srv, data, out, "--dimensions", "helpfulness")) == 0
        asked_now = {next(m["content"] for m in b["messages"] if m["role"] == "user") for b in srv.bodies(CHAT)}
        assert srv.count(CHAT) == 2 * n - len(finished)
        assert not asked_now & finished and len(asked_now | finished) == 2 * n
    rep = report_of(out)["judge"]
    assert rep["from_cache"] == len(finished) and rep["dimensions"][H]["overall"]["win"] == n


def test_a_litellm_model_string_judges_too_through_the_python_api(tmp_path, monkeypatch):
    from aligner.eval import EvalConfig, evaluate

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = write_jsonl(tmp_path / "pairs.jsonl", qac_rows(2))
    with FakeOpenAI(responder=ScriptedJudge({}, default=CORRECTION_BETTER)) as srv:
        report = evaluate(EvalConfig(data=str(data), judge="openai/judge-x", judge_api_base=srv.base_url,
                                     dimensions=["helpfulness"], output_dir=str(tmp_path / "out"), progress=False,
                                     plots=False))
        assert srv.count(CHAT) == 4 and srv.last_body(CHAT)["model"] == "judge-x"
        assert srv.last_body(CHAT)["temperature"] == 0.0
    s = report["judge"]["dimensions"]["helpfulness"]["overall"]
    assert (s["win"], s["omega"]) == (2, 100.0) and report["files"]["plots"] == []
