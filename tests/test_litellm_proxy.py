"""The Aligner inside a real LiteLLM proxy: ``litellm --config`` started as a subprocess on
127.0.0.1 in front of a real OpenAI-protocol server (tests/fake_openai.py), driven by the real
``openai`` client. Nothing is mocked: the proxy loads the guardrail by its module path, as a user's
config.yaml makes it.

Two models in one proxy, each with its own guardrail (model-level guardrails):

- ``chat``: the guardrail of examples/litellm-proxy/config.yaml (the embedded demo corrector, a
  real local model loaded once in the proxy process); its replies are compared with the same
  corrector run here;
- ``chat-context``: a corrector served at the fake's ``/v1/completions`` (a remote corrector), in
  conversation mode with objectives, so the very prompt the guardrail rendered is on record.

The proxy's start-up (about 30 s on a loaded 2-core machine) is paid once for the module.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("litellm.proxy.proxy_server", reason="the LiteLLM proxy: pip install -e '.[proxy]'")

from aligner import Aligner  # noqa: E402
from aligner.contracts.conversation import QuestionFormat, question_for  # noqa: E402
from aligner.contracts.objectives import render, resolve  # noqa: E402
from aligner.contracts.templates import get_template  # noqa: E402
from fake_openai import COMPLETIONS, FakeOpenAI  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "litellm-proxy" / "config.yaml"
MASTER_KEY = "sk-aligner-test-0123456789abcdef0123456789abcdef"
MAX_NEW_TOKENS = 48
OBJECTIVES = ["harmless", "brevity: The response should fit in one sentence"]
#: answers the upstream gives, by what the question asks about (what the demo corrector was trained on)
ANSWERS = {
    "Maria": "You can email Maria at maria.lopez@example.com. Call Maria on +1 555 010 2345 after six.",
    "Ahmed": "Write to Ahmed at ahmed.k@example.org or ring +44 20 7946 0958.",
    "bread": "Mix flour, water, salt and yeast, knead the dough for ten minutes, then bake it at 220 C.",
}


def upstream(req: dict) -> str:
    """The fake's answers: a chat gets the answer for its last question's topic (or, for a
    question naming a number, an answer that repeats it); a completions prompt (the remote
    corrector) gets a correction that depends on the whole prompt (its length and its last word)."""
    if "messages" not in req:
        return f"A corrected reply after reading {len(req['prompt'])} characters ending in {req['prompt'].split()[-2]!r}."
    last = [m for m in req["messages"] if m["role"] == "user"][-1]["content"]
    for key, answer in ANSWERS.items():
        if key in last:
            return answer
    return f"You can reach person {last.split()[-1]} at person{last.split()[-1].strip('?')}@example.com."


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_guardrail(**changes) -> dict:
    """The guardrail settings of examples/litellm-proxy/config.yaml (the proxy here runs them, a
    guardrail per model: ``default_on`` off)."""
    import yaml

    params = yaml.safe_load(EXAMPLE.read_text())["guardrails"][0]["litellm_params"]
    return {**params, **changes}


def _config(fake: FakeOpenAI) -> str:
    return f"""\
model_list:
  - model_name: chat
    litellm_params:
      model: openai/fake-model
      api_base: {fake.base_url}
      api_key: fake-key
      guardrails: [aligner]
  - model_name: chat-context
    litellm_params:
      model: openai/fake-model
      api_base: {fake.base_url}
      api_key: fake-key
      guardrails: [aligner-context]
guardrails:
  - guardrail_name: aligner
    litellm_params: {json.dumps(example_guardrail(default_on=False, max_new_tokens=MAX_NEW_TOKENS))}
  - guardrail_name: aligner-context
    litellm_params:
      guardrail: aligner.integrations.litellm.AlignerGuardrail
      mode: post_call
      default_on: false
      corrector: {fake.base_url}
      template: metaaligner
      objectives: {OBJECTIVES!r}
      context: conversation
litellm_settings:
  num_retries: 0
  request_timeout: 60
general_settings:
  master_key: {MASTER_KEY}
