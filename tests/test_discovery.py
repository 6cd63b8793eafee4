"""Discovery by entry points (issue 22 item 2): the CLI's command modules and the built-in
upstreams, correctors and gates are declared in ``pyproject.toml`` entry point groups, the way a
third-party plug-in declares its own, instead of string lists in the code.

Plug-ins are real (temporary) installed distributions: a ``*.dist-info`` with ``entry_points.txt``
on ``sys.path`` of a fresh interpreter, as ``pip install`` leaves them. A source folder that was
never installed is the same: a ``aligner_kit-*.dist-info`` without the groups, first on the path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import openai
import pytest

from aligner import cli
from aligner.contracts.registry import CORRECTORS, GATES, UPSTREAMS


def _dist(root: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> Path:
    """An installed distribution under ``root``: its modules and its ``*.dist-info``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, code in (modules or {}).items():
        (root / f"{module}.py").write_text(code)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def _run(args: list[str], path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "100"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])
    # run from ``path`` (or anywhere but the checkout): ``python -m`` puts the working folder first on
    # sys.path, and an editable install leaves a current aligner_kit.egg-info in the checkout
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=180,
                          cwd=str(path) if path is not None else tempfile.gettempdir())


# -- the CLI's commands -----------------------------------------------------------------------

#: ``aligner --help``'s commands, in the order users have always seen them
COMMANDS = ["correct", "templates", "generate", "data", "export", "train", "train-strong", "train-gate",
            "serve", "demo", "eval", "to-gguf"]


def _commands(parser) -> list[str]:
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return list(sub.choices)


def test_the_built_in_commands_come_from_entry_points_in_the_order_users_know():
    assert [(name, built_in) for name, built_in, _ in cli.command_adders()] == [
        ("correct", True), ("generate", True), ("data", True), ("train", True), ("serve", True),
        ("demo", True), ("eval", True), ("gguf", True)]
    assert _commands(cli.build_parser()) == COMMANDS


HELLO = '''
HELP_ORDER = "first"  # not an integer: the plug-in keeps the default place, with a warning


def add_commands(sub):
    p = sub.add_parser("hello", help="say hello (a plug-in)")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: print("hello, " + args.name) or 0)
'''
HALF = '''
def add_commands(sub):
    sub.add_parser("half-added", help="added, then the plug-in fails")
    raise RuntimeError("plug-in bug after one command")
'''
CLASH = '''
def add_commands(sub):
    sub.add_parser("train", help="a plug-in trying to take a built-in command's name")
'''
COMMAND_PLUGINS = """\
[aligner.commands]
hello = mycmds
broken = mycmds_missing
half = mycmds_half
clash = mycmds_clash
"""


def test_a_plug_in_adds_a_command_after_the_built_ins_and_a_broken_one_is_skipped(tmp_path):
    path = _dist(tmp_path, "mycmds", COMMAND_PLUGINS, {"mycmds": HELLO, "mycmds_half": HALF, "mycmds_clash": CLASH})
    out = _run(["-c", "from aligner import cli; p = cli.build_parser(); "
                      "s = [a for a in p._actions if a.__class__.__name__ == '_SubParsersAction'][0]; "
                      "print(list(s.choices)); print([a.dest for a in s._choices_actions])"], path)
    assert out.returncode == 0, out.stderr
    choices, helps = out.stdout.strip().splitlines()[-2:]
    # after every built-in; the half-added command taken back out; `train` still the built-in one
    assert eval(choices) == COMMANDS + ["hello"] and eval(helps) == COMMANDS + ["hello"]
    for name, reason in (("broken", "mycmds_missing"), ("half", "plug-in bug after one command"),
                         ("clash", "conflicting subparser: train")):
        assert f"entry point {name!r}" in out.stderr and reason in out.stderr, out.stderr
    assert "HELP_ORDER 'first' is not an integer; using 1000." in out.stderr
    ran = _run(["-m", "aligner", "hello", "--name", "Maria"], path)
    assert ran.returncode == 0 and ran.stdout.strip() == "hello, Maria", ran.stderr
    assert "to-gguf" in _run(["-m", "aligner", "--help"], path).stdout  # the built-ins all still there


def test_a_built_in_command_module_that_fails_to_import_is_an_error_not_a_missing_command(tmp_path):
    """The CLI once skipped a command module it could not import ("not built yet"), so a broken
    install showed a CLI without that command; a built-in's import error still surfaces (only a
    third-party plug-in is skipped)."""
    path = _dist(tmp_path, "aligner-kit", "[aligner.commands]\ncorrect = aligner.no_such_commands\n")
    out = _run(["-m", "aligner", "--help"], path)
    assert out.returncode == 1 and "ModuleNotFoundError: No module named 'aligner.no_such_commands'" in out.stderr


