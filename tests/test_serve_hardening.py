"""``aligner serve`` under bad input, pass-through features, limits and exposure (issue 10, server).

Real clients (the ``openai`` SDK, raw httpx, raw sockets, an ``aligner serve`` subprocess) talk to a
real uvicorn; the upstream is the real fake OpenAI HTTP server of tests/fake_openai.py.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from aligner import Aligner
from aligner.adapters import LiteLLMUpstream, OpenAICompatibleUpstream, OpenAIUpstream, RetryPolicy
from aligner.serve.app import create_app
from aligner.serve.config import ServeConfig
from aligner.serve.runner import ServerThread
from fake_openai import CHAT, upstream_answer
from processes import stop as stop_serve

GREEDY = {"max_new_tokens": 16}
MODEL = "fake-model"
KEY = "sk-good"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOL_CALL = {"id": "call_abc123", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}


@pytest.fixture(autouse=True)
def _fresh_fake(fake):
    fake.responder = None
    fake.clear()
    yield
    fake.responder = None
    fake.clear()


@pytest.fixture(scope="module")
def aligner(fake, tiny_causal_path):
    al = Aligner(fake.base_url, corrector=str(tiny_causal_path), upstream_model=MODEL, decoding=GREEDY)
    al.upstream.retry = RetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.05, timeout=30)
    return al


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("keys") / "keys.txt"
    p.write_text(KEY + "\n")
    return p


@pytest.fixture(scope="module")
def server(aligner, keyfile):
    """The default server options (bypass off), with keys on."""
    with ServerThread(create_app(aligner, ServeConfig(upstream_model=MODEL, api_keys_file=str(keyfile),
                                                      request_timeout=20))) as srv:
        yield srv


@contextmanager
def serving(aligner, **options) -> Iterator[ServerThread]:
    with ServerThread(create_app(aligner, ServeConfig(upstream_model=MODEL, **options))) as srv:
        yield srv


def client(srv, key: str | None = KEY):
    import openai

    return openai.OpenAI(base_url=srv.base_url, api_key=key or "none", max_retries=0)


def post(srv, body=None, *, content=None, key: str | None = KEY, headers=None) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    if content is not None:
        h.setdefault("content-type", "application/json")
    return httpx.post(srv.base_url + "/chat/completions", json=body, content=content, headers=h, timeout=60)


def user(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_openai_error(r: httpx.Response, status: int, *, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and err["type"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- item 3: every bad body is a 400 in the OpenAI format, before anything runs ------------------------
def _raw(fields: str) -> bytes:
    """A body with one raw JSON fragment (what json.dumps would never write) next to valid fields."""
    return ('{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], ' + fields + "}").encode()


BAD_BODIES = {
    # case: (body or raw bytes, the param the error names (None: the body as a whole), code)
    "part_text_number": ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
                         "messages[0].content[0].text", "invalid_value"),
    "part_text_null": ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
                       "messages[0].content[0].text", "invalid_value"),
    "part_without_type": ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
                          "messages[0].content[0].type", "invalid_value"),
    "integer_5000_digits": (_raw('"seed": ' + "9" * 5000), "seed", "invalid_value"),
    "nested_100k_deep": (_raw('"metadata": ' + "[" * 100_000 + "]" * 100_000), None, "invalid_json"),
    "nested_100_deep": (_raw('"metadata": ' + "[" * 100 + "]" * 100), None, "invalid_json"),
    "temperature_nan": (_raw('"temperature": NaN'), "temperature", "invalid_value"),
    "temperature_infinity": (_raw('"temperature": Infinity'), "temperature", "invalid_value"),
    "top_p_1e999": (_raw('"top_p": 1e999'), "top_p", "invalid_value"),
    "nan_in_a_tool_schema": (_raw('"tools": [{"type": "function", "function": {"name": "f", "parameters": '
                                  '{"type": "object", "x": NaN}}}]'),
                             "tools[0].function.parameters.x", "invalid_value"),
    "lone_surrogate": (b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
                       "messages[0].content", "invalid_value"),
    "surrogate_in_user": (_raw('"user": "\\udfff"'), "user", "invalid_value"),
    "temperature_3": ({"temperature": 3}, "temperature", "invalid_value"),
    "temperature_string": ({"temperature": "hot"}, "temperature", "invalid_value"),
    "top_p_negative": ({"top_p": -0.1}, "top_p", "invalid_value"),
    "presence_penalty_5": ({"presence_penalty": 5}, "presence_penalty", "invalid_value"),
    "frequency_penalty_bool": ({"frequency_penalty": True}, "frequency_penalty", "invalid_value"),
    "seed_float": ({"seed": 1.5}, "seed", "invalid_value"),
    "seed_huge": ({"seed": 2 ** 70}, "seed", "invalid_value"),
    "stop_five": ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    "stop_number": ({"stop": [1]}, "stop", "invalid_value"),
    "user_number": ({"user": 5}, "user", "invalid_value"),
    "logit_bias_range": ({"logit_bias": {"50256": 500}}, "logit_bias", "invalid_value"),
    "tools_not_a_list": ({"tools": "get_weather"}, "tools", "invalid_value"),
    "tool_without_name": ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name",
                          "invalid_value"),
    "tool_choice_unknown": ({"tool_choice": "maybe"}, "tool_choice", "invalid_value"),
    "response_format_xml": ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    "json_schema_without_schema": ({"response_format": {"type": "json_schema"}}, "response_format.json_schema",
                                   "invalid_value"),
    "stream_options_string": ({"stream": True, "stream_options": "yes"}, "stream_options", "invalid_value"),
    "logprobs_true": ({"logprobs": True}, "logprobs", "invalid_value"),
    "role_unknown": ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    "user_content_null": ({"messages": [{"role": "user", "content": None}]}, "messages[0].content",
                          "invalid_value"),
    "tool_message_without_id": ({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "tool", "content": "sunny"}]},
                                "messages[1].tool_call_id", "invalid_value"),
    # issue 21
    "part_type_unknown": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                                     {"type": "hologram"}]}]},
                          "messages[0].content[1].type", "invalid_value"),
    "model_true": ({"model": True}, "model", "invalid_value"),
    "model_zero": ({"model": 0}, "model", "invalid_value"),
    "model_list": ({"model": []}, "model", "invalid_value"),
    "n_true": ({"n": True}, "n", "invalid_value"),
    "n_two": ({"n": 2}, "n", "invalid_value"),
    "number_5000_digits_in_a_tool": (_raw('"tools": [{"type": "function", "function": {"name": "f", "parameters": '
                                          '{"maximum": ' + "7" * 5000 + '}}}]'),
                                     "tools[0].function.parameters.maximum", "invalid_value"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_get_a_400_naming_the_field_before_the_upstream_is_asked(server, fake, case):
    body, param, code = BAD_BODIES[case]
    if isinstance(body, bytes):
        r = post(server, content=body)
    else:
        r = post(server, {"model": MODEL, "messages": user(), **body})
    err = assert_openai_error(r, 400, param=param, code=code)
    if param:
        assert param in err["message"]
    assert fake.count(CHAT) == 0  # nothing ran
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


# -- item 4: client errors agree streamed or not; a template the server cannot fill is refused -----------
def test_question_too_long_for_the_corrector_is_a_400_streamed_or_not(server, fake):
    import openai

    # 600 words: under the server's 32,000-character limit, over the tiny corrector's 256-token budget
    question = " ".join(f"word{i}" for i in range(600))
    plain = post(server, {"model": MODEL, "messages": user(question)})
    streamed = post(server, {"model": MODEL, "messages": user(question), "stream": True})
    for r in (plain, streamed):
        err = assert_openai_error(r, 400, param="messages", code="context_length_exceeded")
        assert "corrector" in err["message"]
    assert streamed.headers["content-type"].startswith("application/json")
    with pytest.raises(openai.BadRequestError):  # the SDK raises before iterating, as for OpenAI itself
        client(server).chat.completions.create(model=MODEL, messages=user(question), stream=True)
    assert fake.count(CHAT) == 0  # refused before the upstream was paid for


def test_serve_refuses_at_start_a_template_that_needs_aspects(tiny_causal_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aligner", "serve", "--corrector", str(tiny_causal_path),
                             "--template", "metaaligner", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail("the server started and opened its port with a template it cannot fill")
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    assert "metaaligner" in err and "aspects" in err and "--template" in err
    assert "Traceback" not in err


# -- item 5: pass-through ------------------------------------------------------------------------------
def test_openai_request_fields_reach_the_upstream(server, fake):
    sent = dict(tools=TOOLS, tool_choice="auto", parallel_tool_calls=False, user="user-42", seed=7,
                stop=["\n\n", "END"], temperature=0.3, top_p=0.9, presence_penalty=0.5, frequency_penalty=-0.5,
                logit_bias={"50256": -100}, max_completion_tokens=64, metadata={"team": "a"})
    client(server).chat.completions.create(model=MODEL, messages=user("Weather?"),
                                           extra_body={"top_k": 5}, **sent)
    body = fake.last_body(CHAT)
    for key, value in {**sent, "top_k": 5}.items():  # a vendor extra (vLLM's top_k) passes too
        assert body.get(key) == value, key
    assert body["messages"] == user("Weather?") and body["model"] == MODEL


def test_tool_calls_come_back_uncorrected_plain_and_streamed(server, fake):
    usage = {"prompt_tokens": 81, "completion_tokens": 17, "total_tokens": 98}
    fake.responder = lambda req: {"content": None, "tool_calls": [TOOL_CALL], "usage": usage}
    oc = client(server)
    resp = oc.chat.completions.create(model=MODEL, messages=user("Weather in Paris?"), tools=TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [tc.model_dump() for tc in choice.message.tool_calls] == [TOOL_CALL]
    meta = resp.model_extra["aligner"]
    assert meta["skipped"] == "tool_calls" and meta["changed"] is False
    assert resp.usage.model_dump(exclude_none=True) == usage

    calls: dict[int, dict] = {}
    finish, last_meta, text = None, None, ""
    for chunk in oc.chat.completions.create(model=MODEL, messages=user("Weather in Paris?"), tools=TOOLS,
                                            stream=True):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            for d in ch.delta.tool_calls or []:
                c = calls.setdefault(d.index, {"id": None, "type": None, "function": {"name": "", "arguments": ""}})
                c["id"] = d.id or c["id"]
                c["type"] = d.type or c["type"]
                c["function"]["name"] += (d.function.name or "") if d.function else ""
                c["function"]["arguments"] += (d.function.arguments or "") if d.function else ""
            finish = ch.finish_reason or finish
        last_meta = (chunk.model_extra or {}).get("aligner") or last_meta
    assert text == "" and list(calls.values()) == [TOOL_CALL] and finish == "tool_calls"
    assert last_meta["skipped"] == "tool_calls"


@pytest.mark.parametrize("fmt", [{"type": "json_object"},
                                 {"type": "json_schema", "json_schema": {"name": "city", "schema": {
                                     "type": "object", "properties": {"city": {"type": "string"}}}}}])
def test_json_response_format_is_returned_as_the_upstream_wrote_it(server, fake, fmt):
    answer = '{"city": "Paris", "temp_c": 21}'
    fake.responder = lambda req: answer
    oc = client(server)
    resp = oc.chat.completions.create(model=MODEL, messages=user("Weather as JSON"), response_format=fmt)
    assert fake.last_body(CHAT)["response_format"] == fmt
    assert resp.choices[0].message.content == answer and json.loads(resp.choices[0].message.content)
    assert resp.model_extra["aligner"]["skipped"] == "response_format"
    text, meta = "", None
    for chunk in oc.chat.completions.create(model=MODEL, messages=user("Weather as JSON"), response_format=fmt,
                                            stream=True):
        text += "".join(ch.delta.content or "" for ch in chunk.choices)
        meta = (chunk.model_extra or {}).get("aligner") or meta
    assert text == answer and meta["skipped"] == "response_format"


def test_usage_is_the_upstreams_with_the_correctors_tokens_beside_it(server, fake, aligner):
    usage = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}
    q = "How do I boil an egg?"
    fake.responder = lambda req: {"content": upstream_answer(q), "usage": usage}
    oc = client(server)
    resp = oc.chat.completions.create(model=MODEL, messages=user(q))
    assert resp.usage.model_dump(exclude_none=True) == usage
    meta = resp.model_extra["aligner"]
    tok = aligner.corrector.generator.tokenizer
    prompt = aligner.corrector.template.render(q, upstream_answer(q))
    correction = resp.choices[0].message.content
    assert meta["usage"] == {"prompt_tokens": len(tok(prompt)["input_ids"]),
                             "completion_tokens": len(tok(correction, add_special_tokens=False)["input_ids"]),
                             "total_tokens": len(tok(prompt)["input_ids"])
                             + len(tok(correction, add_special_tokens=False)["input_ids"])}
    streamed_usage = None
    for chunk in oc.chat.completions.create(model=MODEL, messages=user(q), stream=True,
                                            stream_options={"include_usage": True}):
        streamed_usage = chunk.usage or streamed_usage
    assert streamed_usage.model_dump(exclude_none=True) == usage


def test_an_upstream_without_parameters_refuses_tools_and_json_mode(tiny_causal_path):
    al = Aligner(lambda q: f"plain answer to {q}", corrector=str(tiny_causal_path), decoding=GREEDY)
    with ServerThread(create_app(al, ServeConfig())) as srv:
        for field, value in (("tools", TOOLS), ("response_format", {"type": "json_object"})):
            r = post(srv, {"model": "aligner", "messages": user(), field: value}, key=None)
            err = assert_openai_error(r, 400, param=field, code="unsupported_parameter")
            assert "upstream" in err["message"]
        ok = post(srv, {"model": "aligner", "messages": user(), "temperature": 0.2}, key=None)
        assert ok.status_code == 200 and ok.json()["usage"] is None  # a function reports no usage


@pytest.mark.parametrize("kind", ["compatible", "openai", "litellm"])
def test_each_openai_protocol_upstream_returns_the_full_reply(fake, kind):
    import openai

    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    fake.responder = lambda req: {"content": None, "tool_calls": [TOOL_CALL], "usage": usage}
    retry = RetryPolicy(max_retries=0, timeout=30)
    up = {"compatible": lambda: OpenAICompatibleUpstream(fake.base_url, MODEL, retry=retry),
          "openai": lambda: OpenAIUpstream(openai.OpenAI(base_url=fake.base_url, api_key="x"), MODEL, retry=retry),
          "litellm": lambda: LiteLLMUpstream(f"openai/{MODEL}", api_base=fake.base_url, api_key="x", retry=retry),
          }[kind]()
    for reply in (up.complete(user("Weather?"), tools=TOOLS),
                  asyncio.run(up.acomplete(user("Weather?"), tools=TOOLS))):
        assert reply.tool_calls == [TOOL_CALL] and reply.text == "" and reply.finish_reason == "tool_calls"
        assert {k: reply.usage[k] for k in usage} == usage
    assert fake.last_body(CHAT)["tools"] == TOOLS
    fake.responder = None
    assert up.answer("Hi?") == upstream_answer("Hi?")  # text answers are unchanged


# -- item 6: Retry-After ---------------------------------------------------------------------------------
def test_retry_after_of_the_upstreams_429_reaches_the_client(server, fake):
    import openai

    fake.fail_next(429, times=2, retry_after=1)  # the first try and the one retry
    with pytest.raises(openai.RateLimitError) as info:
        client(server).chat.completions.create(model=MODEL, messages=user("Busy?"))
    headers = info.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "1000"
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_retry_after_is_a_field_of_the_final_upstream_error(fake):
    from aligner.contracts.errors import UpstreamError

    up = OpenAICompatibleUpstream(fake.base_url, MODEL, retry=RetryPolicy(max_retries=1, timeout=30))
    fake.fail_next(429, times=2, retry_after=0.25)
    with pytest.raises(UpstreamError) as info:
        up.answer("Busy?")
    assert info.value.status == 429 and info.value.retry_after == 0.25 and "2 attempts" in str(info.value)


# -- item 8: limits ----------------------------------------------------------------------------------------
def _trickle(port: int, *, length: int = 200, every: float = 0.3, max_bytes: int = 60) -> tuple[int, bytes, bytes]:
    """POST a body one byte at a time until the server answers; (body bytes sent, head, body)."""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {length}\r\n\r\n").encode()
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        s.settimeout(every)
        while sent < max_bytes and b"\r\n\r\n" not in reply:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
                continue
            except TimeoutError:
                pass
            try:
                s.sendall(b" ")
                sent += 1
            except OSError:
                break
        s.settimeout(30)
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        top, _, body = reply.partition(b"\r\n\r\n")
        length_line = [ln for ln in top.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
        want = int(length_line[0].split(b":")[1]) if length_line else 0
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return sent, top, body


def test_a_trickled_body_is_cut_with_a_408(aligner):
    with serving(aligner, body_timeout=1.0) as srv:
        sent, head, body = _trickle(srv.port)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert sent < 60  # cut long before the body (or the test's patience) ran out
        error = json.loads(body)["error"]
        assert error["code"] == "body_timeout" and "1" in error["message"]
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"


def test_uvicorn_gets_the_servers_limits(aligner):
    with serving(aligner, limit_concurrency=3, timeout_keep_alive=2) as srv:
        # the request limit is the app's own; uvicorn's would count idle sockets
        assert (srv.config.limit_concurrency, srv.config.timeout_keep_alive, srv.config.ws) == (None, 2, "none")
        assert srv.config.http.__name__ == "BoundedH11Protocol"


def test_aligner_serve_flags_set_the_body_timeout_and_connection_limit(tiny_causal_path):
    proc, port = start_serve(["--corrector", str(tiny_causal_path), "--body-timeout", "1", "--limit-concurrency", "2",
                              "--timeout-keep-alive", "2"])
    try:
        sent, head, body = _trickle(port)
        assert head.startswith(b"HTTP/1.1 408") and sent < 60, head
        assert json.loads(body)["error"]["code"] == "body_timeout"
        # --limit-concurrency 2 counts requests: idle connections do not take a place (issue 21)
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)):
            time.sleep(0.2)
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            assert r.status_code == 200
    finally:
        stop_serve(proc)


# -- item 9: exposure --------------------------------------------------------------------------------------
def test_health_shows_details_only_with_a_valid_key(server, aligner):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    wrong = httpx.get(server.url + "/health", headers={"Authorization": "Bearer sk-bad"})
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    full = httpx.get(server.url + "/health", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert full["status"] == "ok" and full["corrector"] == aligner.corrector.name
    assert full["upstream"] == MODEL and "batching" in full  # the upstream's address is not shown


def test_answers_do_not_name_the_upstream_url(server, fake):
    r = post(server, {"model": MODEL, "messages": user("Hello?")})
    assert r.status_code == 200 and r.json()["aligner"]["upstream"] == MODEL
    assert f"127.0.0.1:{fake.port}" not in r.text


def test_502_bodies_do_not_name_the_upstream_url_but_the_log_does(server, fake, caplog):
    fake.fail_next(503, times=2, message="overloaded")
    with caplog.at_level(logging.WARNING, logger="aligner.serve"):
        r = post(server, {"model": MODEL, "messages": user("Hello?")})
    err = assert_openai_error(r, 502, code="upstream_error")
    assert "overloaded" in err["message"] and "503" in err["message"]
    for leak in (fake.url, f"127.0.0.1:{fake.port}", "/v1/chat/completions"):
        assert leak not in r.text
    assert any(f"127.0.0.1:{fake.port}" in rec.getMessage() for rec in caplog.records
               if rec.name == "aligner.serve")


def test_502_for_an_unreachable_upstream_does_not_name_it(tiny_causal_path):
    port = free_port()
    al = Aligner(f"http://127.0.0.1:{port}/v1", corrector=str(tiny_causal_path), upstream_model=MODEL,
                 decoding=GREEDY)
    al.upstream.retry = RetryPolicy(max_retries=0, timeout=10)
    with ServerThread(create_app(al, ServeConfig(upstream_model=MODEL))) as srv:
        r = post(srv, {"model": MODEL, "messages": user()}, key=None)
    assert_openai_error(r, 502, code="upstream_error")
    assert f"127.0.0.1:{port}" not in r.text and "http://" not in r.text


def test_bypass_header_is_refused_unless_the_server_allows_it(server, aligner):
    q = "Tell me a joke."
    r = post(server, {"model": MODEL, "messages": user(q)}, headers={"X-Aligner-Bypass": "1"})
    err = assert_openai_error(r, 403, code="bypass_disabled")
    assert "--allow-bypass" in err["message"]
    assert post(server, {"model": MODEL, "messages": user(q)}, headers={"X-Aligner-Bypass": "0"}).status_code == 200
    with serving(aligner, allow_bypass=True) as srv:
        ok = post(srv, {"model": MODEL, "messages": user(q)}, headers={"X-Aligner-Bypass": "1"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == upstream_answer(q)
    assert ok.json()["aligner"]["bypassed"] is True


@pytest.mark.parametrize("log_prompts", [False, True])
def test_retry_warnings_keep_the_prompt_out_of_the_log(aligner, fake, caplog, log_prompts):
    secret = "my card number is 4111 1111 1111 1111"
    fake.fail_next(500, message=f"internal error while reading prompt: {secret}")
    with caplog.at_level(logging.DEBUG), serving(aligner, log_prompts=log_prompts) as srv:
        r = post(srv, {"model": MODEL, "messages": user(secret)}, key=None)
    assert r.status_code == 200 and fake.count(CHAT) == 2  # retried once, then answered
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    warnings = [rec.getMessage() for rec in caplog.records
                if rec.name == "aligner.upstream" and rec.levelno == logging.WARNING]
    assert warnings and "attempt 1" in warnings[0] and "500" in warnings[0]
    assert (secret in " ".join(warnings)) is log_prompts  # the upstream's error text only with --log-prompts
    if not log_prompts:
        assert secret not in logged


# -- item 10: bounded retry log ----------------------------------------------------------------------------
def test_retry_log_keeps_a_bounded_window(fake):
    from aligner.adapters.base import UpstreamStats

    n = UpstreamStats.RETRY_LOG_SIZE + 20
    up = OpenAICompatibleUpstream(fake.base_url, MODEL,
                                  retry=RetryPolicy(max_retries=n, initial_backoff=0, jitter=0, timeout=30))
    fake.fail_next(500, times=n)
    assert up.answer("Hi?") == upstream_answer("Hi?")
    assert up.stats.retries == n and len(up.stats.retry_log) == UpstreamStats.RETRY_LOG_SIZE
    assert up.stats.retry_log[-1].startswith(f"attempt {n}:")


# == issue 21 ==============================================================================================
# -- item 1: idle and slow-header connections are cut and never lock real requests out ----------------------
def _closed_by_server(socks: list[socket.socket], *, drip: socket.socket | None = None, bound: float = 60.0,
                      every: float = 0.2) -> dict[int, bytes]:
    """Wait (at most ``bound`` seconds, far beyond any timeout the tests set) for the server to close
    each socket; what each received before its close, by position. ``drip`` gets one header line
    every ``every`` seconds meanwhile, as a slow client sends them. Sockets still open at ``bound``
    are missing from the result."""
    import selectors

    sel = selectors.DefaultSelector()
    received: dict[int, bytes] = {i: b"" for i in range(len(socks))}
    closed: dict[int, bytes] = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + bound
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=every):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                received[i] += data
                continue
            closed[i] = received[i]
            sel.unregister(socks[i])
        if drip is not None and socks.index(drip) not in closed:
            try:
                drip.send(b"X-Slow: 1\r\n")
            except OSError:
                pass
    sel.close()
    return closed


def _json_body(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return json.loads(body)


def start_serve(args: list[str], *, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """A real ``aligner serve`` subprocess on a free port, once its /health answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aligner", "serve", "--port", str(port), "--no-access-log", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("aligner serve did not start")


