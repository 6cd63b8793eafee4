"""A client's chat request: read, checked field by field, and the OpenAI-style error it may get.

Everything a body can hold is checked here before anything runs. Python's ``json`` accepts what no
upstream will (``NaN``, ``Infinity``, a lone UTF-16 surrogate ``"\\ud800"``) and fails in ways that
are not ``JSONDecodeError`` (a 5,000-digit integer is a ``ValueError``, deep nesting a
``RecursionError``); without these checks such bodies surfaced as a 500 from deep inside or a 502
when the upstream client could not encode them. Each known field's type and range is checked the
way OpenAI checks it, and every error is a 400 that names the field (``param``) and says what is
allowed. The body must come as ``application/json`` (a web page can send ``text/plain`` or a form
to any address without asking; it cannot send JSON cross-site unless the server allows its origin),
optionally gzip- or deflate-encoded, with the size limit applied to the decoded bytes.

Fields the proxy does not itself read are passed to upstreams that speak the OpenAI protocol as
they came (``tools``, ``response_format``, ``seed``, a vLLM ``top_k``...), so nothing a client
sends is dropped silently; an upstream that takes no request parameters refuses the ones that
change what kind of answer comes back (tools, JSON mode) instead of ignoring them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from ..contracts.decoding import DecodingConfig

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
          415: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 502: "upstream_error", 503: "server_error",
          504: "timeout_error"}

#: deepest nesting a body may have (an OpenAI tool's JSON schema needs far fewer levels).
MAX_DEPTH = 64
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: fields the proxy reads itself and never sends upstream.
OWN_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "n", "logprobs", "top_logprobs", "aligner"})
#: ``response_format`` types that ask for JSON: the answer is data, not prose to rewrite.
JSON_FORMATS = ("json_object", "json_schema")
#: content part types of OpenAI's chat messages; the text the corrector reads is in ``text`` parts.
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
#: ``Content-Encoding`` values a body may come in, and the zlib window bits that decode them.
ENCODINGS = {"identity": None, "gzip": 31, "x-gzip": 31, "deflate": 15}


@dataclass(frozen=True)
class ChatRequest:
    """A chat request as validation leaves it: every field the handlers read, checked and typed.

    Built once (by the server's ``_validate``) before anything runs; nothing changes it after.
    """

    #: the whole message list, sent to the upstream as it came.
    messages: list[dict[str, Any]]
    #: the last user message's text: what the Aligner corrects the answer for.
    question: str
    #: the served model name the client asked for (the first served one when it named none).
    model: str
    stream: bool
    #: the corrector's decoding for this request (its ``max_tokens`` lowers the ceiling).
    decoding: "DecodingConfig"
    #: ``stream_options.include_usage``: end a stream with a usage event.
    include_usage: bool
    #: ``response_format`` asked for JSON: the answer is data, passed on uncorrected.
    json_mode: bool
    #: the request's own fields for an upstream that takes OpenAI parameters (else empty).
    params: dict[str, Any]
    #: ``aligner.contracts.objectives``: this request's objectives (None: the server's own, if any).
    objectives: tuple[str, ...] | None = None


class APIError(Exception):
    """An error returned to the client as OpenAI-style JSON with ``status``."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type or _TYPES.get(status, "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(param: str, message: str, code: str = "invalid_value") -> APIError:
    """A 400 for one field; the message starts with the field's name."""
    return APIError(400, f"{param}: {message}", param=param, code=code)


def _show(value: Any) -> str:
    """A value as the client wrote it (JSON: ``true``, ``null``), cut to 40 characters: an error
    message never echoes a whole 10 KB field back."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- the body as JSON --------------------------------------------------------------------------------
class _Digits:
    """Stands in for an integer too long for Python to convert (over 4,300 digits), so the check
    that follows can name the field that holds it instead of failing the whole body."""

    def __init__(self, count: int):
        self.count = count


def _parse_int(text: str) -> "int | _Digits":
    try:
        return int(text)
    except ValueError:
        return _Digits(len(text.lstrip("-")))


def parse_body(raw: bytes) -> Any:
    """The body's JSON, refused with a 400 for anything an upstream could not be sent."""
    try:
        body = json.loads(raw, parse_int=_parse_int)
    except RecursionError as exc:
        raise APIError(400, f"body is not valid JSON here: nested more than {MAX_DEPTH} levels deep.",
                       code="invalid_json") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise APIError(400, f"body is not valid JSON ({exc}).", code="invalid_json") from exc
    check_json(body)
    return body


def check_json(value: Any) -> None:
    """Refuse non-finite numbers, lone surrogates and deep nesting anywhere, naming where."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise APIError(400, f"body is nested more than {MAX_DEPTH} levels deep (at {path}).",
                           code="invalid_json")
        if isinstance(item, _Digits):
            raise invalid(path or "body", f"a number of {item.count} digits; no field takes a number that long.")
        if isinstance(item, float):
            if not math.isfinite(item):
                raise invalid(path or "body", f"{item!r} is not a number JSON allows (no NaN or Infinity).")
        elif isinstance(item, str):
            _check_text(item, path or "body")
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_text(key, path or "body")
                stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))


def _check_text(text: str, path: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(path, f"holds a lone UTF-16 surrogate ({text[exc.start]!r}), which is not valid "
                            "Unicode text; send the character's full surrogate pair.") from exc


# -- fields ------------------------------------------------------------------------------------------
def _number(body: dict, name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise invalid(name, f"must be a number from {lo:g} to {hi:g}, got {_show(value)}.")


def _integer(body: dict, name: str, lo: int, hi: int, what: str = "an integer") -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid(name, f"must be {what} from {lo} to {hi}, got {_show(value)}.")


def _kind(body: dict, name: str, kind: type, what: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise invalid(name, f"must be {what}, got {_show(value)}.")


def _name(obj: Any, path: str) -> None:
    if not isinstance(obj, dict):
        raise invalid(path, f"must be an object with a 'name', got {_show(obj)}.")
    if not isinstance(obj.get("name"), str) or not obj["name"].strip():
        raise invalid(f"{path}.name", f"must be a non-empty string, got {_show(obj.get('name'))}.")


def _check_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > 128:
            raise invalid("tools", f"must be an array of at most 128 tools, got {_show(tools)}.")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise invalid(f"tools[{i}]", "must be an object with a 'type' ('function').")
            if tool["type"] == "function":
                _name(tool.get("function"), f"tools[{i}].function")
                params = tool["function"].get("parameters")
                if params is not None and not isinstance(params, dict):
                    raise invalid(f"tools[{i}].function.parameters", "must be a JSON schema object.")
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise invalid("tool_choice", f"must be 'none', 'auto', 'required' or an object, got {_show(choice)}.")
        elif not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
            raise invalid("tool_choice", f"must be 'none', 'auto', 'required' or an object, got {_show(choice)}.")
        elif choice["type"] == "function":
            _name(choice.get("function"), "tool_choice.function")
    _kind(body, "parallel_tool_calls", bool, "true or false")
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise invalid("functions", f"must be an array of functions, got {_show(functions)}.")
        for i, fn in enumerate(functions):
            _name(fn, f"functions[{i}]")
    call = body.get("function_call")
    if call is not None and call not in ("none", "auto"):
        _name(call, "function_call")


def _check_response_format(body: dict) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid("response_format", f"must be an object like {{\"type\": \"json_object\"}}, got {_show(fmt)}.")
    if fmt.get("type") not in ("text", *JSON_FORMATS):
        raise invalid("response_format.type", f"must be 'text', 'json_object' or 'json_schema', "
                                               f"got {_show(fmt.get('type'))}.")
    if fmt["type"] == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict):
            raise invalid("response_format.json_schema", "is required with type 'json_schema': an object "
                                                         "with a 'name' and a 'schema'.")
        _name(schema, "response_format.json_schema")


def check_fields(body: dict, max_tokens_limit: int) -> None:
    """Type and range of every known top-level field but ``messages`` and ``model``."""
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for name in ("max_tokens", "max_completion_tokens"):
        _integer(body, name, 1, max_tokens_limit, "a positive integer")
    _integer(body, "seed", -2 ** 63, 2 ** 63 - 1)
    _integer(body, "top_logprobs", 0, 20)
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise invalid("n", f"only n=1 is supported here (one answer, one correction), got {_show(n)}.")
    if body.get("logprobs") not in (None, False):
        raise invalid("logprobs", "is not available here: the answer returned is the corrector's rewrite, "
                                  "so the upstream's token log-probabilities would not describe it.")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", f"must be true or false, got {_show(stream)}.")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("stream_options", f"must be an object like {{\"include_usage\": true}}, got {_show(options)}.")
        if options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
            raise invalid("stream_options.include_usage", "must be true or false.")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and 1 <= len(stop) <= 4 and all(isinstance(s, str) for s in stop)):
        raise invalid("stop", f"must be a string or an array of 1 to 4 strings, got {_show(stop)}.")
    for name in ("user", "service_tier", "reasoning_effort", "verbosity", "prompt_cache_key", "safety_identifier"):
        _kind(body, name, str, "a string")
    _kind(body, "store", bool, "true or false")
    bias = body.get("logit_bias")
    if bias is not None and (not isinstance(bias, dict) or not all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and -100 <= v <= 100 for v in bias.values())):
        raise invalid("logit_bias", f"must map token ids to numbers from -100 to 100, got {_show(bias)}.")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())):
        raise invalid("metadata", f"must be an object of string values, got {_show(metadata)}.")
    _check_tools(body)
    _check_response_format(body)


def check_messages(messages: Any) -> int:
    """Check each message's shape; the number of text characters they hold."""
    if messages is None:
        raise APIError(400, "'messages' is required.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", f"must be a non-empty array of messages, got {_show(messages)}.")
    chars = 0
    for where, m in _objects(messages, "messages", "an object with 'role' and 'content'"):
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role", f"must be one of {', '.join(ROLES)}; got {_show(role)}.")
        calls = m.get("tool_calls")
        if "content" not in m and not (role == "assistant" and (calls or m.get("function_call"))):
            raise invalid(f"{where}.content", "is required.")
        chars += _content_chars(m.get("content"), role, f"{where}.content")
        if m.get("name") is not None and not isinstance(m["name"], str):
            raise invalid(f"{where}.name", f"must be a string, got {_show(m['name'])}.")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                raise invalid(f"{where}.tool_calls", "must be an array, on an assistant message.")
            for j, call in enumerate(calls):
                if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                    raise invalid(f"{where}.tool_calls[{j}]", "must be an object with an 'id' and a 'function'.")
                _name(call.get("function"), f"{where}.tool_calls[{j}].function")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise invalid(f"{where}.tool_call_id", "is required on a tool message: the id of the call it answers.")
    return chars


def _objects(items: list[Any], where: str, what: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each item of a JSON array with its path (``where[i]``), refusing the first that is not an
    object with a 400 that names that path."""
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise invalid(at, f"must be {what}, got {_show(item)}.")
        yield at, item


def _content_chars(content: Any, role: str, where: str) -> int:
    if isinstance(content, str):
        return len(content)
    if content is None:
        if role == "assistant":
            return 0
        raise invalid(where, "must be text (null only on an assistant message), got null.")
    if not isinstance(content, list):
        raise invalid(where, f"must be a string or an array of content parts, got {_show(content)}.")
    chars = 0
    for at, part in _objects(content, where, "a content part object"):
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in PART_TYPES:
            raise invalid(f"{at}.type", f"must be one of {', '.join(PART_TYPES)}; got {_show(kind)}.")
        if kind in ("text", "refusal"):
            if not isinstance(part.get(kind), str):
                raise invalid(f"{at}.{kind}", f"must be a string, got {_show(part.get(kind))}.")
            chars += len(part[kind])
    return chars


def check_aligner_field(value: Any, corrector: Any) -> tuple[str, ...] | None:
    """The request's own ``aligner`` object: ``{"objectives": [...]}`` (names, or ``"name:
    description"``); its objectives, each known and taken by the corrector's template, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("aligner", f'must be an object like {{"objectives": ["harmless", "helpful"]}}, got {_show(value)}.')
    unknown = sorted(set(value) - {"objectives"})
    if unknown:
        raise invalid(f"aligner.{unknown[0]}", "is not a setting a request can choose; only 'objectives' is.")
    objectives = value.get("objectives")
    if objectives is None:
        return None
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise invalid("aligner.contracts.objectives", f"must be an array of strings, got {_show(objectives)}.")
    from ..contracts.errors import ConfigError
    from ..contracts.objectives import check_takes, resolve

    try:
        check_takes(corrector, resolve(objectives, field="aligner.contracts.objectives"), field="aligner.contracts.objectives")
    except ConfigError as exc:
        raise invalid("aligner.contracts.objectives", str(exc).split(": ", 1)[-1]) from exc
    return tuple(objectives)


def check_model(model: Any, served: list[str]) -> str:
    """The served model the request names (the first served one when it names none): a 400 for a
    name that is not a string, a 404 for one not served. Only a prefix of a long name is echoed."""
    if model is None:
        return served[0]
    if not isinstance(model, str):
        raise invalid("model", f"must be a string naming a served model ({', '.join(served)}), got {_show(model)}.")
    if model not in served:
        raise APIError(404, f"model {_show(model)} does not exist here; this server serves {served} "
                            "(see GET /v1/models).", param="model", code="model_not_found")
    return model


def check_content_type(value: str | None) -> None:
    """Refuse a body that is not declared JSON with a 415. A web page may send ``text/plain``, a
    form or no type at all to any address without a CORS preflight; a JSON body it may not."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        got = _show(value) if value else "no Content-Type"
        raise APIError(415, f"Content-Type header: a chat request must be sent as application/json, got {got}.",
                       code="unsupported_media_type")


class BodyDecoder:
    """Decodes a ``Content-Encoding: gzip`` or ``deflate`` body as it arrives, never producing more
    than ``limit`` bytes: a few kilobytes that inflate to gigabytes (a zip bomb) are refused with
    the 413 an oversized plain body gets, after at most ``limit`` bytes of work."""

    def __init__(self, encoding: str | None, limit: int):
        name = (encoding or "identity").strip().lower()
        if name not in ENCODINGS:
            raise APIError(415, f"Content-Encoding header: {_show(encoding)} is not supported; send the body "
                                "uncompressed, gzip or deflate.", code="unsupported_media_type")
        self.encoding, self.wbits, self.room = name, ENCODINGS[name], limit
        self._decoder = self._new() if self.wbits else None

    def _new(self) -> Any:
        import zlib

        return zlib.decompressobj(self.wbits)

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece of the body; raises ``OverflowError`` past the limit."""
        import zlib

        if self._decoder is None:
            out = data
        else:
            try:
                out = b""
                while data:
                    out += self._decoder.decompress(data, self.room - len(out) + 1)  # never 0: unbounded
                    data = b""
                    if len(out) > self.room:
                        break
                    if self._decoder.eof and self._decoder.unused_data:  # a gzip file of several members
                        data, self._decoder = self._decoder.unused_data, self._new()
            except zlib.error as exc:
                raise self._corrupt() from exc
        self.room -= len(out)
        if self.room < 0:
            raise OverflowError
        return out

    def finish(self) -> None:
        """Refuse a compressed body cut short."""
        if self._decoder is not None and not self._decoder.eof:
            raise self._corrupt()

    def _corrupt(self) -> APIError:
        return APIError(400, f"body: Content-Encoding is {self.encoding}, but the body is not complete "
                             f"{self.encoding} data.", code="invalid_body")


def forwarded(body: dict) -> dict[str, Any]:
    """The fields an OpenAI-protocol upstream gets: all but the proxy's own, nulls left out."""
    return {k: v for k, v in body.items() if k not in OWN_FIELDS and v is not None}


def form_fields(body: dict) -> Iterable[str]:
    """Fields asking for a kind of answer other than text (tools, JSON), which an upstream that
    takes no request parameters cannot honour."""
    for name in ("tools", "functions"):
        if body.get(name):
            yield name
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            yield name
    if (body.get("response_format") or {}).get("type") in JSON_FORMATS:
        yield "response_format"


def json_mode(body: dict) -> bool:
    """True when the client asked for JSON (``response_format`` json_object / json_schema)."""
    return (body.get("response_format") or {}).get("type") in JSON_FORMATS