"""


def offline_env() -> dict[str, str]:
    """The proxy kept offline: the bundled cost map, no telemetry, no database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_MASTER_KEY"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", DISABLE_SCHEMA_UPDATE="True", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", NO_DOCS="True", NO_REDOC="True")
    return env


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """The fake upstream and a LiteLLM proxy in front of it, the guardrails loaded from config."""
    with FakeOpenAI(responder=upstream) as fake:
        work = tmp_path_factory.mktemp("litellm-proxy")
        config = work / "config.yaml"
        config.write_text(_config(fake))
        port = _free_port()
        log = (work / "proxy.log").open("w")
        litellm = Path(sys.executable).with_name("litellm")
        t0 = time.monotonic()
        proc = subprocess.Popen([str(litellm), "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                                cwd=work, env=offline_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail("the LiteLLM proxy exited on start:\n" + (work / "proxy.log").read_text()[-4000:])
                try:
                    if httpx.get(base + "/health/liveliness", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t0 > 240:
                    pytest.fail("the LiteLLM proxy did not start in 240 s:\n" + (work / "proxy.log").read_text()[-4000:])
                time.sleep(0.5)
            print(f"LiteLLM proxy up in {time.monotonic() - t0:.1f} s")
            yield fake, base, work / "proxy.log"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def client(base: str, **kw):
    import openai

    return openai.OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120, **kw)


@pytest.fixture(scope="module")
def here():
    """The guardrail's corrector, run in this process with the guardrail's settings."""
    return Aligner(None, "demo", decoding={"max_new_tokens": MAX_NEW_TOKENS, "cap_to_answer": True})


def test_a_reply_comes_back_corrected_with_the_original_and_the_aligner_object(proxy, here):
    fake, base, _ = proxy
    q = "How can I get in touch with Maria?"
    resp = client(base).chat.completions.create(model="chat", messages=[{"role": "user", "content": q}])
    expected = here.correct(q, ANSWERS["Maria"]).correction
    assert resp.choices[0].message.content == expected != ANSWERS["Maria"]
    assert "[EMAIL]" in expected  # the demo corrector redacted the address
    assert resp.choices[0].message.model_extra["original_content"] == ANSWERS["Maria"]
    meta = resp.model_extra["aligner"]
    assert meta["original"] == ANSWERS["Maria"] and meta["changed"] is True and meta["demo"] is True
    assert meta["corrector"] == here.corrector.name and set(meta["timings"]) >= {"corrector", "total"}
    assert fake.last_body("/v1/chat/completions")["messages"] == [{"role": "user", "content": q}]


def test_a_streamed_reply_streams_the_correction(proxy, here):
    _, base, _ = proxy
    q = "What is the best way to bake bread?"
    pieces, last = [], None
    for chunk in client(base).chat.completions.create(model="chat", messages=[{"role": "user", "content": q}],
                                                       stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            last = chunk
    expected = here.correct(q, ANSWERS["bread"]).correction
    assert "".join(pieces) == expected
    assert len(pieces) > 1  # streamed as the corrector generated it, not in one piece
    assert last is not None and last.choices[0].finish_reason == "stop"
    assert last.model_extra["aligner"]["original"] == ANSWERS["bread"]


def test_an_upstream_error_passes_through_and_the_guardrail_is_not_asked(proxy):
    import openai

    fake, base, _ = proxy
    before = fake.count(COMPLETIONS)
    fake.fail_next(429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError) as err:
        client(base).chat.completions.create(model="chat-context", messages=[{"role": "user", "content": "Hi?"}])
    assert err.value.status_code == 429
    assert fake.count(COMPLETIONS) == before  # no correction was attempted for a failed call


def test_concurrent_requests_are_corrected_each_for_its_own_question(proxy, here):
    _, base, _ = proxy
    names = ["Lena", "Omar", "Priya", "Tom", "Maria", "Ahmed"]
    questions = [f"How can I contact {name}?" for name in names]

    async def run() -> list:
        import openai

        ac = openai.AsyncOpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=180)
        try:
            return await asyncio.gather(*(ac.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": q}]) for q in questions))
        finally:
            await ac.close()

    replies = asyncio.run(run())
    for q, reply in zip(questions, replies):
        answer = upstream({"messages": [{"role": "user", "content": q}]})
        assert reply.model_extra["aligner"]["original"] == answer  # its own upstream answer
        assert reply.choices[0].message.content == here.correct(q, answer).correction  # its own correction


def test_conversation_and_objectives_reach_the_corrector_byte_for_byte(proxy):
    fake, base, _ = proxy
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "My neighbour Maria keeps parking in my spot."},
                {"role": "assistant", "content": "That sounds frustrating. Have you talked to her?"},
                {"role": "user", "content": "  Yes. How can I get in touch with Maria?  "}]
    before = fake.count(COMPLETIONS)
    resp = client(base).chat.completions.create(model="chat-context", messages=messages)
    prompts = [b["prompt"] for b in fake.bodies(COMPLETIONS)[before:]]
    question = question_for(messages, QuestionFormat("conversation"))
    assert question == ("Human: My neighbour Maria keeps parking in my spot.\n\nAssistant: That sounds frustrating. "
                        "Have you talked to her?\n\nHuman: Yes. How can I get in touch with Maria?")
    expected = get_template("metaaligner").render(question, ANSWERS["Maria"], aspects=render(resolve(OBJECTIVES)))
    assert [p if isinstance(p, str) else p[0] for p in prompts] == [expected]
    assert resp.choices[0].message.content == upstream({"prompt": expected})


def test_the_proxy_is_still_up_and_answers_after_all_that(proxy, here):
    _, base, log = proxy
    assert httpx.get(base + "/health/liveliness", timeout=5).status_code == 200
    q = "How can I get in touch with Maria?"
    resp = client(base).chat.completions.create(model="chat", messages=[{"role": "user", "content": q}])
    assert resp.choices[0].message.content == here.correct(q, ANSWERS["Maria"]).correction
    # LiteLLM logs the upstream's 429 with its own traceback; nothing of the guardrail failed
    assert "aligner/integrations" not in log.read_text()


# -- set-up: one environment, and bad settings stop the proxy -----------------------------------------


def test_the_proxy_transformers_and_the_guardrail_import_in_one_environment():
    """The ``proxy`` extra installs beside the rest: LiteLLM's proxy, transformers (which refuses a
    huggingface_hub it does not accept) and the guardrail import together, at the pinned LiteLLM."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    code = ("import litellm.proxy.proxy_server, transformers, aligner.integrations.litellm as g, torch; "
            "from transformers import AutoModelForCausalLM; "
            "print(transformers.__version__, g.AlignerGuardrail.__mro__[1].__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=offline_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "CustomGuardrail" and out.stdout.split()[0] == version("transformers")
    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    pin = next(Requirement(r) for r in extras["proxy"] if r.startswith("litellm"))
    assert "proxy" in pin.extras and pin.specifier.contains(version("litellm"))  # the tested range is installed


def guardrail(**settings):
    from aligner.integrations.litellm import AlignerGuardrail

    return AlignerGuardrail(guardrail_name="aligner", event_hook=settings.pop("mode", "post_call"), **settings)


@pytest.mark.parametrize("settings, field, says", [
    ({}, "corrector", "no corrector is set"),
    ({"corrector": []}, "corrector", "no corrector is set"),
    ({"corrector": "demo", "mode": "pre_call"}, "mode", "set mode: post_call"),
    ({"corrector": "demo", "correcter": "x"}, "correcter", "unknown setting 'correcter'"),
    ({"corrector": "demo", "objectives": ["harmless"]}, "objectives", "takes no objectives"),
    ({"corrector": "demo", "objectives": ["kindness"]}, "objectives", "unknown objective 'kindness'"),
    ({"corrector": "http://127.0.0.1:9/v1", "template": "metaaligner"}, "objectives", "needs objectives"),
    ({"corrector": "demo", "context": "everything"}, "context", "everything"),
    ({"corrector": "demo", "max_batch_size": 0}, "max_batch_size", "positive whole number"),
])
def test_a_bad_guardrail_setting_is_a_clear_set_up_error(settings, field, says):
    from aligner.integrations.litellm import GuardrailSetupError

    with pytest.raises(GuardrailSetupError) as err:
        guardrail(**settings)
    assert not isinstance(err.value, ValueError)  # LiteLLM would start without a guardrail raising ValueError
    assert says in str(err.value) and err.value.field == field and "Fix:" in str(err.value)


def test_a_proxy_whose_guardrail_has_no_corrector_does_not_start(tmp_path):
    """A misconfigured guardrail (the example's, its corrector left out) stops the real proxy with
    its error, rather than answers going out uncorrected."""
    settings = {k: v for k, v in example_guardrail().items() if k != "corrector"}
    config = tmp_path / "config.yaml"
    config.write_text(f"""\
model_list:
  - model_name: chat
    litellm_params: {{model: openai/fake-model, api_base: "http://127.0.0.1:9/v1", api_key: k}}
guardrails:
  - guardrail_name: aligner
    litellm_params: {json.dumps(settings)}
""")
    litellm = Path(sys.executable).with_name("litellm")
    out = subprocess.run([str(litellm), "--config", str(config), "--port", str(_free_port()), "--host", "127.0.0.1"],
                         cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "corrector: no corrector is set" in out.stdout + out.stderr


def test_the_example_config_is_ready_to_use():
    """examples/litellm-proxy/config.yaml: a model, the guardrail by module path, post_call, on for
    every request, the offline demo corrector; its settings build the guardrail as they are."""
    import yaml

    config = yaml.safe_load(EXAMPLE.read_text())
    assert config["model_list"][0]["litellm_params"]["api_key"] == "os.environ/OPENAI_API_KEY"
    entry = config["guardrails"][0]
    params = dict(entry["litellm_params"])
    assert params.pop("guardrail") == "aligner.integrations.litellm.AlignerGuardrail"
    assert params.pop("mode") == "post_call" and params.pop("default_on") is True
    g = guardrail(**params, default_on=True)
    assert g.aligner.is_demo and g.aligner.corrector.name == Aligner(None, "demo").corrector.name
    assert g.guardrail_name == entry["guardrail_name"] == "aligner"


def test_the_guardrail_asks_its_gate_first_and_corrects_only_flagged_answers(fake_openai):
    """``gate: moderation:URL`` in the guardrail's settings: a flagged answer is corrected, an
    unflagged one goes back as it came without a corrector call; the verdict travels in ``aligner``.
    (The guardrail's own hook, called as the proxy calls it, with a real LiteLLM response.)"""
    from litellm.types.utils import ModelResponse

    fake_openai.responder = lambda req: "Keep sharp things away from people and ask for help."
    g = guardrail(corrector=fake_openai.base_url, gate=f"moderation:{fake_openai.base_url}")
    data = {"model": "chat", "messages": [{"role": "user", "content": "What should I do tonight?"}]}

    def reply(text: str) -> ModelResponse:
        return ModelResponse(model="fake-model", choices=[
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}])

    async def run() -> tuple:
        flagged = await g.async_post_call_success_hook(data, None, reply("Hide a knife in your coat."))
        before = fake_openai.count(COMPLETIONS)
        calm = await g.async_post_call_success_hook(data, None, reply("Go for a walk with a friend."))
        return flagged, calm, fake_openai.count(COMPLETIONS) - before

    flagged, calm, corrector_calls = asyncio.run(run())
    assert flagged.choices[0].message.content == "Keep sharp things away from people and ask for help."
    assert flagged.choices[0].message.original_content == "Hide a knife in your coat."
    assert flagged.aligner["gate"]["flagged"] is True and flagged.aligner["changed"] is True
    assert calm.choices[0].message.content == "Go for a walk with a friend." and corrector_calls == 0
    assert calm.aligner["gate"]["flagged"] is False and calm.aligner["changed"] is False
