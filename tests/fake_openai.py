"""A real OpenAI-protocol HTTP server on 127.0.0.1 for tests: the fake sits at the network edge.

Every client under test (the ``openai`` SDK, ``litellm``, plain ``httpx``, the proxy server) talks
real HTTP to it, so what is tested is the bytes on the wire, not a mocked method. It speaks
``POST /v1/chat/completions`` and ``POST /v1/completions`` (JSON, or SSE with ``stream: true`` in
the exact OpenAI chunk shape, ending ``data: [DONE]``), ``POST /v1/moderations`` (OpenAI's
moderation shape: one result per ``input`` string, scored by ``moderator``) and ``GET /v1/models``.

Usage::

    with FakeOpenAI(responder=lambda req: "hello") as srv:
        srv.base_url                        # 'http://127.0.0.1:PORT/v1'
        srv.fail_next(429, times=2, retry_after=0.01)
        srv.fail_next("slow", seconds=2)    # answer after 2 s
        srv.fail_next("hang")               # never answer (until the server stops, or srv.release())
        srv.rejecter = lambda req: 400 if "bad" in request_text(req) else None  # a standing rule
        ...
        srv.count("/v1/chat/completions")   # requests received there (faulted ones included)
        srv.last_body()                     # JSON body of the last request
        srv.requests                        # every request: method, path, headers, body

A responder may return a dict instead of text to script a whole chat message: ``content`` (str or
None), ``refusal`` (OpenAI's refusal text), ``tool_calls`` (OpenAI's list), ``finish_reason``
(default ``tool_calls`` when there are calls, else ``stop``) and ``usage`` (default: whitespace word
counts). ``content: None`` is streamed as OpenAI streams it: no content deltas at all::

    srv.responder = lambda req: {"content": None, "tool_calls": [call], "usage": {...}}

A moderator maps one input text to its category scores (``{"violence": 0.9, ...}``); a category is
marked, and the result flagged, at 0.5 or above (the default moderator scores a few keywords)::

    srv.moderator = lambda text: {"violence": 0.99 if "bomb" in text else 0.01}
    srv.fail_next(429, path="/v1/moderations", retry_after=0.01)

Faults are consumed one per request, in order, by generation requests (the two POST endpoints)
unless ``path=`` names another endpoint.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MODELS = "/v1/models"
MODERATIONS = "/v1/moderations"
GENERATION_PATHS = (CHAT, COMPLETIONS)
#: the default moderator's keywords, per category (OpenAI's category names)
MODERATION_WORDS = {"violence": ("bomb", "knife", "hit them", "kill"), "illicit": ("steal", "hack", "meth"),
                    "harassment": ("idiot", "loser")}


def default_moderator(text: str) -> dict[str, float]:
    """Category scores of one input: 0.95 where a category's keyword occurs, else 0.02."""
    low = text.lower()
    return {cat: 0.95 if any(w in low for w in words) else 0.02 for cat, words in MODERATION_WORDS.items()}

Responder = Callable[[dict], "str | dict"]


def request_text(req: dict) -> str:
    """The text a request asks about: the last user message of a chat, or the prompt."""
    if "messages" in req:
        for m in reversed(req.get("messages") or []):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, list):
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content or "")
        return ""
    prompt = req.get("prompt", "")
    return prompt[0] if isinstance(prompt, list) and prompt else str(prompt)


def default_responder(req: dict) -> str:
    """Deterministic and distinct per question, so order and parity tests can tell answers apart.

    For a completions prompt (a rendered Aligner template) it drops the conversation header, which
    the corrector would read as a stop marker.
    """
    text = request_text(req).replace("BEGINNING OF CONVERSATION:", "").replace("\n", " ").strip()
    if "messages" in req:
        return f"Answer to '{text}': it depends, but here is a short and careful reply."
    return f"Corrected: {text[-80:]} (edited)."


def upstream_answer(question: str) -> str:
    """What the fake upstream answers a one-message chat (it echoes the question, so answers are
    request-specific)."""
    return default_responder({"messages": [{"role": "user", "content": question}]})


