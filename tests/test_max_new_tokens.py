"""One meaning of ``max_new_tokens`` (issue 22 item 5): an explicit length, or the cap derived from
the answer (``2 × answer tokens + 64``), with one precedence rule (``aligner.contracts.decoding.resolve_length``)
whatever the source — Python, the CLI, a config file, the server (its ``--max-new-tokens`` and a
request's ``max_tokens``), a command's own default.

Each case is measured where it lands: the corrector is a real completions server on 127.0.0.1
(tests/fake_openai.py) behind a ``RemoteCorrector``, and the ``max_tokens`` it is sent is the
limit the correction really got. A remote corrector counts an answer's tokens as its UTF-8 bytes,
so the answer below (20 bytes) has an answer-relative cap of 2 × 20 + 64 = 104 tokens.
"""
from __future__ import annotations

import httpx
import pytest

from aligner import Aligner
from aligner.cli import main
from aligner.contracts.decoding import DecodingConfig, resolve_length
from aligner.runtime.guard import new_token_cap
from fake_openai import COMPLETIONS, FakeOpenAI

Q, A = "Where is Paris?", "Paris is in Germany."
CAP = new_token_cap(len(A.encode()))  # the answer-relative cap: 104
DEFAULT = DecodingConfig().max_new_tokens  # 2048


@pytest.fixture(scope="module")
def corrector_server():
    with FakeOpenAI(responder=lambda req: " Paris is in France.</s>", models=("aligner-7b",)) as srv:
        yield srv


def sent(srv: FakeOpenAI) -> int:
    """The ``max_tokens`` of the last request the corrector server got."""
    return srv.last_body(COMPLETIONS)["max_tokens"]


def test_the_rule_itself():
    base = {"max_new_tokens": 2048, "cap_to_answer": True}
    rows = [  # (chosen, ceilings) -> (max_new_tokens, cap_to_answer)
        ({}, (), (2048, True)),
        ({"max_new_tokens": 50}, (), (50, False)),  # a chosen length turns the answer cap off ...
        ({"max_new_tokens": 50, "cap_to_answer": True}, (), (50, True)),  # ... unless chosen too
        ({"cap_to_answer": False}, (), (2048, False)),
        ({}, (512, None), (512, True)),  # ceilings lower the length and leave the cap as it was
        ({"max_new_tokens": 300}, (512, 80), (80, False)),
        ({}, (4096,), (2048, True)),  # and never raise it
    ]
    for chosen, ceilings, (length, cap) in rows:
        assert resolve_length(base, chosen, ceilings=ceilings) == {"max_new_tokens": length, "cap_to_answer": cap}
    assert DecodingConfig(max_new_tokens=300, cap_to_answer=True).row_cap(20) == CAP
    assert DecodingConfig(max_new_tokens=80, cap_to_answer=True).row_cap(20) is None  # 80 is the limit
    assert DecodingConfig(max_new_tokens=300, cap_to_answer=False).row_cap(20) is None


API = [  # decoding= of Aligner(...) -> the limit the correction gets
    (None, CAP),
    ({"max_new_tokens": 50}, 50),
    ({"max_new_tokens": 300}, 300),  # the user chose the length: no answer cap
    ({"max_new_tokens": 300, "cap_to_answer": True}, CAP),
    ({"max_new_tokens": 50, "cap_to_answer": True}, 50),
    ({"cap_to_answer": False}, DEFAULT),
    (DecodingConfig(max_new_tokens=300), CAP),  # a DecodingConfig is taken as it is (its cap is on)
]


@pytest.mark.parametrize("decoding, limit", API)
def test_python_api(corrector_server, decoding, limit):
    aligner = Aligner(None, corrector=corrector_server.base_url, decoding=decoding)
    aligner.correct(Q, A)
    assert sent(corrector_server) == limit
    # the same settings given per call, over a corrector with its defaults
    Aligner(None, corrector=corrector_server.base_url).correct(Q, A, decoding=decoding)
    assert sent(corrector_server) == limit


CLI = [([], CAP), (["--max-new-tokens", "50"], 50), (["--max-new-tokens", "300"], 300)]


@pytest.mark.parametrize("flags, limit", CLI)
def test_cli_flag(corrector_server, capsys, flags, limit):
    assert main(["correct", Q, "--answer", A, "--corrector", corrector_server.base_url, "--json", *flags]) == 0
    capsys.readouterr()
    assert sent(corrector_server) == limit


@pytest.mark.parametrize("yaml, flags, limit", [("max-new-tokens: 300\n", [], 300),
                                                ("max_new_tokens: 50\n", [], 50),
                                                ("max-new-tokens: 300\n", ["--max-new-tokens", "50"], 50),
                                                ("", [], CAP)])
def test_config_file(corrector_server, tmp_path, capsys, yaml, flags, limit):
    cfg = tmp_path / "correct.yaml"
    cfg.write_text(f"corrector: {corrector_server.base_url}\njson: true\n{yaml}")
    assert main(["correct", Q, "--answer", A, "--config", str(cfg), *flags]) == 0
    capsys.readouterr()
    assert sent(corrector_server) == limit


def test_a_commands_own_default_is_a_chosen_length(corrector_server):
    """``aligner demo`` chooses 256 new tokens for its corrector: a chosen length, so no answer cap.
    (The demo asks its demo gate first by default; without one every answer reaches the corrector.)"""
    from aligner.demo.page import DemoConfig

    DemoConfig(corrector=corrector_server.base_url, gate=None).build(upstream=False).correct(Q, A)
    assert sent(corrector_server) == 256


SERVER = [  # (ServeConfig.max_new_tokens, Aligner decoding, request max_tokens) -> limit
    (512, None, None, CAP),  # --max-new-tokens is a ceiling: the answer cap applies under it
    (512, None, 50, 50),  # a request's max_tokens lowers the ceiling ...
    (512, None, 300, CAP),  # ... and leaves the answer cap on
    (80, None, None, 80),  # a ceiling below the answer cap
    (512, {"max_new_tokens": 300}, None, 300),  # an Aligner served as it is: its chosen length, no cap
    (512, {"max_new_tokens": 300}, 50, 50),
    (200, {"max_new_tokens": 300}, None, 200),
]


@pytest.mark.parametrize("serve_max, decoding, max_tokens, limit", SERVER)
def test_server(corrector_server, serve_max, decoding, max_tokens, limit):
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    if decoding is None:  # built from the server's options, as `aligner serve` does
        app = create_app(ServeConfig(corrector=corrector_server.base_url, max_new_tokens=serve_max))
    else:  # a ready Aligner with the server's options
        app = create_app(Aligner(None, corrector=corrector_server.base_url, decoding=decoding),
                         ServeConfig(max_new_tokens=serve_max))
    body = {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}],
            **({"max_tokens": max_tokens} if max_tokens else {})}
    with ServerThread(app) as srv:
        for stream in (False, True):
            r = httpx.post(srv.base_url + "/chat/completions", json={**body, "stream": stream}, timeout=60)
            assert r.status_code == 200, r.text[:300]
            assert sent(corrector_server) == limit, stream
