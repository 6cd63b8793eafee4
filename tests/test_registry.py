"""Open registries (issue 11 item 2): a provider is one module that says which specs it takes.

Third-party providers register through the ``aligner.upstreams`` / ``aligner.correctors`` entry
point groups: a real (temporary) installed distribution — a ``*.dist-info`` with
``entry_points.txt`` on ``sys.path`` — in a fresh interpreter, as ``pip install`` would leave it.
Capabilities are class attributes, so a subclass keeps them through the server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from aligner import Aligner
from aligner.adapters import OpenAICompatibleUpstream
from aligner.adapters.resolve import resolve_upstream
from aligner.contracts.errors import ConfigError
from aligner.contracts.registry import CORRECTORS, UPSTREAMS
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.serve.runner import ServerThread
from fake_openai import CHAT

MODEL = "fake-model"

PLUGIN = '''
from aligner.adapters.base import Upstream
from aligner.correctors.base import Corrector


class EchoUpstream(Upstream):
    """A whole provider: the prefix is all the registry needs."""

    spec_prefix = "myprovider:"

    def __init__(self, greeting, **kw):
        super().__init__(**kw)
        self.greeting = greeting
        self.name = "myprovider:" + greeting

    def _stream(self, messages, **params):
        yield f"{self.greeting}, {messages[-1]['content']}"


class ShoutCorrector(Corrector):
    name = "shout"

    @classmethod
    def matches(cls, spec):
        return isinstance(spec, str) and spec.startswith("shout:")

    @classmethod
    def from_spec(cls, spec, *, template=None, decoding=None, **kw):
        return cls(template, decoding)

    def generate(self, prompts, decoding):
        return ["SHOUTED" for _ in prompts]

    def stream_prompt(self, prompt, decoding):
        yield "SHOUTED"
'''

ENTRY_POINTS = """\
[aligner.upstreams]
myprovider = myprov:EchoUpstream

[aligner.correctors]
shout = myprov:ShoutCorrector
broken = myprov_missing:Nothing
"""

SCRIPT = """\
import json, sys
from aligner import Aligner
al = Aligner(upstream="myprovider:hello", corrector="shout:x")
print(json.dumps({"upstream": type(al.upstream).__name__, "name": al.upstream.name,
                  "answer": al.answer("world"), "corrector": type(al.corrector).__name__,
                  "raw": al.corrector.generate(["p"], al.corrector.decoding),
                  "litellm": type(Aligner(upstream="openai/gpt-4o-mini", corrector="shout:x").upstream).__name__}))
"""


@pytest.fixture()
def plugin_dist(tmp_path: Path) -> Path:
    """A distribution as pip installs it: the module, and its ``*.dist-info`` with entry points."""
    (tmp_path / "myprov.py").write_text(PLUGIN)
    info = tmp_path / "myprov-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myprov\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return tmp_path


def test_a_third_party_provider_registers_through_entry_points(plugin_dist):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dist), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"upstream": "EchoUpstream", "name": "myprovider:hello", "answer": "hello, world",
                   "corrector": "ShoutCorrector", "raw": ["SHOUTED"], "litellm": "LiteLLMUpstream"}
    # the broken entry point is named in a warning and breaks nothing else
    assert "myprov_missing" in out.stderr


def test_without_the_plugin_its_spec_is_a_litellm_model_string():
    assert type(resolve_upstream("myprovider:hello")).__name__ == "LiteLLMUpstream"


def test_built_in_providers_are_registered_in_the_order_specs_are_tried():
    names = [c.__name__ for c in UPSTREAMS]
    # catch-alls last: any other string is LiteLLM, any other callable a function upstream
    assert set(names[-2:]) == {"LiteLLMUpstream", "CallableUpstream"}
    assert {"OpenAICompatibleUpstream", "HFUpstream", "OpenAIUpstream"} <= set(names[:-2])
    assert [c.__name__ for c in CORRECTORS][-1] == "LocalCorrector"
    assert "RemoteCorrector" in [c.__name__ for c in CORRECTORS]


def test_spec_errors_still_name_the_field():
    with pytest.raises(ConfigError) as info:
        resolve_upstream("hf:  ")
    assert info.value.field == "upstream" and "'hf:' needs a model path" in str(info.value)
    with pytest.raises(ConfigError) as info:
        resolve_upstream("openai/gpt-4o-mini", model="gpt-4o")
    assert info.value.field == "upstream_model"
    with pytest.raises(ConfigError) as info:
        resolve_upstream(42)
    assert info.value.field == "upstream" and "cannot use 42" in str(info.value)


def test_registering_a_class_without_from_spec_is_refused():
    class NotAProvider:
        pass

    with pytest.raises(ConfigError) as info:
        UPSTREAMS.register(NotAProvider)  # type: ignore[arg-type]
    assert "matches" in str(info.value) and info.value.field == "upstream"


class MyCompatible(OpenAICompatibleUpstream):
    """A user's subclass (extra headers, a different name...): still an OpenAI-protocol upstream."""


class MyTextOnly(OpenAICompatibleUpstream):
    takes_openai_params = False


def test_a_subclass_of_an_openai_parameter_upstream_keeps_its_parameters_through_the_server(
        fake, tiny_causal_path):
    """The server once kept a list of class-name strings: a subclass's seed/temperature were
    refused or dropped. The capability is a class attribute now, inherited like any other."""
    fake.clear()
    al = Aligner(MyCompatible(fake.base_url, MODEL), corrector=str(tiny_causal_path),
                 decoding={"max_new_tokens": 8})
    with ServerThread(create_app(al, ServeConfig(upstream_model=MODEL))) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}],
            "seed": 7, "temperature": 0.25, "top_p": 0.5})
    assert r.status_code == 200, r.text
    sent = fake.last_body(CHAT)
    assert (sent["seed"], sent["temperature"], sent["top_p"]) == (7, 0.25, 0.5)


def test_a_subclass_that_turns_the_capability_off_is_refused_by_name(fake, tiny_causal_path):
    al = Aligner(MyTextOnly(fake.base_url, MODEL), corrector=str(tiny_causal_path),
                 decoding={"max_new_tokens": 8})
    with ServerThread(create_app(al, ServeConfig(upstream_model=MODEL))) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}],
            "response_format": {"type": "json_object"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    assert "MyTextOnly" in r.json()["error"]["message"]


THREADS_SCRIPT = """
import json, threading
from aligner.adapters.resolve import resolve_upstream
got, start = [], threading.Barrier(4)

def first_lookup():
    start.wait()  # four threads resolve their first spec at the same moment
    got.append(type(resolve_upstream("myprovider:hi")).__name__)

threads = [threading.Thread(target=first_lookup) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(got))
"""


def test_threads_resolving_their_first_spec_at_once_all_see_the_plugins(plugin_dist):
    """The registry loads plug-ins once, on the first lookup; a thread arriving while another is
    still importing them waits for the whole registry instead of matching against a partial one
    (where ``myprovider:hi`` would fall through to the LiteLLM catch-all)."""
    slow = plugin_dist / "myprov.py"
    slow.write_text("import time\ntime.sleep(1.0)  # a plug-in with a heavy import\n" + slow.read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dist), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["EchoUpstream"] * 4