def split_pieces(text: str, max_pieces: int = 8) -> list[str]:
    """Split text into several chunks on word boundaries (concatenation is the text)."""
    words = re.findall(r"\S+\s*|\s+", text) or [text]
    per = max(1, -(-len(words) // max_pieces))
    return ["".join(words[i:i + per]) for i in range(0, len(words), per)]


@dataclass
class Fault:
    """One scripted misbehaviour: an HTTP status, ``slow`` (sleep then answer) or ``hang``."""

    kind: "int | str"
    retry_after: float | None = None
    seconds: float = 1.0
    message: str | None = None
    path: str | None = None

    def matches(self, path: str) -> bool:
        return path == self.path if self.path else path in GENERATION_PATHS


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    fault: "int | str | None" = None


@dataclass
class FakeOpenAI:
    """The server; a context manager. ``responder(request_json) -> str`` makes every answer."""

    responder: Responder | None = None
    models: tuple[str, ...] = ("fake-model",)
    api_key: str | None = None  # when set, requests without ``Bearer <api_key>`` get a 401
    #: a standing rule, unlike the one-shot ``fail_next``: ``rejecter(request_json)`` returns an HTTP
    #: status to answer that generation request with (e.g. 400 for one question), or None to answer
    rejecter: Callable[[dict], "int | None"] | None = None
    max_pieces: int = 8
    requests: list[RecordedRequest] = field(default_factory=list)
    #: exceptions raised while answering (a responder bug); the client got a 500 for each
    errors: list[BaseException] = field(default_factory=list)
    #: ``moderator(text) -> {category: score}`` for ``POST /v1/moderations`` (None: keyword scores)
    moderator: Callable[[str], dict] | None = None

    def __post_init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-openai")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging/slow handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- scripting ------------------------------------------------------------------------
    def fail_next(self, kind: "int | str", times: int = 1, *, retry_after: float | None = None,
                  seconds: float = 1.0, message: str | None = None, path: str | None = None) -> None:
        """Queue ``times`` faults: an HTTP status (429, 500, 503, 400, ...), ``"slow"`` (wait
        ``seconds`` then answer normally) or ``"hang"`` (never answer while the server runs)."""
        if not (isinstance(kind, int) or kind in ("slow", "hang")):
            raise ValueError(f"fault must be an HTTP status or 'slow'/'hang', got {kind!r}")
        with self._lock:
            for _ in range(times):
                self._faults.append(Fault(kind, retry_after, seconds, message, path))

    def release(self) -> None:
        """End every ``hang`` in progress now (its connection closes without an answer)."""
        self._release.set()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def clear(self) -> None:
        """Forget recorded requests and queued faults."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._release.clear()

    def count(self, path: str | None = None) -> int:
        """Requests received at ``path`` (a full path like ``/v1/completions``), or in all."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for r in self.requests:
                out[r.path] = out.get(r.path, 0) + 1
            return out

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if path is None or r.path == path]

    def last_body(self, path: str | None = None) -> Any:
        bodies = self.bodies(path)
        return bodies[-1] if bodies else None

    # -- used by the handler ---------------------------------------------------------------
    def _record(self, req: RecordedRequest) -> Fault | None:
        with self._lock:
            self.requests.append(req)
            for i, fault in enumerate(self._faults):
                if fault.matches(req.path):
                    del self._faults[i]
                    req.fault = fault.kind
                    return fault
        return None

    def _answer(self, body: dict) -> str:
        out = self._scripted(body)
        return out.get("content") or ""

    def _scripted(self, body: dict) -> dict:
        """The responder's answer as message fields (a plain text answer is ``{"content": text}``)."""
        out = (self.responder or default_responder)(body)
        return dict(out) if isinstance(out, dict) else {"content": out}


_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 429: "rate_limit_error"}