def test_without_installed_metadata_the_error_says_to_install_the_project(tmp_path):
    """Imported from a source folder that was never installed (or installed before the entry
    points existed), nothing is found: a clear error with the fix, not an empty CLI nor every spec
    falling through to LiteLLM."""
    path = _dist(tmp_path, "aligner-kit", "")
    out = _run(["-m", "aligner", "--help"], path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: command: aligner-kit's built-in commands were not found"), out.stderr
    assert "pip install -e ." in out.stderr and "aligner_kit-0.1.dist-info" in out.stderr
    script = ("from aligner.adapters.resolve import resolve_upstream\n"
              "from aligner.contracts.errors import ConfigError\n"
              "try:\n    resolve_upstream('openai/gpt-4o-mini')\n"
              "except ConfigError as exc:\n    print(exc.field, '|', exc)\n")
    out = _run(["-c", script], path)
    assert out.returncode == 0, out.stderr
    field, message = out.stdout.strip().splitlines()[-1].split(" | ", 1)
    assert field == "upstream" and "'aligner.upstreams' entry points" in message and "pip install -e ." in message


# -- the registries -----------------------------------------------------------------------------

#: (spec, upstream, corrector, gate): the class each registry resolves a spec to, as measured
#: before the built-ins moved from string lists to entry points (None: no class takes it).
SPECS = [
    ("http://x/v1", "OpenAICompatibleUpstream", "RemoteCorrector", "ModerationGate"),
    ("https://x", "OpenAICompatibleUpstream", "RemoteCorrector", "ModerationGate"),
    ("hf:./m", "HFUpstream", "LocalCorrector", None),
    ("openai/gpt-4o-mini", "LiteLLMUpstream", "LocalCorrector", None),
    ("x.gguf", "LiteLLMUpstream", "GGUFCorrector", None),
    ("X.GGUF", "LiteLLMUpstream", "GGUFCorrector", None),
    ("http://h/x.gguf", "OpenAICompatibleUpstream", "RemoteCorrector", "ModerationGate"),
    ("org/model", "LiteLLMUpstream", "LocalCorrector", None),
    (" ", None, None, None),
    ("moderation", "LiteLLMUpstream", "LocalCorrector", "ModerationGate"),
    ("moderation:x", "LiteLLMUpstream", "LocalCorrector", "ModerationGate"),
    ("classifier:x", "LiteLLMUpstream", "LocalCorrector", "ClassifierGate"),
    ("cost:0.1", "LiteLLMUpstream", "LocalCorrector", "CostGate"),
    ("length:40", "LiteLLMUpstream", "LocalCorrector", None),
    (len, "CallableUpstream", None, "CallableGate"),
    (42, None, None, None),
]


@pytest.mark.parametrize("spec, upstream, corrector, gate", SPECS)
def test_each_spec_resolves_to_the_same_built_in_class_as_before(spec, upstream, corrector, gate):
    got = [getattr(reg.find(spec), "__name__", None) for reg in (UPSTREAMS, CORRECTORS, GATES)]
    assert got == [upstream, corrector, gate]


def test_an_openai_client_is_the_openai_upstream():
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert UPSTREAMS.find(client).__name__ == "OpenAIUpstream"


ORDER_SCRIPT = """
import json, sys
for module in sys.argv[1:]:
    __import__(module)  # imported first: its decorator registers its class before any lookup
from aligner.contracts.registry import UPSTREAMS, CORRECTORS, GATES
print(json.dumps([[c.__name__ for c in reg] for reg in (UPSTREAMS, CORRECTORS, GATES)]))
"""
ORDER = [["HFUpstream", "OpenAIUpstream", "OpenAICompatibleUpstream", "CallableUpstream", "LiteLLMUpstream"],
         ["GGUFCorrector", "RemoteCorrector", "LocalCorrector"],
         ["ModerationGate", "ClassifierGate", "CostGate", "CallableGate"]]


@pytest.mark.parametrize("first", [[], ["aligner.correctors.local", "aligner.adapters.litellm_api",
                                        "aligner.adapters.openai_compatible", "aligner.gates.callable"]])
def test_the_order_specs_are_tried_in_does_not_depend_on_what_was_imported_first(first):
    """spec_priority, then built-ins before plug-ins, then the entry point name: the same order
    whichever provider module a program happened to import first."""
    out = _run(["-c", ORDER_SCRIPT, *first])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ORDER


PLUGIN = '''
from aligner.adapters.base import Upstream


class SameRankUpstream(Upstream):
    """Claims http(s) URLs at the built-in's priority: the built-in keeps them."""

    @classmethod
    def matches(cls, spec):
        return isinstance(spec, str) and spec.startswith(("http://", "https://"))


class EagerUpstream(SameRankUpstream):
    """Claims one host at a higher priority: it takes that host."""

    spec_priority = 1

    @classmethod
    def matches(cls, spec):
        return isinstance(spec, str) and spec.startswith("https://eager.example/")
'''
PLUGIN_SCRIPT = """
import json
from aligner.contracts.registry import UPSTREAMS
print(json.dumps([[c.__name__ for c in UPSTREAMS],
                  [UPSTREAMS.find(s).__name__ for s in ("http://x/v1", "https://eager.example/v1")]]))
"""


def test_a_plug_in_at_a_built_ins_priority_is_tried_after_it(tmp_path):
    path = _dist(tmp_path, "myup", "[aligner.upstreams]\nsame = myup:SameRankUpstream\neager = myup:EagerUpstream\n",
                 {"myup": PLUGIN})
    out = _run(["-c", PLUGIN_SCRIPT], path)
    assert out.returncode == 0, out.stderr
    order, found = json.loads(out.stdout.strip().splitlines()[-1])
    assert order == ["EagerUpstream", "HFUpstream", "OpenAIUpstream", "OpenAICompatibleUpstream",
                     "SameRankUpstream", "CallableUpstream", "LiteLLMUpstream"]
    assert found == ["OpenAICompatibleUpstream", "EagerUpstream"]