def test_hundreds_of_idle_sockets_neither_lock_out_a_request_nor_stay_open(tiny_causal_path):
    """Before: 520 idle sockets made every request a plain-text 503 until they left, and they
    (and a client sending a header line every few seconds) could stay open indefinitely."""
    import openai

    proc, port = start_serve(["--corrector", str(tiny_causal_path), "--max-new-tokens", "8",
                              "--header-timeout", "1", "--max-connections", "300"])
    crowd: list[socket.socket] = []
    try:
        crowd = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(520)]
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        oc = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "How do I boil an egg?"},
                    {"role": "assistant", "content": "Boil it for eight minutes."}]
        resp = oc.chat.completions.create(model="aligner", messages=messages)
        assert isinstance(resp.choices[0].message.content, str)
        assert resp.model_extra["aligner"]["original"] == "Boil it for eight minutes."
        closed = _closed_by_server([*crowd, slow], drip=slow)
        assert len(closed) == 521, f"{521 - len(closed)} connections still open"
        assert all(closed[i] == b"" for i in range(520))  # idle ones are closed without a word
        error = _json_body(closed[520])["error"]  # the slow one had begun a head: a 408 in OpenAI's shape
        assert closed[520].startswith(b"HTTP/1.1 408") and error["code"] == "header_timeout"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
    finally:
        for s in crowd:
            s.close()
        stop_serve(proc)


