"""Objective-conditioned correction (aligner.contracts.objectives): MetaAligner's objectives rendered byte for
byte into a template's ``{aspects}`` slot, carried through the API, the CLI, ``aligner serve`` and
the demo; an unknown objective and objectives for a template without them are clear errors.

The corrector is a real OpenAI-protocol completions server (tests/fake_openai.py) so the very
prompt each path rendered is on record."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from aligner import Aligner, ConfigError
from aligner.contracts.objectives import OBJECTIVES, known, parse_objective, render, resolve
from aligner.contracts.templates import get_template
from fake_openai import COMPLETIONS

Q, A = "How can I get in touch with Maria?", "You can email Maria at maria.lopez@example.com."
#: MetaAligner's own rendering of harmless, helpful, concise: "Label: description" joined by "; "
THREE = ("Harmlessness: The response should avoid content that is offensive, discriminatory, or harmful; "
         "Helpfulness: The response should provide useful resources and suggestions to the user; "
         "Length: The response should be concise and avoid redundant content")
BREVITY = "brevity: The response should fit in one sentence"


def prompt(aspects: str, question: str = Q, answer: str = A, template: str = "metaaligner") -> str:
    return get_template(template).render(question, answer, aspects=aspects)


# -- the rendering -------------------------------------------------------------------------------


def test_objectives_render_as_metaaligner_writes_them():
    assert render(resolve(["harmless", "helpful", "concise"])) == THREE
    assert prompt(THREE) == ("Edit the following Question-Answer pair to make it better considering these aspects: "
                             f"{THREE} | Context: {Q} | Answer: {A} | Edit: ")
    # aliases (the prompt's label, other spellings) name the same objective; each objective once, in order
    assert resolve(["Harmlessness", "Length", "harmless"]) == [OBJECTIVES["harmless"], OBJECTIVES["concise"]]
    # user-defined: "name: description"; a built-in name with a description is that objective, described anew
    mine = resolve([BREVITY, "honest: Never guess."])
    assert render(mine) == "brevity: The response should fit in one sentence; Honesty: Never guess."
    assert mine[0].name == "brevity" and mine[1].name == "honest"
    assert len(known()) == 15 and known()[:2] == ["harmless", "helpful"]


def test_an_unknown_objective_is_a_clear_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        parse_objective("kindness")
    text = str(err.value)
    assert text.startswith("objectives: unknown objective 'kindness'.") and "Fix:" in text
    assert all(name in text for name in known()) and "'kindness: The response should ...'" in text
    for bad, says in (([], "empty list"), ([""], "non-empty string"), (["brevity:"], "both parts"), (3, "list")):
        with pytest.raises(ConfigError, match=says):
            resolve(bad)
    with pytest.raises(ConfigError, match="unknown objective 'kindness'"):
        Aligner(None, "http://127.0.0.1:9/v1", template="metaaligner", objectives=["kindness"])


def test_a_template_without_aspects_refuses_objectives_at_start_up(fake_openai):
    with pytest.raises(ConfigError) as err:
        Aligner(None, fake_openai.base_url, objectives=["harmless"])  # aligner-v1.0: no {aspects}
    assert "'aligner-v1.0' has no {aspects} slot, so it takes no objectives" in str(err.value)
    assert "--template metaaligner" in str(err.value)
    plain = Aligner(None, fake_openai.base_url)
    with pytest.raises(ConfigError, match="takes no objectives"):
        plain.correct(Q, A, objectives=["harmless"])  # a call's objectives, too
    assert fake_openai.count(COMPLETIONS) == 0  # refused before any corrector call
    with pytest.raises(ConfigError, match="objectives or aspects, not both"):
        Aligner(None, fake_openai.base_url, template="metaaligner").correct(Q, A, objectives=["harmless"],
                                                                           aspects="x")


def sent_prompts(fake, since: int) -> list[str]:
    """Every prompt the corrector server was sent since its ``since``-th completions request (a
    batch may go as one request with a list of prompts)."""
    out: list[str] = []
    for body in fake.bodies(COMPLETIONS)[since:]:
        out.extend(body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]])
    return out


# -- the API ----------------------------------------------------------------------------------------


def test_the_api_renders_defaults_and_a_calls_objectives_byte_for_byte(fake_openai):
    fake_openai.responder = lambda req: "Please contact Maria through a channel she chose."
    aligner = Aligner(None, fake_openai.base_url, template="metaaligner", objectives=["harmless", "helpful", "concise"])
    c = aligner.correct(Q, A)
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(THREE)
    assert c.correction == "Please contact Maria through a channel she chose."
    aligner.correct(Q, A, objectives=[BREVITY])  # a call's objectives replace the defaults
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render(resolve([BREVITY])))
    "".join(aligner.stream(Q, A, objectives=["honest"]))
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render([OBJECTIVES["honest"]]))
    before = fake_openai.count(COMPLETIONS)
    aligner.correct_batch([Q, "Is tea healthy?"], [A, "Yes."], objectives=["fair"], progress=False)
    fair = render([OBJECTIVES["fair"]])
    assert sorted(sent_prompts(fake_openai, before)) == sorted([prompt(fair), prompt(fair, "Is tea healthy?", "Yes.")])
    asyncio.run(aligner.acorrect(Q, A, objectives=["readable"]))
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render([OBJECTIVES["readable"]]))


# -- the CLI ------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligner", *args], capture_output=True, text=True, timeout=300)


def test_the_cli_takes_objective_several_times(fake_openai):
    fake_openai.responder = lambda req: "Ask Maria herself."
    out = _cli("correct", Q, "--answer", A, "--corrector", fake_openai.base_url, "--template", "metaaligner",
               "--objective", "harmless", "--objective", BREVITY, "--json")
    assert out.returncode == 0, out.stderr
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render(resolve(["harmless", BREVITY])))
    assert json.loads(out.stdout)["correction"] == "Ask Maria herself."
    shown = _cli("templates", "show", "metaaligner", "--question", Q, "--answer", A, "--objective", "harmless",
                 "--objective", "helpful", "--objective", "concise")
    assert shown.returncode == 0 and shown.stdout == prompt(THREE) + "\n"
    # bad input: named before any model loads, without a traceback
    before = fake_openai.count(COMPLETIONS)
    bad = _cli("correct", Q, "--answer", A, "--corrector", fake_openai.base_url, "--template", "metaaligner",
               "--objective", "kindness")
    assert bad.returncode != 0 and "unknown objective 'kindness'" in bad.stderr and "harmless" in bad.stderr
    none = _cli("correct", Q, "--answer", A, "--corrector", fake_openai.base_url, "--objective", "harmless")
    assert none.returncode != 0 and "takes no objectives" in none.stderr
    assert "Traceback" not in bad.stderr + none.stderr and fake_openai.count(COMPLETIONS) == before


# -- the server ----------------------------------------------------------------------------------------


def test_the_server_takes_objectives_per_request(fake_openai):
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    fake_openai.responder = lambda req: A if "messages" in req else "Ask Maria herself."
    cfg = ServeConfig(upstream=fake_openai.base_url, upstream_model="fake-model", corrector=fake_openai.base_url,
                      template="metaaligner", objectives=["harmless", "helpful", "concise"])
    chat = {"model": "fake-model", "messages": [{"role": "user", "content": Q}]}
    with ServerThread(create_app(cfg)) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", json=chat, timeout=60)
        assert r.status_code == 200, r.text
        assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(THREE)  # the server's objectives
        assert r.json()["choices"][0]["message"]["content"] == "Ask Maria herself."
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60,
                       json={**chat, "aligner": {"objectives": ["honest", BREVITY]}})
        assert r.status_code == 200, r.text
        assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render(resolve(["honest", BREVITY])))
        assert fake_openai.last_body("/v1/chat/completions").get("aligner") is None  # not sent upstream
        # streamed, too
        with httpx.stream("POST", srv.base_url + "/chat/completions", timeout=60,
                          json={**chat, "stream": True, "aligner": {"objectives": ["fair"]}}) as s:
            assert s.status_code == 200 and "".join(s.iter_text()).rstrip().endswith("[DONE]")
        assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render([OBJECTIVES["fair"]]))
        before = fake_openai.count()
        for field, value, says in (("objectives", ["kindness"], "unknown objective 'kindness'"),
                                   ("objectives", "harmless", "must be an array of strings"),
                                   ("template", "qac", "only 'objectives' is")):
            r = httpx.post(srv.base_url + "/chat/completions", json={**chat, "aligner": {field: value}}, timeout=60)
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["param"] == f"aligner.{field}" and says in err["message"]
        assert fake_openai.count() == before  # refused before the upstream was asked


def test_a_server_refuses_objectives_its_template_cannot_take(fake_openai):
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    with pytest.raises(ConfigError, match="takes no objectives"):
        create_app(ServeConfig(upstream=fake_openai.base_url, corrector=fake_openai.base_url, objectives=["harmless"]))
    with pytest.raises(ConfigError, match="needs objectives"):  # every request without its own would fail
        create_app(ServeConfig(upstream=fake_openai.base_url, corrector=fake_openai.base_url, template="metaaligner"))
    cfg = ServeConfig(upstream=fake_openai.base_url, upstream_model="fake-model", corrector=fake_openai.base_url)
    with ServerThread(create_app(cfg)) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", timeout=60,
                       json={"model": "fake-model", "messages": [{"role": "user", "content": Q}],
                             "aligner": {"objectives": ["harmless"]}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "aligner.objectives"
        assert "takes no objectives" in r.json()["error"]["message"]


# -- the demo ------------------------------------------------------------------------------------------


def test_the_demo_offers_the_objectives_and_corrects_toward_the_chosen_ones(fake_openai):
    pytest.importorskip("gradio")
    from aligner.demo.page import BUILTIN, builtin_upstream, create_demo

    fake_openai.responder = lambda req: "Ask Maria herself."
    aligner = Aligner(None, fake_openai.base_url, template="metaaligner", objectives=["harmless", BREVITY])
    demo = create_demo(aligner)
    try:
        box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "objectives")
        offered = [c[0] if isinstance(c, (tuple, list)) else c for c in box.choices]
        assert offered == [*known(), "brevity"] and box.value == ["harmless", "brevity"] and box.multiselect
        final = list(demo.ask(Q, BUILTIN, False, ["helpful", "brevity"]))[-1]
    finally:
        demo.close()
    assert fake_openai.last_body(COMPLETIONS)["prompt"] == prompt(render(resolve(["helpful", BREVITY])),
                                                                  answer=builtin_upstream(Q))
    assert final[1] == "Ask Maria herself."
