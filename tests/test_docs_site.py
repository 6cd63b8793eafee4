"""The docs site's generated pages: the CLI reference covers every command and flag.

The hook in ``docs/hooks/cli_reference.py`` is imported from its file and run on the real
``aligner`` parser (``mkdocs build --strict`` in ``.ci/run`` builds the whole site; this pins what
the reference must contain, and runs without the docs extra).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def hook(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_lists_every_command_and_flag():
    cli = hook("cli_reference")
    parser = cli.build_parser()
    text = cli.render(parser)
    paths = [path for path, _, _ in cli.walk(parser)]
    # every subcommand of every level, e.g. `aligner data synth`
    assert {("aligner", "correct"), ("aligner", "data", "synth"), ("aligner", "data", "merge"),
            ("aligner", "train-strong"), ("aligner", "serve")} <= set(paths)
    for path, sub, _ in cli.walk(parser):
        assert re.search(rf"^#+ `{re.escape(' '.join(path))}`$", text, re.M), path
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            for option in action.option_strings:
                assert f"`{option}`" in text, (path, option)
            if not action.option_strings:
                assert f"`{action.metavar or action.dest}`" in text, (path, action.dest)
    # help text comes through with its default, and table cells stay one row each
    assert "`--max-batch-size`" in text and "(default: 16)" in text
    for line in text.splitlines():
        if line.startswith("| `--"):
            assert line.count(" | ") == 2, line


def test_cli_reference_is_wired_into_the_site():
    cli = hook("cli_reference")
    page = (REPO / "docs" / "reference" / "cli.md").read_text()
    assert cli.MARKER in page
    config = (REPO / "mkdocs.yml").read_text()
    assert "docs/hooks/cli_reference.py" in config and "reference/cli.md" in config


def test_api_sources_mirror_the_installed_package_names(tmp_path, monkeypatch):
    """aligner.adapters lives in adapters/: the tree mkdocstrings reads has it under aligner/."""
    api = hook("api_sources")
    monkeypatch.setattr(api, "TREE", tmp_path / "api-src")
    tree = api.build_tree()
    assert (tree / "aligner" / "core" / "aligner.py").is_file()
    assert (tree / "aligner" / "adapters" / "base.py").read_text() == (REPO / "adapters" / "base.py").read_text()
    assert (tree / "aligner" / "train" / "corrector.py").is_file()
    assert not list(tree.rglob("*.safetensors"))  # sources only