class _Server(ThreadingHTTPServer):
    """The stock accept backlog (5) resets connections under the 64-way load tests."""

    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": _STATUS_TYPES.get(status, "server_error"),
                                           "param": None, "code": str(status)}}, headers)

    def _sse(self, events: list[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for ev in events:
            self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_body() if method == "POST" else None
        req = RecordedRequest(method, path, {k.lower(): v for k, v in self.headers.items()}, body)
        fault = self.fake._record(req)
        try:
            if fault is not None and self._apply(fault):
                return
            if self.fake.api_key and self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
                return self._error(401, "Incorrect API key provided.")
            if method == "GET" and path == MODELS:
                return self._send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.fake.models]})
            if method == "POST" and path in GENERATION_PATHS:
                if not isinstance(body, dict):
                    return self._error(400, "request body must be a JSON object.")
                if not body.get("model"):
                    return self._error(400, "you must provide a model parameter.")
                status = self.fake.rejecter(body) if self.fake.rejecter else None
                if status:
                    return self._error(status, f"rejected by the rejecter rule: {request_text(body)[:80]}")
                return self._chat(body) if path == CHAT else self._completion(body)
            if method == "POST" and path == MODERATIONS:
                return self._moderation(body)
            self._error(404, f"no route {method} {path}")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            self.close_connection = True
        except Exception as exc:  # a responder bug: answer 500 and keep it for the test to see
            self.fake.errors.append(exc)
            try:
                self._error(500, f"fake server error: {type(exc).__name__}: {exc}")
            except OSError:
                self.close_connection = True

    def _apply(self, fault: Fault) -> bool:
        """Act out a fault; True when the request is finished (no normal answer)."""
        if fault.kind == "hang":
            while not self.fake._stop.wait(0.05) and not self.fake._release.is_set():
                pass
            self.close_connection = True
            return True
        if fault.kind == "slow":
            return self.fake._stop.wait(fault.seconds)  # answer normally unless the server stops
        status = int(fault.kind)
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        self._error(status, fault.message or f"scripted fault {status}", headers)
        return True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- OpenAI shapes ----------------------------------------------------------------------
    def _usage(self, prompt: str, text: str) -> dict:
        p, c = len(prompt.split()), len(text.split())
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _chat(self, body: dict) -> None:
        scripted = self.fake._scripted(body)
        content, tool_calls = scripted.get("content"), scripted.get("tool_calls")
        text = content or ""
        finish = scripted.get("finish_reason") or ("tool_calls" if tool_calls else "stop")
        model, created, cid = body["model"], int(time.time()), f"chatcmpl-fake{len(self.fake.requests)}"
        usage = scripted.get("usage") or self._usage(request_text(body), text)
        if not body.get("stream"):
            message = {"role": "assistant", "content": content, "refusal": scripted.get("refusal")}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage})

        def chunk(delta: dict, finish: str | None) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": "" if content is not None or tool_calls else None}, None)]
        if content is not None and (text or not tool_calls):
            events += [chunk({"content": p}, None) for p in split_pieces(text, self.fake.max_pieces)]
        if scripted.get("refusal"):
            events.append(chunk({"refusal": scripted["refusal"]}, None))
        for i, call in enumerate(tool_calls or []):  # OpenAI streams each call with its index
            events.append(chunk({"tool_calls": [{"index": i, **call}]}, None))
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": None, "choices": [], "usage": usage})
        self._sse(events)

    def _moderation(self, body: Any) -> None:
        """OpenAI's moderation reply: ``results`` in input order, each flagged at a score of 0.5."""
        texts = body.get("input") if isinstance(body, dict) else None
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._error(400, "input must be a string or a list of strings.")
        results = []
        for text in texts:
            scores = (self.fake.moderator or default_moderator)(text)
            marked = {k: v >= 0.5 for k, v in scores.items()}
            results.append({"flagged": any(marked.values()), "categories": marked, "category_scores": scores,
                            "category_applied_input_types": {k: ["text"] for k in scores}})
        self._send_json(200, {"id": f"modr-fake{len(self.fake.requests)}", "model": body.get("model") or "omni-moderation-latest",
                              "results": results})

    def _completion(self, body: dict) -> None:
        prompts = body.get("prompt")
        prompts = prompts if isinstance(prompts, list) else [prompts]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            return self._error(400, "prompt must be a string or a list of strings.")
        scripted = [self.fake._scripted({**body, "prompt": p}) for p in prompts]
        texts = [out.get("content") or "" for out in scripted]
        # a dict responder may script the finish reason too (``length``: cut at max_tokens)
        finishes = [out.get("finish_reason") or "stop" for out in scripted]
        model, created, cid = body["model"], int(time.time()), f"cmpl-fake{len(self.fake.requests)}"
        if not body.get("stream"):
            usage = self._usage(" ".join(prompts), " ".join(texts))
            return self._send_json(200, {
                "id": cid, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": i, "text": t, "logprobs": None, "finish_reason": f}
                            for i, (t, f) in enumerate(zip(texts, finishes))],
                "usage": usage})

        def chunk(i: int, text: str, finish: str | None) -> dict:
            return {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": None,
                    "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}]}

        events = []
        for i, (t, f) in enumerate(zip(texts, finishes)):
            events += [chunk(i, p, None) for p in split_pieces(t, self.fake.max_pieces)]
            events.append(chunk(i, "", f))
        self._sse(events)