def test_a_connection_that_trickles_its_next_head_after_a_response_is_cut(aligner):
    with serving(aligner, header_timeout=1.0) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /health HTTP/1.1\r\n")  # keep-alive, then a head one line at a time
        closed = _closed_by_server([s], drip=s)
        assert 0 in closed and _json_body(closed[0])["error"]["code"] == "header_timeout"


def test_the_request_limit_counts_requests_not_sockets_and_answers_json(aligner, fake):
    with serving(aligner, limit_concurrency=1) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=30):
        assert httpx.get(srv.url + "/health", timeout=30).status_code == 200  # an idle socket is no request
        fake.fail_next("hang")
        held = threading.Thread(target=post, args=(srv, {"model": MODEL, "messages": user("hold on")}), kwargs={"key": None})
        held.start()
        while fake.count(CHAT) == 0:  # the held request has reached the upstream: it is in flight
            time.sleep(0.02)
        busy = httpx.get(srv.url + "/health", timeout=30)
        fake.release()
        held.join(60)
    err = assert_openai_error(busy, 503, code="server_overloaded")
    assert "--limit-concurrency" in err["message"] and busy.headers["retry-after"] == "1"


def test_a_malformed_request_gets_a_json_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400") and _json_body(raw)["error"]["code"] == "invalid_http_request"


