"""The flywheel (issue 25 item 4): ``aligner export --from-log`` over the three log backends, its
filters counted with their reasons, and the whole loop — serve with a log, rate, export,
``aligner train``, serve the new corrector — run for real on a tiny corrector."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aligner import Aligner
from aligner.cli import main
from aligner.contracts.errors import ConfigError
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.runtime.logs import open_log
from aligner.runtime.records import feedback_row
from aligner.serve.runner import ServerThread
from conftest import read_rows

DAY = 86_400.0
T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def logged(i: int, **kw) -> dict:
    return {"id": f"chatcmpl-{i}", "timestamp": T0 + i * DAY, "model": "m", "question": f"How do I do thing {i}?",
            "answer": f"You do thing {i} badly.", "correction": f"You do thing {i} well.", "changed": True,
            "corrector": "tiny", "timings": {}, "fallback": None, "gate": None, **kw}


@pytest.fixture(params=["jsonl", "sqlite", "postgresql"])
def log_target(request, tmp_path) -> str:
    """A log of each backend holding the same eight rows and ratings."""
    target = request.getfixturevalue("pg_url") if request.param == "postgresql" else str(tmp_path / f"log.{request.param}")
    log = open_log(target)
    rows = [logged(0), logged(1), logged(2, correction="You do thing 2 badly.", changed=False),  # unchanged
            logged(3, correction="You do thing 3 badly.", fallback="repetition"),  # served the answer
            logged(4, correction="You do thing 4 badly.", gate={"flagged": False, "score": 0.1}),  # gate passed it
            logged(5), logged(6, fallback="too_long", correction="You do thing 6 badly."), logged(7)]
    for r in rows:
        log.write(r)
    for cid, fb in [("chatcmpl-0", feedback_row(1)), ("chatcmpl-1", feedback_row(-1, corrected_text="Thing 1, done right.")),
                    ("chatcmpl-5", feedback_row(1, label="great", corrected_text="Thing 5, even better.")),
                    ("chatcmpl-6", feedback_row(1, corrected_text="Thing 6, as it should be.")),
                    ("chatcmpl-2", feedback_row(0))]:
        assert log.feedback(cid, fb)
    log.close()
    return target


def export(capsys, *args: str) -> tuple[int, str]:
    rc = main(["export", *args])
    return rc, capsys.readouterr().out


def test_export_from_each_log_keeps_training_rows_and_says_what_it_left_out(log_target, tmp_path, capsys):
    out = tmp_path / "qac.jsonl"
    rc, said = export(capsys, "--from-log", log_target, "--format", "qac", str(out))
    assert rc == 0
    rows = read_rows(out)
    # fallback rows (3, 6) and the row the gate passed (4) are not corrector verdicts
    assert [r["meta"]["id"] for r in rows] == ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2", "chatcmpl-5", "chatcmpl-7"]
    assert rows[1] == {"question": "How do I do thing 1?", "answer": "You do thing 1 badly.",
                       "correction": "You do thing 1 well.", "source": rows[1]["source"], "row": 2,
                       "meta": {"id": "chatcmpl-1", "rating": -1, "corrector": "tiny", "timestamp": T0 + DAY}}
    assert "read 8 rows" in said and "dropped 2: fallback" in said and "dropped 1: not corrected (the gate" in said
    assert "kept 5 QAC rows" in said


def test_export_filters_by_rating_time_change_and_takes_user_corrections(log_target, tmp_path, capsys):
    out = tmp_path / "sft.jsonl"
    rc, said = export(capsys, "--from-log", log_target, "--format", "sft", str(out), "--min-rating", "1",
                      "--with-user-corrections")
    assert rc == 0
    # rated 1: rows 0, 5 and 6 (whose fallback no longer matters: a user wrote its correction)
    assert read_rows(out) == [{"prompt": "User: How do I do thing 0?\nAssistant:", "completion": " You do thing 0 well."},
                              {"prompt": "User: How do I do thing 5?\nAssistant:", "completion": " Thing 5, even better."},
                              {"prompt": "User: How do I do thing 6?\nAssistant:", "completion": " Thing 6, as it should be."}]
    assert "dropped 3: rated below 1 or not rated (--min-rating)" in said and "2 rows take a user's own" in said

    dpo = tmp_path / "dpo.jsonl"
    rc, said = export(capsys, "--from-log", log_target, "--format", "dpo", str(dpo), "--since", "2026-05-29T20:26:40",
                      "--until", str(T0 + 6 * DAY), "--with-user-corrections", "--changed-only")
    assert rc == 0
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in read_rows(dpo)] == [
        ("User: How do I do thing 1?\nAssistant:", " Thing 1, done right.", " You do thing 1 badly."),
        ("User: How do I do thing 5?\nAssistant:", " Thing 5, even better.", " You do thing 5 badly.")]
    for reason in ("dropped 1: before --since 2026-05-29T20:26:40+00:00", "dropped 2: at or after --until",
                   "dropped 1: unchanged (--changed-only)", "dropped 1: fallback", "dropped 1: not corrected"):
        assert reason in said, said

    # the corrector's own corrections when users' are not asked for; nothing left is an error naming the filters
    rc, _ = export(capsys, "--from-log", log_target, "--format", "qac", str(out), "--min-rating", "1")
    assert [r["correction"] for r in read_rows(out)] == ["You do thing 0 well.", "You do thing 5 well."]
    assert main(["export", "--from-log", log_target, "--format", "qac", str(out), "--since", "2030-01-01"]) == 2
    assert "--since/--until, --min-rating" in capsys.readouterr().err


def test_export_from_log_refuses_bad_flags_naming_them(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(logged(0)) + "\n")
    cases = [(["--format", "qac", "o.jsonl", "--min-rating", "1"], "--min-rating: only for a served log"),
             (["--from-log", str(log), "--format", "qac", "in.jsonl", "o.jsonl"], "give only OUT.jsonl"),
             (["--from-log", str(tmp_path / "nope.sqlite"), "--format", "qac", "o.jsonl"], "from_log: no such file"),
             (["--from-log", "mysql://x/y", "--format", "qac", "o.jsonl"], "log_corrections: unknown format"),
             (["--from-log", str(log), "--format", "qac", "o.jsonl", "--since", "last tuesday"], "since: cannot read")]
    for args, message in cases:
        assert main(["export", *args]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="min_rating"):
        from aligner.data.from_log import LogFilters

        LogFilters(min_rating=2)


def test_the_flywheel_serve_rate_export_train_serve(tiny_causal_path, tmp_path, capsys):
    """serve with a log → users rate (one writes a better correction) → export → aligner train →
    the new corrector serves."""
    log = tmp_path / "traffic.sqlite"
    al = Aligner(None, corrector=str(tiny_causal_path), decoding={"max_new_tokens": 12})
    questions = [f"What is {i} plus {i}?" for i in range(6)]
    with ServerThread(create_app(al, ServeConfig(log_corrections=str(log)))) as srv:
        ids = []
        for i, q in enumerate(questions):
            r = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={"model": "aligner", "messages": [
                {"role": "user", "content": q}, {"role": "assistant", "content": f"It is {2 * i + 1}."}]})
            assert r.status_code == 200
            ids.append(r.json()["aligner"]["id"])
        ratings = [(ids[0], {"rating": 1, "corrected_text": "It is 0."}), (ids[1], {"rating": 1, "corrected_text": "It is 2."}),
                   (ids[2], {"rating": 1, "corrected_text": "It is 4."}), (ids[3], {"rating": -1})]
        for cid, fb in ratings:
            assert httpx.post(srv.base_url + "/feedback", json={"id": cid, **fb}).status_code == 200
    data = tmp_path / "qac.jsonl"
    rc, said = export(capsys, "--from-log", str(log), "--format", "qac", str(data), "--min-rating", "1",
                      "--with-user-corrections")
    assert rc == 0 and [r["correction"] for r in read_rows(data)] == ["It is 0.", "It is 2.", "It is 4."], said
    new = tmp_path / "corrector-v2"
    assert main(["train", "--data", str(data), "--base-model", str(tiny_causal_path), "--output-dir", str(new),
                 "--max-steps", "2", "--batch-size", "3", "--effective-batch-size", "3", "--max-length", "256",
                 "--no-progress", "--learning-rate", "1e-3"]) == 0
    capsys.readouterr()
    served = Aligner(None, corrector=str(new), decoding={"max_new_tokens": 12})
    with ServerThread(create_app(served, ServeConfig(log_corrections=str(tmp_path / "v2.jsonl")))) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={"model": "aligner", "messages": [
            {"role": "user", "content": "What is 3 plus 3?"}, {"role": "assistant", "content": "It is 7."}]})
    assert r.status_code == 200 and r.json()["aligner"]["corrector"] == str(new)
    assert Path(new, "aligner_config.json").is_file()


def test_the_grafana_dashboard_queries_only_metrics_the_server_exports(tmp_path):
    """examples/grafana-aligner-serve.json: valid JSON, and every metric its queries name is one a
    real server exports (a renamed metric would leave a panel silently empty)."""
    import re

    from prometheus_client.parser import text_string_to_metric_families

    from aligner.serve.metrics import ServeMetrics

    dash = json.loads((Path(__file__).resolve().parents[1] / "examples" / "grafana-aligner-serve.json").read_text())
    exported = set()
    for fam in text_string_to_metric_families(ServeMetrics().exposition().decode()):
        exported |= {fam.name, fam.name + "_total", fam.name + "_bucket", fam.name + "_sum", fam.name + "_count"}
    queried = {name for panel in dash["panels"] for t in panel["targets"]
               for name in re.findall(r"\b(aligner_[a-z_]+)", t["expr"])}
    assert len(dash["panels"]) >= 10 and queried
    assert queried <= exported, queried - exported
    assert {"aligner_requests_total", "aligner_corrections_total", "aligner_log_pending_rows",
            "aligner_time_to_first_piece_seconds_bucket", "aligner_upstream_errors_total"} <= queried
