"""aligner.data: Q-A-C / PKU-SafeRLHF / HH-RLHF loading, clear errors, lenient counts, CLI convert/stats."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from aligner.cli import main
from aligner.data import QAC, LoadResult, load, write_jsonl
from aligner.contracts.errors import ConfigError, DataError

# the real 1,700-row sample, when present ($ALIGNER_HH_RLHF or ../shared/data): exact counts and rows
# of that file; tests/test_hh_rlhf_sample.py covers the same behaviours on the project's own rows
from hh_data import REAL_HH as HH, needs_pinned_hh as needs_hh  # noqa: E402

ROWS = [{"question": "What is 2 + 2?", "answer": "2 + 2 = 5.", "correction": "2 + 2 = 4."},
        {"question": "Email?", "answer": "Write to a@b.com.", "correction": "Write to [EMAIL].", "category": "redact"},
        {"question": "Hi", "answer": "Hello there.", "correction": "Hello there."}]


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_lines(path: Path, rows: list) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def triples(result: LoadResult) -> list[tuple]:
    return [(r.question, r.answer, r.correction, r.category) for r in result.rows]


# ----------------------------------------------------------------------------- Q-A-C and file kinds

def test_qac_json_jsonl_gz_parquet_give_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [write_json(tmp_path / "a.json", ROWS), write_lines(tmp_path / "a.jsonl", ROWS),
             write_lines(tmp_path / "a.jsonl.gz", ROWS)]
    gz_list = tmp_path / "list.json.gz"
    with gzip.open(gz_list, "wt", encoding="utf-8") as fh:
        json.dump(ROWS, fh)
    files.append(gz_list)
    table = pa.Table.from_pylist([{**r, "category": r.get("category")} for r in ROWS])
    pq.write_table(table, tmp_path / "a.parquet")
    files.append(tmp_path / "a.parquet")

    results = [load(f) for f in files]
    expected = [(r["question"], r["answer"], r["correction"], r.get("category")) for r in ROWS]
    for f, res in zip(files, results):
        assert triples(res) == expected, f
        assert [r.row for r in res.rows] == [1, 2, 3]
        assert res.rows[0].source == str(f) and res.skipped == []


def test_qac_roundtrip_through_write_jsonl(tmp_path):
    rows = load(write_lines(tmp_path / "in.jsonl", ROWS)).rows
    out = tmp_path / "out.jsonl"
    assert write_jsonl(rows, out) == 3
    again = load(out).rows
    assert [(r.question, r.answer, r.correction, r.category) for r in again] == \
           [(r.question, r.answer, r.correction, r.category) for r in rows]
    first = json.loads(out.read_text().splitlines()[0])
    assert first["question"] == "What is 2 + 2?" and first["row"] == 1 and "category" not in first


def test_qac_to_dict_and_extra_keys_kept_in_meta(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [{**ROWS[0], "id": 7}])
    row = load(path).rows[0]
    assert row.meta == {"id": 7}
    assert QAC("q", "a", "c").to_dict() == {"question": "q", "answer": "a", "correction": "c"}


def test_limit_and_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[2]) + "\n" + json.dumps(ROWS[1]) + "\n")
    res = load(path)
    assert [r.row for r in res.rows] == [1, 3, 4]
    assert len(load(path, limit=2).rows) == 2


# ----------------------------------------------------------------------------- clear errors

def test_unknown_format_lists_the_formats(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(write_lines(tmp_path / "a.jsonl", ROWS), format="alpaca")
    assert info.value.field == "format"
    for name in ("qac", "pku-saferlhf", "hh-rlhf"):
        assert name in str(info.value)


@pytest.mark.parametrize("content", ["", "   \n\n", "[]"])
def test_empty_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load(path)
    assert str(path) in str(info.value) and "empty" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("bad, field, words", [
    ({"question": "q", "answer": "a"}, "correction", "missing key"),
    ({"question": "q", "answer": 3, "correction": "c"}, "answer", "expected a string, got a number (3)"),
    ({"question": "  ", "answer": "a", "correction": "c"}, "question", "is empty"),
    ({"question": "q", "answer": "a", "correction": ""}, "correction", "is empty"),
])
def test_bad_row_names_file_row_field_and_fix(tmp_path, bad, field, words):
    path = write_lines(tmp_path / "bad.jsonl", [ROWS[0], bad])
    with pytest.raises(DataError) as info:
        load(path)
    err = info.value
    assert (err.source, err.row, err.field) == (str(path), 2, field)
    text = str(err)
    assert str(path) in text and "line 2" in text and f"'{field}'" in text and words in text
    assert "Fix:" in text and "--lenient" in text


def test_over_long_text_and_bad_json_line(tmp_path):
    path = write_lines(tmp_path / "long.jsonl", [ROWS[0], {"question": "q", "answer": "x" * 50, "correction": "c"}])
    with pytest.raises(DataError, match="over max_chars=20") as info:
        load(path, max_chars=20)
    assert info.value.row == 2 and info.value.field == "answer"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="not valid JSON") as info:
        load(broken)
    assert info.value.row == 2
    notobj = write_json(tmp_path / "list.json", [ROWS[0], ["q", "a", "c"]])
    with pytest.raises(DataError, match="expected a JSON object"):
        load(notobj)


def test_lenient_skips_and_counts_with_reasons(tmp_path):
    rows = [ROWS[0], {"question": "q", "answer": "a"}, {"question": "q", "answer": 1, "correction": "c"},
            ROWS[2], {"question": "q", "answer": "", "correction": "c"}]
    path = write_lines(tmp_path / "mixed.jsonl", rows)
    with open(path, "a") as fh:
        fh.write("{oops\n")
    res = load(path, lenient=True)
    assert len(res.rows) == 2
    assert [(s.row, s.field) for s in res.skipped] == [(2, "correction"), (3, "answer"), (5, "answer"), (6, None)]
    assert res.skipped[0].reason.startswith("missing key")
    assert "expected a string" in res.skipped[1].reason and res.skipped[2].reason == "is empty."
    assert sum(res.skip_reasons().values()) == 4


def test_bad_limit_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(write_lines(tmp_path / "a.jsonl", ROWS), limit=-1)
    assert info.value.field == "limit"


def test_hub_id_branch_reports_a_clear_error_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load("no-such-org/no-such-dataset-xyz", split="train")
    assert "no-such-org/no-such-dataset-xyz" in str(info.value) and "Fix:" in str(info.value)


# ----------------------------------------------------------------------------- PKU-SafeRLHF

def pku(safe0: bool, safe1: bool, better: int, **extra) -> dict:
    row = {"prompt": "How do I get rid of a wasp nest?", "response_0": "R0 text.", "response_1": "R1 text.",
           "is_response_0_safe": safe0, "is_response_1_safe": safe1, "better_response_id": better,
           "safer_response_id": 0 if safe0 else 1,
           "response_0_harm_category": {"Violence": not safe0, "Animal Abuse": False, "Physical Harm": not safe0},
           "response_1_harm_category": {"Violence": False, "Animal Abuse": not safe1, "Physical Harm": False},
           "response_0_severity_level": 0 if safe0 else 2, "response_1_severity_level": 0 if safe1 else 3}
    row.update(extra)
    return row


@pytest.mark.parametrize("safe0, safe1, better, expected", [
    (True, True, 0, ("R1 text.", "R0 text.")),     # both safe: correction = better
    (True, True, 1, ("R0 text.", "R1 text.")),
    (True, False, 0, ("R1 text.", "R0 text.")),    # better is the safe one
    (False, True, 1, ("R0 text.", "R1 text.")),
    (True, False, 1, None),                        # better is unsafe: dropped
    (False, True, 0, None),
    (False, False, 0, None),                       # nothing safe: dropped
    (False, False, 1, None),
])
def test_pku_safe_unsafe_better_combinations(tmp_path, safe0, safe1, better, expected):
    path = write_lines(tmp_path / "pku.jsonl", [pku(safe0, safe1, better)])
    res = load(path, "pku-saferlhf")  # strict: drops are recorded, never raised
    if expected is None:
        assert res.rows == [] and len(res.skipped) == 1
        assert res.skipped[0].row == 1 and "better and safe" in res.skipped[0].reason
    else:
        (row,) = res.rows
        assert (row.question, row.answer, row.correction) == ("How do I get rid of a wasp nest?", *expected)
        assert row.meta["correction_harm"]["severity"] == 0 and row.meta["correction_response"] == better
        worse = 1 - better
        if not (safe0, safe1)[worse]:
            assert row.meta["answer_safe"] is False and row.meta["answer_harm"]["severity"] in (2, 3)
            assert row.meta["answer_harm"]["harm_categories"]


def test_pku_mixed_file_counts_drops_and_keeps_categories(tmp_path):
    rows = [pku(True, False, 0), pku(False, True, 0), pku(False, True, 1), pku(True, True, 1)]
    res = load(write_lines(tmp_path / "pku.jsonl", rows), "pku_saferlhf")
    assert len(res.rows) == 3 and [s.row for s in res.skipped] == [2]
    assert res.rows[0].meta["answer_harm"] == {"harm_categories": ["Animal Abuse"], "severity": 3}


@pytest.mark.parametrize("field, value, words", [
    ("response_1", None, "missing key"), ("is_response_0_safe", "yes", "expected true/false"),
    ("better_response_id", 2, "expected 0 or 1"), ("prompt", "", "is empty"),
])
def test_pku_bad_fields(tmp_path, field, value, words):
    row = pku(True, True, 0)
    if value is None:
        del row[field]
    else:
        row[field] = value
    path = write_lines(tmp_path / "pku.jsonl", [pku(True, True, 1), row])
    with pytest.raises(DataError) as info:
        load(path, "pku-saferlhf")
    assert (info.value.row, info.value.field) == (2, field) and words in str(info.value)
    res = load(path, "pku-saferlhf", lenient=True)
    assert len(res.rows) == 1 and res.skipped[0].field == field


# ----------------------------------------------------------------------------- HH-RLHF

@needs_hh
def test_hh_rlhf_real_sample_counts():
    res = load(HH, "hh-rlhf", lenient=True)
    assert len(res.rows) == 1693 and len(res.skipped) == 7
    assert [s.row for s in res.skipped if s.field == "chosen"] == [364, 663, 788]
    assert [s.row for s in res.skipped if s.field == "rejected"] == [1240, 1431, 1433, 1493]
    assert all(r.question.strip() and r.answer.strip() and r.correction.strip() for r in res.rows)
    with pytest.raises(DataError) as info:  # strict stops at the first bad row
        load(HH, "hh-rlhf")
    assert info.value.row == 364 and info.value.field == "chosen"


@needs_hh
def test_hh_rlhf_rows_by_hand():
    rows = {r.row: r for r in load(HH, "hh-rlhf", lenient=True, limit=10).rows}
    single = rows[6]  # checked by reading line 6 of the file
    assert single.question == "Is it possible to download a car?"
    assert single.answer == "I\u2019m sorry, I don\u2019t understand."
    assert single.correction == "I\u2019m not sure what you mean. Can you clarify?"
    assert single.meta == {"turns": 1}

    multi = rows[1]  # three human turns: earlier turns kept as context
    assert multi.meta == {"turns": 3}
    assert multi.question.startswith("Human: How much alcohol can I drink per day?\n\nAssistant: Alcohol is")
    assert "\n\nAssistant: That sounds like a great plan!" in multi.question
    assert multi.question.endswith("Human: I feel much better when I get drunk and consume a lot of alcohol.")
    assert multi.answer == ("I\u2019m glad that you\u2019re enjoying your alcohol intake. Can I ask about how "
                            "you feel when you don\u2019t drink alcohol?")
    assert multi.correction.startswith("Sounds like alcohol is something you use to calm down")


def test_hh_rlhf_hand_written_rows(tmp_path):
    ctx = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke"
    rows = [{"chosen": ctx + "\n\nAssistant: Why did the chicken cross the road?",
             "rejected": ctx + "\n\nAssistant: No."},
            {"chosen": "\n\nHuman: A\n\nAssistant: yes", "rejected": "\n\nHuman: B\n\nAssistant: no"},
            {"chosen": "\n\nHuman: A\n\nAssistant: yes", "rejected": "\n\nHuman: A\n\nAssistant:"},
            {"chosen": "\n\nHuman: A\n\nAssistant: yes"}]
    path = write_lines(tmp_path / "hh.jsonl", rows)
    res = load(path, "hh-rlhf", lenient=True)
    (row,) = res.rows
    assert row.question == "Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke"
    assert (row.answer, row.correction) == ("No.", "Why did the chicken cross the road?")
    assert [(s.row, s.field) for s in res.skipped] == [(2, "rejected"), (3, "rejected"), (4, "rejected")]
    assert "differs" in res.skipped[0].reason and "empty" in res.skipped[1].reason
    assert "missing key" in res.skipped[2].reason
    # max_chars judges the derived texts, not the whole transcript
    long_ctx = {"chosen": "\n\nHuman: " + "x " * 100 + "\n\nAssistant: short yes",
                "rejected": "\n\nHuman: " + "x " * 100 + "\n\nAssistant: short no"}
    path = write_lines(tmp_path / "hh2.jsonl", [long_ctx])
    assert load(path, "hh-rlhf", max_chars=250).rows[0].correction == "short yes"
    with pytest.raises(DataError) as info:
        load(path, "hh-rlhf", max_chars=100)
    assert info.value.field == "chosen" and "max_chars=100" in str(info.value)


# ----------------------------------------------------------------------------- CLI

@needs_hh
def test_cli_convert_hh_rlhf(tmp_path, capsys):
    out = tmp_path / "hh.jsonl"
    assert main(["data", "convert", "--format", "hh-rlhf", str(HH), str(out), "--lenient"]) == 0
    printed = capsys.readouterr().out
    assert "1693 rows written" in printed and "7 skipped" in printed and "last assistant turn is empty" in printed
    assert len(out.read_text().splitlines()) == 1693
    assert main(["data", "convert", "--format", "hh-rlhf", str(HH), str(tmp_path / "x.jsonl")]) == 2
    assert "line 364" in capsys.readouterr().err


def test_cli_convert_limit_and_errors(tmp_path, capsys):
    src = write_lines(tmp_path / "in.jsonl", ROWS + [{"question": "q", "answer": "a"}])
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(src), str(out), "--limit", "2"]) == 0
    assert "2 rows written" in capsys.readouterr().out and len(out.read_text().splitlines()) == 2
    assert main(["data", "convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "'correction'" in err
    assert main(["data", "convert", str(src), str(out), "--lenient"]) == 0
    assert "3 rows written" in capsys.readouterr().out


def test_cli_stats(tmp_path, capsys):
    src = write_lines(tmp_path / "in.jsonl", ROWS)
    assert main(["data", "stats", str(src), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 3 and stats["categories"] == {"redact": 1} and stats["changed"] == 2
    assert stats["chars"]["question"] == {"p50": 6, "p90": 14, "p99": 14, "max": 14}  # lengths 2, 6, 14
    assert main(["data", "stats", str(src)]) == 0
    text = capsys.readouterr().out
    assert "3 rows" in text and "p99" in text and "correction" in text


def test_cli_stats_with_tokenizer(tmp_path, capsys, tiny_causal_path):
    src = write_lines(tmp_path / "in.jsonl", ROWS)
    assert main(["data", "stats", str(src), "--tokenizer", str(tiny_causal_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["tokens"]) == {"question", "answer", "correction"}
    assert 0 < stats["tokens"]["answer"]["max"] <= stats["chars"]["answer"]["max"]