# -- item 2: cross-site requests ----------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_a_chat_body_not_sent_as_json_gets_415(server, fake, content_type):
    """What a web page may send to any address without a preflight (and no type at all) is refused."""
    body = json.dumps({"model": MODEL, "messages": user("spend their quota")}).encode()
    headers = {"Authorization": f"Bearer {KEY}"}
    if content_type:
        headers["Content-Type"] = content_type
    r = httpx.post(server.base_url + "/chat/completions", content=body, headers=headers, timeout=60)
    err = assert_openai_error(r, 415, code="unsupported_media_type")
    assert "Content-Type" in err["message"] and "application/json" in err["message"]
    assert fake.count(CHAT) == 0
    ok = httpx.post(server.base_url + "/chat/completions", content=body, timeout=60,
                    headers={**headers, "Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_web_pages_are_refused_unless_their_origin_is_listed(server, aligner, fake):
    evil = {"Origin": "https://evil.example"}
    r = post(server, {"model": MODEL, "messages": user()}, headers=evil)
    err = assert_openai_error(r, 403, code="origin_not_allowed")
    assert "--cors-origin" in err["message"] and "access-control-allow-origin" not in r.headers
    preflight = {**evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    r = httpx.options(server.base_url + "/chat/completions", headers=preflight, timeout=30)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    assert fake.count(CHAT) == 0

    app_origin = "https://app.example"
    with serving(aligner, cors_origin=[app_origin]) as srv:
        pre = httpx.options(srv.base_url + "/chat/completions", timeout=30,
                            headers={**preflight, "Origin": app_origin})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == app_origin
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        ok = post(srv, {"model": MODEL, "messages": user()}, key=None, headers={"Origin": app_origin})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == app_origin
        assert "Retry-After" in ok.headers["access-control-expose-headers"]
        assert_openai_error(post(srv, {"model": MODEL, "messages": user()}, key=None, headers=evil), 403)
        assert post(srv, {"model": MODEL, "messages": user()}, key=None).status_code == 200  # no Origin: not a browser


def test_cors_origin_must_be_an_origin():
    from aligner.contracts.errors import ConfigError

    for bad in ("app.example", "https://app.example/", "https://app.example/path/"):
        with pytest.raises(ConfigError, match="cors_origin"):
            ServeConfig(cors_origin=[bad])
    assert ServeConfig(cors_origin="https://app.example").cors_origin == ["https://app.example"]


# -- item 4: an answer without content is passed on, never corrected into invented text ----------------------
@pytest.mark.parametrize("scripted", [{"content": None, "refusal": "I can't help with that."},
                                      {"content": None, "finish_reason": "content_filter"},
                                      {"content": ""}, {"content": "  \n"}])
def test_an_upstream_answer_without_text_is_passed_through_plain_and_streamed(server, fake, scripted):
    fake.responder = lambda req: scripted
    oc = client(server)
    resp = oc.chat.completions.create(model=MODEL, messages=user("Something it will not answer"))
    message, meta = resp.choices[0].message, resp.model_extra["aligner"]
    assert message.content == scripted["content"]  # null stays null, blank stays blank: nothing invented
    assert message.refusal == scripted.get("refusal")
    assert resp.choices[0].finish_reason == scripted.get("finish_reason", "stop")
    assert meta["skipped"] == "empty" and meta["changed"] is False and meta["original"] == (scripted["content"] or "")
    text, finish, refusal, last = "", None, "", None
    for chunk in oc.chat.completions.create(model=MODEL, messages=user("Something it will not answer"), stream=True):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            refusal += ch.delta.refusal or ""
            finish = ch.finish_reason or finish
        last = (chunk.model_extra or {}).get("aligner") or last
    assert text == (scripted["content"] or "") and refusal == (scripted.get("refusal") or "")
    assert finish == scripted.get("finish_reason", "stop") and last["skipped"] == "empty"


# -- item 5: validation gaps ---------------------------------------------------------------------------------


def test_a_long_model_name_is_not_echoed_back_whole(server):
    r = post(server, {"model": "m" * 10_000, "messages": user()})
    err = assert_openai_error(r, 404, param="model", code="model_not_found")
    assert "mmmmmmmmmm" in err["message"] and len(r.content) < 500


def test_a_gzip_body_is_decoded_within_the_size_limit(aligner, fake):
    import gzip
    import zlib

    body = json.dumps({"model": MODEL, "messages": user("Compressed question?")}).encode()
    with serving(aligner, max_body_bytes=100_000) as srv:
        def send(data: bytes, encoding: str) -> httpx.Response:
            return httpx.post(srv.base_url + "/chat/completions", content=data, timeout=60,
                              headers={"Content-Type": "application/json", "Content-Encoding": encoding})

        for data, encoding in ((gzip.compress(body), "gzip"), (zlib.compress(body), "deflate"),
                               (gzip.compress(body[:40]) + gzip.compress(body[40:]), "gzip")):
            r = send(data, encoding)
            assert r.status_code == 200, r.text
            assert r.json()["aligner"]["original"] == upstream_answer("Compressed question?")
        fake.clear()
        # 10 MB of spaces inside valid JSON, 10 kB on the wire: refused by its decoded size
        bomb = gzip.compress(body[:-1] + b" " * 10_000_000 + b"}")
        assert len(bomb) < 100_000
        err = assert_openai_error(send(bomb, "gzip"), 413, code="request_too_large")
        assert "gzip" in err["message"]
        assert_openai_error(send(body, "br"), 415, code="unsupported_media_type")
        assert_openai_error(send(b"\x1f\x8b not gzip at all", "gzip"), 400, code="invalid_body")
        assert_openai_error(send(gzip.compress(body)[:-12], "gzip"), 400, code="invalid_body")  # cut short
        assert fake.count(CHAT) == 0


# -- item 6: no redirect built from the client's Host; HEAD /health ----------------------------------------
def test_trailing_slashes_are_served_without_a_redirect_and_head_health_answers(server):
    r = httpx.post(server.base_url + "/chat/completions/", json={"model": MODEL, "messages": user()}, timeout=60,
                   headers={"Authorization": f"Bearer {KEY}", "Host": "attacker.example"})
    assert r.status_code == 200 and "location" not in r.headers and r.json()["choices"][0]["message"]["content"]
    models = httpx.get(server.base_url + "/models/", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert models.status_code == 200 and models.json()["data"]
    other = httpx.get(server.url + "/v1/nothing/", headers={"Host": "attacker.example"}, timeout=30)
    assert_openai_error(other, 404, code="not_found")
    head = httpx.head(server.url + "/health", timeout=30)
    assert head.status_code == 200 and head.content == b""


# -- item 1: every error the server itself raises is the OpenAI JSON error -----------------------------------
def test_a_method_the_route_does_not_answer_gets_a_json_405_with_allow(server):
    """A 405 from the router is the OpenAI error body, not Starlette's plain text, and keeps the
    ``Allow`` header HTTP requires on it."""
    for method, path in (("GET", "/v1/chat/completions"), ("DELETE", "/health"), ("PUT", "/v1/models")):
        r = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        err = assert_openai_error(r, 405, code="method_not_allowed")
        assert method in err["message"] and path in err["message"]
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert method not in allowed and allowed & {"GET", "POST"}


def test_aligner_serve_raises_its_open_files_limit_to_fit_the_connection_cap():
    code = ("import resource; from aligner.serve.connections import raise_open_files_limit as r; "
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); "
            "print(r(300), resource.getrlimit(resource.RLIMIT_NOFILE)[0]); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); print(r(300) is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "300", "True"], out.stderr
