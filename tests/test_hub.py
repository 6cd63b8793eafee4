"""The one "path or hub id?" rule (aligner.runtime.hub.looks_like_path) and the places that ask it: a string
that is not on disk goes to the hub only when it could be a hub id; anything else is a missing path,
and each caller says so in its own words."""
from __future__ import annotations

from pathlib import Path

import pytest

from aligner.contracts.errors import ConfigError, DataError
from aligner.runtime.hub import DATA_SUFFIXES, looks_like_path

HUB_IDS = ["gpt2", "org/name", "Qwen/Qwen2.5-0.5B", "PKU-Alignment/PKU-SafeRLHF", "org/x.json"]
PATHS = ["./rel", "./rel/x", "../x", ".hidden", "/abs", "/abs/x", "~", "~/x", "a/b/c", "org/", "/x",
         "C:\\models\\x", "C:/x", "C:/x/y", "a:b", ""]


@pytest.mark.parametrize("spec", HUB_IDS)
def test_name_and_org_name_are_hub_ids(spec):
    assert looks_like_path(spec) is False


@pytest.mark.parametrize("spec", PATHS)
def test_strings_that_cannot_be_hub_ids_are_paths(spec):
    assert looks_like_path(spec) is True


def test_a_path_object_is_a_path_whatever_it_reads(tmp_path):
    assert looks_like_path(Path("org/name")) is True
    assert looks_like_path(tmp_path / "model") is True


def test_data_suffixes_make_a_file_name_a_path_only_where_asked():
    for spec in ("rows.jsonl", "org/x.json", "data/x.parquet", "x.json.gz"):
        assert looks_like_path(spec, suffixes=DATA_SUFFIXES) is True
    assert looks_like_path("rows.jsonl") is False  # a model spec: the hub may have such a repo
    assert looks_like_path("org/name", suffixes=DATA_SUFFIXES) is False


def test_local_folder_makes_org_name_a_path_only_when_org_is_a_folder_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert looks_like_path("runs/x", local_folder=True) is True
    assert looks_like_path("runs/x") is False
    assert looks_like_path("a-file/x", local_folder=True) is False  # a file, not a folder
    assert looks_like_path("org/name", local_folder=True) is False
    assert looks_like_path("runs", local_folder=True) is False  # a bare name is never split


# ---------------------------------------------------------------------------------- the callers


@pytest.mark.parametrize("spec", ["./missing", "~/missing", "C:/data", "C:\\data\\x"])
def test_read_records_calls_a_missing_path_a_missing_file_without_asking_the_hub(spec, tmp_path, monkeypatch):
    """Before, ``./missing`` and ``~/missing`` (one slash) were sent to datasets.load_dataset, which
    failed with its own message about the hub; they are paths, missing here."""
    from aligner.data.io import read_records

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        read_records(spec)
    assert e.value.source == spec
    assert "no such file" in str(e.value) and "cannot load dataset" not in str(e.value)


def test_read_records_sends_a_hub_shaped_name_to_the_hub(tmp_path, monkeypatch):
    from aligner.data.io import read_records

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        read_records("no-such-org/no-such-dataset")
    assert "cannot load dataset split 'train'" in str(e.value)


def test_read_questions_reads_a_missing_dot_path_as_a_missing_prompts_file(tmp_path, monkeypatch):
    from aligner.data.job_files import read_questions

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        read_questions("./prompts", fields=("question", "prompt"))
    assert e.value.source == "prompts" and "--prompts" in str(e.value)


@pytest.mark.parametrize("spec", ["hf:./missing-model", "hf:~/missing-model", "hf:a/b/c", "hf:C:/models/x",
                                  "hf:C:\\models\\x", "hf:org/"])
def test_hf_upstream_names_a_missing_directory(spec, tmp_path, monkeypatch):
    """``hf:`` is the provider's prefix, not part of the location: what follows it is asked."""
    from aligner.adapters import resolve_upstream

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        resolve_upstream(spec)
    assert e.value.field == "upstream"
    assert f"no such model directory: {spec[3:]!r}" in str(e.value)


def test_hf_upstream_asks_the_hub_for_an_org_name(tmp_path, monkeypatch):
    from aligner.adapters import resolve_upstream

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        resolve_upstream("hf:no-such-org/no-such-model")
    assert e.value.field == "upstream"  # asked without a download attempt: offline, it is not in the cache
    assert "--upstream hf:no-such-org/no-such-model is not a local path and not in the Hugging Face cache" in str(e.value)


def test_hf_upstream_loads_a_directory(tiny_causal_path):
    from aligner.adapters import resolve_upstream

    up = resolve_upstream(f"hf:{tiny_causal_path}")
    assert up.name == f"hf:{tiny_causal_path}"


_OFFLINE = "is not a local path and not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it."


@pytest.mark.parametrize("spec,said", [("./missing", "cannot load corrector './missing': no such directory."),
                                       ("a/b/c", "cannot load corrector 'a/b/c': no such directory."),
                                       ("my-corrector", "cannot load corrector 'my-corrector': no such directory."),
                                       ("no-such-org/no-such-corrector",
                                        f"--corrector no-such-org/no-such-corrector {_OFFLINE}")])
def test_local_corrector_hint_says_directory_or_hub(spec, said, tmp_path, monkeypatch):
    """A bare name stays "no such directory" for a corrector (as before): it is far more often a
    folder than one of the hub's legacy unprefixed models. An org/name id is a hub id: offline and
    not cached, that is what is said (before any download is tried)."""
    from aligner.correctors import load_corrector

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        load_corrector(spec)
    assert e.value.field == "corrector" and said in str(e.value)


def test_training_data_that_is_a_missing_path_is_a_config_error(tmp_path, monkeypatch):
    from aligner.train.config import CorrectorTrainConfig
    from aligner.train.prepare import load_rows
    from aligner.train.strong import read_export

    monkeypatch.chdir(tmp_path)
    for spec in ("rows.jsonl", "./rows", "runs/a/b", "C:\\rows"):
        with pytest.raises(ConfigError) as e:
            load_rows(spec, CorrectorTrainConfig())
        assert e.value.field == "data" and f"no such file {spec!r}" in str(e.value)
        with pytest.raises(ConfigError) as e:
            read_export(spec, "sft")
        assert e.value.field == "data" and f"no such file {spec!r}" in str(e.value)
