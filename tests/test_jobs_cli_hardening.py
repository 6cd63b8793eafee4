"""Issue 10, items 11-18: batch jobs (failed rows, resume identity, up-front checks) and CLI/library errors.

Everything talks to real components: the fake OpenAI server on 127.0.0.1 (as the upstream and,
over /v1/completions, as a remote corrector, so most runs need no torch model), the real
``aligner`` command in a subprocess where exit codes and stderr are the point, and real litellm.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import closed_port, read_rows, write_rows
from fake_openai import CHAT, COMPLETIONS, FakeOpenAI, request_text

from aligner.cli import main
from aligner.contracts.errors import ConfigError, UpstreamError

ALIGNER = [sys.executable, "-m", "aligner.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _run(args: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(ALIGNER + args, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def _with_answers(n: int, prefix: str = "Question") -> list[dict]:
    return [{"question": f"{prefix} {i}?", "answer": f"Answer {i}."} for i in range(n)]


# ----------------------------------------------------------------------------- item 11

def test_rejected_rows_are_recorded_the_run_goes_on_and_a_rerun_retries_only_them(tmp_path, fake_openai):
    bad = {"Question 3?", "Question 7?"}
    fake_openai.rejecter = lambda req: 400 if "messages" in req and request_text(req) in bad else None
    src = write_rows(tmp_path / "in.jsonl", [{"question": f"Question {i}?"} for i in range(12)])
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "out.jsonl.errors.jsonl"
    cmd = ["correct", "--input", str(src), "--output", str(out), "--upstream", fake_openai.base_url,
           "--upstream-model", "fake-model", "--corrector", fake_openai.base_url, "--batch-size", "4"]

    first = _run(cmd)
    assert first.returncode == 3, first.stderr
    assert "10 rows corrected, 2 failed" in first.stdout and str(errors) in first.stdout
    assert "2 rows failed; for example: upstream: HTTP 400" in first.stderr and "Traceback" not in first.stderr
    failed = read_rows(errors)
    assert [e["row"] for e in failed] == [3, 7]
    assert all(e["stage"] == "upstream" and e["status"] == 400 and "rejected by the rejecter rule" in e["error"]
               for e in failed)
    assert [e["question"] for e in failed] == ["Question 3?", "Question 7?"]
    assert sorted(r["row"] for r in read_rows(out)) == [i for i in range(12) if i not in (3, 7)]

    # a re-run while the upstream still rejects them asks only for those two rows
    fake_openai.clear()
    again = _run(cmd)
    assert again.returncode == 3, again.stderr
    assert fake_openai.count(CHAT) == 2 and fake_openai.count(COMPLETIONS) == 0
    assert [e["row"] for e in read_rows(errors)] == [3, 7]

    # once the upstream accepts them, the re-run corrects just those and the errors file goes away
    fake_openai.rejecter = None
    fake_openai.clear()
    last = _run(cmd + ["--json"])
    assert last.returncode == 0, last.stderr
    counts = json.loads(last.stdout.strip().splitlines()[-1])
    assert (counts["written"], counts["skipped"], counts["failed"], counts["total"]) == (2, 10, 0, 12)
    assert fake_openai.count(CHAT) == 2 and fake_openai.count(COMPLETIONS) == 2
    assert not errors.exists()
    rows = read_rows(out)
    assert sorted(r["row"] for r in rows) == list(range(12))
    assert all(r["question"] == f"Question {r['row']}?" for r in rows)


def test_a_row_the_corrector_server_rejects_is_recorded_with_its_stage(tmp_path, fake_openai, capsys):
    fake_openai.rejecter = lambda req: 400 if "prompt" in req and "Question 2?" in request_text(req) else None
    src = write_rows(tmp_path / "in.jsonl", _with_answers(6))
    out = tmp_path / "out.jsonl"
    code = main(["correct", "--input", str(src), "--output", str(out), "--corrector", fake_openai.base_url])
    assert code == 3
    (failed,) = read_rows(tmp_path / "out.jsonl.errors.jsonl")
    assert (failed["row"], failed["stage"], failed["status"]) == (2, "corrector", 400)
    assert sorted(r["row"] for r in read_rows(out)) == [0, 1, 3, 4, 5]


def test_an_upstream_that_fails_every_row_stops_the_run(tmp_path):
    """Transient failures (here: nothing listening) on 8 rows in a row stop the run instead of
    marking all 40 rows failed one by one."""
    from aligner import Aligner
    from aligner.adapters.base import RetryPolicy
    from aligner.core.batch import correct_file

    with FakeOpenAI() as corrector:
        src = write_rows(tmp_path / "in.jsonl", [{"question": f"Question {i}?"} for i in range(40)])
        al = Aligner(f"http://127.0.0.1:{closed_port()}/v1", corrector.base_url, upstream_model="m",
                     retry=RetryPolicy(max_retries=0))
        with pytest.raises(UpstreamError) as e:
            correct_file(al, src, tmp_path / "out.jsonl", progress=False)
    assert "8 rows in a row" in str(e.value) and "cannot reach" in str(e.value)
    assert len(read_rows(tmp_path / "out.jsonl.errors.jsonl")) == 8
    assert corrector.count(COMPLETIONS) == 0


# ----------------------------------------------------------------------------- item 12

def _file_run(src: Path, out: Path, corrector: str, *extra: str) -> int:
    return main(["correct", "--input", str(src), "--output", str(out), "--corrector", corrector, *extra])


def test_output_of_another_input_file_is_an_error_naming_both_files(tmp_path, fake_openai, capsys):
    a = write_rows(tmp_path / "a.jsonl", _with_answers(3, "Alpha"))
    b = write_rows(tmp_path / "b.jsonl", _with_answers(3, "Beta"))
    out = tmp_path / "out.jsonl"
    assert _file_run(a, out, fake_openai.base_url) == 0
    meta = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert meta["input"] == str(a.resolve()) and meta["rows"] == 3
    before = out.read_text()
    capsys.readouterr()

    assert _file_run(b, out, fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert str(a.resolve()) in err and str(b) in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_text() == before

    assert _file_run(b, out, fake_openai.base_url, "--overwrite") == 0
    assert [r["question"] for r in read_rows(out)] == ["Beta 0?", "Beta 1?", "Beta 2?"]
    assert json.loads((tmp_path / "out.jsonl.meta.json").read_text())["input"] == str(b.resolve())


def test_a_row_changed_in_the_input_since_the_output_was_written_is_an_error(tmp_path, fake_openai, capsys):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(3))
    out = tmp_path / "out.jsonl"
    assert _file_run(src, out, fake_openai.base_url) == 0
    rows = _with_answers(3)
    rows[1]["answer"] = "A different answer."
    write_rows(src, rows)
    capsys.readouterr()
    assert _file_run(src, out, fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert 'line 2 of' in err and '("row": 1 in the output) has changed' in err and "--overwrite" in err


def test_rows_appended_to_the_input_are_corrected_on_resume(tmp_path, fake_openai, capsys):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(3))
    out = tmp_path / "out.jsonl"
    assert _file_run(src, out, fake_openai.base_url) == 0
    write_rows(src, _with_answers(5))
    capsys.readouterr()
    assert _file_run(src, out, fake_openai.base_url, "--json") == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (counts["written"], counts["skipped"]) == (2, 3)
    assert sorted(r["row"] for r in read_rows(out)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("line", [b'{"row": 3}\n', b"garbage\n", b'{"row": 1, "key": "0000", "question": "x"}\n'])
def test_a_complete_line_aligner_did_not_write_is_an_error_not_a_done_row(tmp_path, fake_openai, capsys, line):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(3))
    out = tmp_path / "out.jsonl"
    assert _file_run(src, out, fake_openai.base_url) == 0
    write_rows(src, _with_answers(4))
    with out.open("ab") as fh:
        fh.write(line)
    capsys.readouterr()
    assert _file_run(src, out, fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert f"{out}, line 4" in err and "--overwrite" in err and "Traceback" not in err


def test_invalid_utf8_in_the_output_is_a_clear_error(tmp_path, fake_openai, capsys):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(2))
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'\xff\xfe{"row": 0}\n')
    assert _file_run(src, out, fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert f"{out}, line 1" in err and "UTF-8" in err


# ----------------------------------------------------------------------------- item 13

def test_rows_without_answers_and_no_upstream_are_named_up_front(tmp_path, capsys):
    rows = _with_answers(14)
    for i in (2, 5, 6, 7, 8, 9, 11, 13):
        del rows[i]["answer"]
    src = write_rows(tmp_path / "in.jsonl", rows)
    # the corrector does not exist: the check runs before anything is loaded
    code = main(["correct", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--corrector", "/nonexistent"])
    err = capsys.readouterr().err
    assert code == 2
    assert "lines 3, 6, 7, 8, 9 and 3 more (8 rows)" in err and "--upstream" in err  # as an editor numbers them
    assert "Aligner(" not in err and "corrector" not in err.split("Fix:")[0]
    assert not (tmp_path / "o.jsonl").exists()


# ----------------------------------------------------------------------------- item 14

def test_output_that_is_a_directory_or_not_writable_is_a_clear_error(tmp_path, fake_openai, capsys):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(2))
    (tmp_path / "adir").mkdir()
    assert _file_run(src, tmp_path / "adir", fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output:") and "is a directory" in err and "--output" in err

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert _file_run(src, blocker / "out.jsonl", fake_openai.base_url) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output:") and "cannot write" in err and "Traceback" not in err
    assert fake_openai.count(COMPLETIONS) == 0


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only dirs")
def test_output_in_a_read_only_directory_is_a_clear_error(tmp_path, fake_openai, capsys):
    src = write_rows(tmp_path / "in.jsonl", _with_answers(2))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _file_run(src, ro / "out.jsonl", fake_openai.base_url) == 2
    finally:
        ro.chmod(0o755)
    assert "cannot write" in capsys.readouterr().err


# ----------------------------------------------------------------------------- item 15

def test_resolve_base_model_sends_hub_ids_to_the_hub_and_missing_paths_are_errors(tmp_path):
    from aligner.train.loading import resolve_base_model

    for hub_id in ("meta-llama/Llama-2-7b-hf", "Qwen/Qwen2.5-0.5B-Instruct", "gpt2"):
        assert resolve_base_model(hub_id) == hub_id
    (tmp_path / "runs").mkdir()
    for local in ("./my-model", "~/models/x", str(tmp_path / "nope"), "a/b/c", f"{tmp_path}/runs/x"):
        with pytest.raises(ConfigError) as e:
            resolve_base_model(local)
        assert e.value.field == "base_model" and "no such model directory" in str(e.value)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # "runs/x" where runs/ is a local folder: a missing local path, not a hub id
        with pytest.raises(ConfigError):
            resolve_base_model("runs/x")
    finally:
        os.chdir(cwd)


def test_train_base_model_hub_id_loads_from_the_local_hub_cache(tmp_path):
    """The layout ``huggingface_hub`` writes on download (models--org--name/snapshots/<hash>, refs/main),
    read offline: what a user with a cached Llama has."""
    from conftest import corpus_texts

    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate
    from aligner.train.tiny import make_tiny_corrector

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tiny-org--tiny-llama"
    make_tiny_corrector(repo / "snapshots" / commit, corpus_texts(50), "causal", vocab_size=512, context=256,
                        hidden_size=32, layers=1, heads=2)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    data = tmp_path / "train.jsonl"
    write_jsonl([r.to_dict() for r in generate(8, seed=0)], data)
    env = {**ENV, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    res = _run(["train", "--data", str(data), "--base-model", "tiny-org/tiny-llama", "--output-dir",
                str(tmp_path / "out"), "--max-steps", "1", "--batch-size", "4", "--effective-batch-size", "4",
                "--max-length", "256", "--learning-rate", "1e-3", "--no-progress", "--no-bf16",
                "--logging-steps", "1", "--save-steps", "1000"], env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "out" / "config.json").is_file()
    assert json.loads((tmp_path / "out" / "aligner_config.json").read_text())["base_model"] == "tiny-org/tiny-llama"


# ----------------------------------------------------------------------------- item 16

def test_stream_with_diff_prints_the_diff_after_the_streamed_text(fake_openai, capsys):
    from aligner.contracts.correction import Correction

    fake_openai.responder = lambda req: "Hello there, dear friend."
    code = main(["correct", "Greet me", "--answer", "Hello there friend", "--stream", "--diff",
                 "--corrector", fake_openai.base_url])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Hello there, dear friend."
    expected = Correction("Greet me", "Hello there friend", "Hello there, dear friend.").diff()
    assert lines[1] == "".join(t if op == " " else f"[{op}{t}]" for op, t in expected)
    assert "[+" in lines[1]


# ----------------------------------------------------------------------------- item 17

def test_litellm_without_its_api_key_is_not_retried_and_names_the_variable(fake_openai, monkeypatch):
    pytest.importorskip("litellm")
    from aligner.adapters.base import RetryPolicy
    from aligner.adapters.litellm_api import LiteLLMUpstream

    for var in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    up = LiteLLMUpstream("openai/fake-model", api_base=fake_openai.base_url,
                         retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.01))
    with pytest.raises(UpstreamError) as e:
        up.answer("hi")
    assert up.stats.attempts == 1 and up.stats.retries == 0
    assert e.value.status == 401 and "OPENAI_API_KEY" in str(e.value)

    claude = LiteLLMUpstream("anthropic/claude-3-5-haiku-latest", retry=RetryPolicy(initial_backoff=0.01))
    with pytest.raises(UpstreamError) as e:
        claude.answer("hi")
    assert claude.stats.attempts == 1 and "ANTHROPIC_API_KEY" in str(e.value)


def test_cli_litellm_upstream_without_key_fails_once_with_the_variable(fake_openai):
    pytest.importorskip("litellm")
    env = {k: v for k, v in ENV.items() if k not in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY")}
    res = _run(["correct", "Explain DNS", "--upstream", "openai/fake-model", "--corrector", fake_openai.base_url],
               env=env)
    assert res.returncode == 2
    assert "OPENAI_API_KEY" in res.stderr and "retrying" not in res.stderr and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- item 18

def test_device_that_torch_does_not_have_is_one_line_naming_the_flag(tiny_causal_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    assert main(["correct", "Q", "--answer", "A", "--device", "cuda", "--corrector", str(tiny_causal_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda" in err and "available: cpu" in err
    assert main(["correct", "Q", "--answer", "A", "--device", "tpu", "--corrector", str(tiny_causal_path)]) == 2
    assert "--device tpu" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("temperature", "hot"), ("max_new_tokens", "512"), ("max_new_tokens", True),
                                         ("do_sample", "yes"), ("top_p", float("nan")), ("top_k", 2.5),
                                         ("repetition_penalty", None), ("prompt_lookup", -1), ("top_p", 1.5)])
def test_decoding_values_are_type_and_range_checked(field, value):
    from aligner.contracts.decoding import DecodingConfig

    with pytest.raises(ConfigError) as e:
        DecodingConfig.from_any({field: value})
    assert e.value.field == field and repr(value) in str(e.value)


def test_aligner_with_a_bad_decoding_value_names_the_field(fake_openai):
    from aligner import Aligner

    with pytest.raises(ConfigError) as e:
        Aligner(corrector=fake_openai.base_url, decoding={"temperature": "hot"})
    assert e.value.field == "temperature"


def test_cli_errors_for_a_missing_corrector_and_an_unreachable_upstream_are_short(tiny_causal_path):
    res = _run(["correct", "Q", "--answer", "A", "--corrector", "/nonexistent"])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    assert "cannot load corrector '/nonexistent'" in res.stderr

    url = f"http://127.0.0.1:{closed_port()}/v1"
    res = _run(["correct", "Q", "--upstream", url, "--upstream-model", "m", "--corrector", str(tiny_causal_path)])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "cannot reach the upstream" in res.stderr.strip().splitlines()[-1]
    assert len(res.stderr.strip().splitlines()) <= 8


_PY_MISSING_CORRECTOR = "from aligner import Aligner\nAligner(corrector='/nonexistent')\n"
_PY_UNREACHABLE = ("import sys\nfrom aligner import Aligner\nfrom aligner.adapters.base import RetryPolicy\n"
                   "Aligner(sys.argv[1], sys.argv[2], upstream_model='m', retry=RetryPolicy(max_retries=0)).correct('q')\n")


def _only_own_frames(stderr: str) -> bool:
    """Every frame of the printed traceback is the user's script or the project's own code: the
    library chain (transformers, httpx, huggingface_hub) is cut, however many project frames there are."""
    import aligner.adapters
    import aligner.train

    own = tuple(str(Path(m.__file__).resolve().parent) + os.sep for m in (aligner, aligner.adapters, aligner.train))
    files = re.findall(r'^  File "([^"]+)"', stderr, flags=re.M)
    return bool(files) and all(f == "<string>" or str(Path(f).resolve()).startswith(own) for f in files)


def test_python_api_errors_keep_the_message_without_the_library_chain(fake_openai):
    """An uncaught AlignerError in a user's script: the message, not 40 lines of transformers/httpx."""
    res = subprocess.run([sys.executable, "-c", _PY_MISSING_CORRECTOR], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1
    assert "ConfigError: corrector: cannot load corrector '/nonexistent'" in res.stderr
    assert "The above exception" not in res.stderr and "During handling" not in res.stderr
    assert _only_own_frames(res.stderr), res.stderr  # 44 lines with the chain, through transformers

    url = f"http://127.0.0.1:{closed_port()}/v1"
    res = subprocess.run([sys.executable, "-c", _PY_UNREACHABLE, url, fake_openai.base_url], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "UpstreamError: upstream:" in res.stderr and "cannot reach the upstream" in res.stderr
    assert "The above exception" not in res.stderr and "During handling" not in res.stderr
    assert "httpcore" not in res.stderr and _only_own_frames(res.stderr), res.stderr


def test_the_library_exception_stays_on_the_error_for_debugging():
    from aligner import Aligner

    with pytest.raises(ConfigError) as e:
        Aligner(corrector="/nonexistent")
    assert isinstance(e.value.cause, OSError)


# ----------------------------------------------------------------------------- issue 21, item 7

def _gzip_rows(path: Path, rows: list[dict]) -> Path:
    import gzip

    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_gzipped_jsonl_input_is_read_by_correct_and_generate(tmp_path, fake_openai):
    rows = _with_answers(3)
    gz = _gzip_rows(tmp_path / "in.jsonl.gz", rows)
    out = tmp_path / "out.jsonl"
    res = _run(["correct", "--input", str(gz), "--output", str(out), "--corrector", fake_openai.base_url])
    assert res.returncode == 0, res.stderr
    assert "not UTF-8" not in res.stderr and "3 rows corrected" in res.stdout
    assert [(r["row"], r["question"], r["answer"]) for r in sorted(read_rows(out), key=lambda r: r["row"])] == \
        [(i, r["question"], r["answer"]) for i, r in enumerate(rows)]
    gen = _run(["generate", "--prompts", str(gz), "--out", str(tmp_path / "gen.jsonl"), "--corrector",
                fake_openai.base_url, "--no-progress"])
    assert gen.returncode == 0, gen.stderr
    assert sorted(r["row"] for r in read_rows(tmp_path / "gen.jsonl")) == [0, 1, 2]


def test_a_directory_as_input_is_called_a_directory(tmp_path, fake_openai):
    folder = tmp_path / "data"
    folder.mkdir()
    write_rows(folder / "questions.jsonl", _with_answers(1))
    for args in (["correct", "--input", str(folder), "--output", str(tmp_path / "o.jsonl")],
                 ["generate", "--prompts", str(folder), "--out", str(tmp_path / "o.jsonl"), "--no-progress"]):
        res = _run(args + ["--corrector", fake_openai.base_url])
        assert res.returncode == 2, res.stderr
        assert f"file {folder}: is a directory, not a file (it holds questions.jsonl)" in res.stderr, res.stderr
        assert str(folder / "questions.jsonl") in res.stderr and "no such file" not in res.stderr
    assert fake_openai.count() == 0


def test_one_bad_line_is_the_same_line_number_in_every_command(tmp_path):
    """Line 41 of the file (40 good rows before it) is "line 41" in correct, convert, export and eval:
    the number an editor shows, whichever reader met it."""
    good = [{"question": f"Question {i}?", "answer": f"Answer {i}.", "correction": f"Answer {i}."} for i in range(40)]
    bad = write_rows(tmp_path / "rows.jsonl", good + [{"question": 7, "answer": "a", "correction": "c"}])
    commands = {
        "correct": ["correct", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"), "--corrector", "/nope"],
        "convert": ["data", "convert", str(bad), str(tmp_path / "c.jsonl")],
        "export": ["export", str(bad), str(tmp_path / "e.jsonl"), "--format", "sft"],
        "eval": ["eval", "--data", str(bad), "--alpaca-eval", str(tmp_path / "ae"), "--output-dir", str(tmp_path / "r")],
    }
    for name, args in commands.items():
        res = _run(args)
        assert res.returncode == 2, (name, res.stderr)
        said = res.stderr.strip().splitlines()[-1]
        assert f"file {bad}, line 41, field 'question': expected a string, got a number (7)." in said, (name, said)
        assert "row 4" not in said and "missing or empty" not in said


def test_a_question_of_the_wrong_type_says_the_type_not_missing(tmp_path, capsys):
    for value, said in ((["How?"], "expected a string, got a list (1 item)"), (None, "expected a string, got null"),
                        ({"text": "How?"}, "expected a string, got an object"), ("  ", "is empty"),
                        (True, "expected a string, got a boolean (true)")):
        src = write_rows(tmp_path / "in.jsonl", [{"question": "Fine?", "answer": "a"}, {"question": value, "answer": "a"}])
        assert main(["correct", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--corrector", "/nope"]) == 2
        err = capsys.readouterr().err
        assert f"line 2, field 'question': {said}." in err, err
    src = write_rows(tmp_path / "in.jsonl", [{"text": "no question"}])
    assert main(["generate", "--prompts", str(src), "--out", str(tmp_path / "g.jsonl"), "--corrector", "/nope"]) == 2
    assert "line 1, field 'question or prompt': missing (the row has: text)." in capsys.readouterr().err


# ----------------------------------------------------------------------------- issue 21, item 10

def test_an_upstream_that_answer_makes_unused_is_never_loaded(tmp_path, fake_openai):
    """``--upstream hf:…`` beside ``--answer`` (or a file whose rows all have answers): the upstream is
    not loaded. An uncached hub id offline proves it: loading it is an error, not loading it is not."""
    hub = "hf:no-such-org/no-such-model"
    res = _run(["correct", "Explain DNS", "--answer", "It maps names to addresses.", "--upstream", hub,
                "--corrector", fake_openai.base_url, "--json"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["upstream"] == ""  # nothing was asked of it
    assert f"note: --upstream {hub} is not used: --answer gives the answer." in res.stderr
    src = write_rows(tmp_path / "in.jsonl", _with_answers(2))
    for args in (["correct", "--input", str(src), "--output", str(tmp_path / "c.jsonl")],
                 ["generate", "--prompts", str(src), "--out", str(tmp_path / "g.jsonl"), "--no-progress"]):
        res = _run(args + ["--upstream", hub, "--corrector", fake_openai.base_url])
        assert res.returncode == 0, res.stderr
    assert fake_openai.count(CHAT) == 0


def test_no_answer_and_no_upstream_is_named_before_any_model_loads(fake_openai):
    res = _run(["correct", "Explain DNS", "--corrector", "/nonexistent-corrector"])
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: answer: no answer to correct: no --answer was given, and no --upstream to ask "
                           'for one. Fix: pass the answer: aligner correct "Explain DNS" --answer "...", or who '
                           "answers: --upstream openai/gpt-4o-mini"), line
    assert "cannot load corrector" not in line and "Aligner(upstream=" not in line  # checked before the load


def _hub_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of a machine with an empty Hugging Face cache (and no offline flag unless given)."""
    env = {k: v for k, v in ENV.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"), **extra}


_HUB_CASES = [  # (args, what the error line names)
    (["correct", "Q?", "--answer", "A.", "--corrector", "aligner/aligner-7b-v1.0"],
     ("corrector", "--corrector aligner/aligner-7b-v1.0", "pass --corrector a local directory")),
    # a corrector that cannot load either: the upstream is checked first, before any model loads
    (["correct", "Q?", "--upstream", "hf:Qwen/Qwen2.5-0.5B-Instruct", "--corrector", "/nonexistent-corrector"],
     ("upstream", "--upstream hf:Qwen/Qwen2.5-0.5B-Instruct", "pass --upstream hf:DIR")),
]


@pytest.mark.parametrize("args, names", _HUB_CASES)
def test_a_hub_id_offline_fails_at_once_in_one_line(tmp_path, fake_openai, args, names):
    field, given, fix = names
    res = _run(args, env=_hub_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()  # one line: no retries, no hub warnings, no traceback
    assert line.startswith(f"error: {field}: {given} is not a local path and not in the Hugging Face cache, and "
                           f"HF_HUB_OFFLINE=1 forbids downloading it. Fix: unset HF_HUB_OFFLINE (with network) to "
                           f"download it once, or {fix}"), line
    assert line.endswith(").") and fake_openai.count() == 0  # the message whole, not cut mid-URL


@pytest.mark.parametrize("args, names", _HUB_CASES)
def test_a_hub_that_cannot_be_reached_fails_after_one_request_in_one_line(tmp_path, fake_openai, args, names):
    field, given, fix = names
    endpoint = f"http://127.0.0.1:{closed_port()}"
    res = _run(args, env=_hub_env(tmp_path, HF_ENDPOINT=endpoint))
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()  # the hub library's five retries (each logged twice) are gone
    assert line.startswith(f"error: {field}: cannot reach the Hugging Face hub at {endpoint} ("), line
    assert f") to download {given}, and it is not in the cache. Fix: connect to the network (or set HF_ENDPOINT " \
           f"to a reachable mirror), or {fix}" in line and line.endswith(").")
    assert "Retry" not in res.stderr and fake_openai.count() == 0


def test_train_with_a_hub_base_model_offline_fails_in_one_line(tmp_path):
    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate

    data = tmp_path / "train.jsonl"
    write_jsonl([r.to_dict() for r in generate(4, seed=0)], data)
    res = _run(["train", "--data", str(data), "--base-model", "no-such-org/no-such-base", "--output-dir",
                str(tmp_path / "out")], env=_hub_env(tmp_path, HF_HUB_OFFLINE="1"))
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: base_model: --base-model no-such-org/no-such-base is not a local path and not in "
                           "the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it."), line
