"""A client's chat request: checked field by field before anything runs, and typed (``ChatRequest``).

Each known field's type and range is checked the way OpenAI checks it, and every error is a 400
that names the field (``param``) and says what is allowed. (The body itself — its type, encoding,
size and JSON — is read and checked before, by :mod:`aligner.serve.body`.)

Fields the proxy does not itself read are passed to upstreams that speak the OpenAI protocol as
they came (``tools``, ``response_format``, ``seed``, a vLLM ``top_k``...), so nothing a client
sends is dropped silently; an upstream that takes no request parameters refuses the ones that
change what kind of answer comes back (tools, JSON mode) instead of ignoring them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..contracts.errors import ConfigError
from ..contracts.messages import question_of
from .errors import APIError, invalid, shown

if TYPE_CHECKING:
    from ..contracts.decoding import DecodingConfig
    from .state import ServerState

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: fields the proxy reads itself and never sends upstream.
OWN_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "n", "logprobs", "top_logprobs", "aligner"})
#: ``response_format`` types that ask for JSON: the answer is data, not prose to rewrite.
JSON_FORMATS = ("json_object", "json_schema")
#: content part types of OpenAI's chat messages; the text the corrector reads is in ``text`` parts.
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


@dataclass(frozen=True)
class ChatRequest:
    """A chat request as validation leaves it: every field the handlers read, checked and typed.

    Built once (by ``validate``) before anything runs; nothing changes it after.
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
    #: ``aligner.objectives``: this request's objectives (None: the server's own, if any).
    objectives: tuple[str, ...] | None = None


# -- fields ------------------------------------------------------------------------------------------
def _number(body: dict, name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise invalid(name, f"must be a number from {lo:g} to {hi:g}, got {shown(value)}.")


def _integer(body: dict, name: str, lo: int, hi: int, what: str = "an integer") -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid(name, f"must be {what} from {lo} to {hi}, got {shown(value)}.")


def _kind(body: dict, name: str, kind: type, what: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise invalid(name, f"must be {what}, got {shown(value)}.")


def _name(obj: Any, path: str) -> None:
    if not isinstance(obj, dict):
        raise invalid(path, f"must be an object with a 'name', got {shown(obj)}.")
    if not isinstance(obj.get("name"), str) or not obj["name"].strip():
        raise invalid(f"{path}.name", f"must be a non-empty string, got {shown(obj.get('name'))}.")


def _check_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or len(tools) > 128:
            raise invalid("tools", f"must be an array of at most 128 tools, got {shown(tools)}.")
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
                raise invalid("tool_choice", f"must be 'none', 'auto', 'required' or an object, got {shown(choice)}.")
        elif not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
            raise invalid("tool_choice", f"must be 'none', 'auto', 'required' or an object, got {shown(choice)}.")
        elif choice["type"] == "function":
            _name(choice.get("function"), "tool_choice.function")
    _kind(body, "parallel_tool_calls", bool, "true or false")
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise invalid("functions", f"must be an array of functions, got {shown(functions)}.")
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
        raise invalid("response_format", f"must be an object like {{\"type\": \"json_object\"}}, got {shown(fmt)}.")
    if fmt.get("type") not in ("text", *JSON_FORMATS):
        raise invalid("response_format.type", f"must be 'text', 'json_object' or 'json_schema', "
                                               f"got {shown(fmt.get('type'))}.")
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
        raise invalid("n", f"only n=1 is supported here (one answer, one correction), got {shown(n)}.")
    if body.get("logprobs") not in (None, False):
        raise invalid("logprobs", "is not available here: the answer returned is the corrector's rewrite, "
                                  "so the upstream's token log-probabilities would not describe it.")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", f"must be true or false, got {shown(stream)}.")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("stream_options", f"must be an object like {{\"include_usage\": true}}, got {shown(options)}.")
        if options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
            raise invalid("stream_options.include_usage", "must be true or false.")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and 1 <= len(stop) <= 4 and all(isinstance(s, str) for s in stop)):
        raise invalid("stop", f"must be a string or an array of 1 to 4 strings, got {shown(stop)}.")
    for name in ("user", "service_tier", "reasoning_effort", "verbosity", "prompt_cache_key", "safety_identifier"):
        _kind(body, name, str, "a string")
    _kind(body, "store", bool, "true or false")
    bias = body.get("logit_bias")
    if bias is not None and (not isinstance(bias, dict) or not all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and -100 <= v <= 100 for v in bias.values())):
        raise invalid("logit_bias", f"must map token ids to numbers from -100 to 100, got {shown(bias)}.")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())):
        raise invalid("metadata", f"must be an object of string values, got {shown(metadata)}.")
    _check_tools(body)
    _check_response_format(body)


def check_messages(messages: Any) -> int:
    """Check each message's shape; the number of text characters they hold."""
    if messages is None:
        raise APIError(400, "'messages' is required.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", f"must be a non-empty array of messages, got {shown(messages)}.")
    chars = 0
    for where, m in _objects(messages, "messages", "an object with 'role' and 'content'"):
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role", f"must be one of {', '.join(ROLES)}; got {shown(role)}.")
        calls = m.get("tool_calls")
        if "content" not in m and not (role == "assistant" and (calls or m.get("function_call"))):
            raise invalid(f"{where}.content", "is required.")
        chars += _content_chars(m.get("content"), role, f"{where}.content")
        if m.get("name") is not None and not isinstance(m["name"], str):
            raise invalid(f"{where}.name", f"must be a string, got {shown(m['name'])}.")
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
            raise invalid(at, f"must be {what}, got {shown(item)}.")
        yield at, item


def _content_chars(content: Any, role: str, where: str) -> int:
    if isinstance(content, str):
        return len(content)
    if content is None:
        if role == "assistant":
            return 0
        raise invalid(where, "must be text (null only on an assistant message), got null.")
    if not isinstance(content, list):
        raise invalid(where, f"must be a string or an array of content parts, got {shown(content)}.")
    chars = 0
    for at, part in _objects(content, where, "a content part object"):
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in PART_TYPES:
            raise invalid(f"{at}.type", f"must be one of {', '.join(PART_TYPES)}; got {shown(kind)}.")
        if kind in ("text", "refusal"):
            if not isinstance(part.get(kind), str):
                raise invalid(f"{at}.{kind}", f"must be a string, got {shown(part.get(kind))}.")
            chars += len(part[kind])
    return chars


def check_aligner_field(value: Any, corrector: Any) -> tuple[str, ...] | None:
    """The request's own ``aligner`` object: ``{"objectives": [...]}`` (names, or ``"name:
    description"``); its objectives, each known and taken by the corrector's template, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("aligner", f'must be an object like {{"objectives": ["harmless", "helpful"]}}, got {shown(value)}.')
    unknown = sorted(set(value) - {"objectives"})
    if unknown:
        raise invalid(f"aligner.{unknown[0]}", "is not a setting a request can choose; only 'objectives' is.")
    objectives = value.get("objectives")
    if objectives is None:
        return None
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise invalid("aligner.objectives", f"must be an array of strings, got {shown(objectives)}.")
    from ..contracts.objectives import check_takes, resolve

    try:
        check_takes(corrector, resolve(objectives, field="aligner.objectives"), field="aligner.objectives")
    except ConfigError as exc:
        raise invalid("aligner.objectives", str(exc).split(": ", 1)[-1]) from exc
    return tuple(objectives)


def check_model(model: Any, served: list[str]) -> str:
    """The served model the request names (the first served one when it names none): a 400 for a
    name that is not a string, a 404 for one not served. Only a prefix of a long name is echoed."""
    if model is None:
        return served[0]
    if not isinstance(model, str):
        raise invalid("model", f"must be a string naming a served model ({', '.join(served)}), got {shown(model)}.")
    if model not in served:
        raise APIError(404, f"model {shown(model)} does not exist here; this server serves {served} "
                            "(see GET /v1/models).", param="model", code="model_not_found")
    return model


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


def validate(body: Any, state: ServerState) -> ChatRequest:
    """Check the request the way OpenAI does, every field before anything runs, naming the
    offending field (the checks above); the checked request, typed."""
    cfg = state.config
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object.", code="invalid_request")
    messages = body.get("messages")
    chars = check_messages(messages)
    check_fields(body, cfg.max_tokens_limit)
    upstream = state.aligner.upstream
    takes_params = bool(getattr(upstream, "takes_openai_params", False))
    refused = next(iter(form_fields(body)), None) if upstream is not None and not takes_params else None
    if refused:
        raise APIError(400, f"{refused}: this server's upstream ({type(upstream).__name__}) takes no request "
                            f"parameters, so it cannot honour {refused!r}; send the request without it.",
                       param=refused, code="unsupported_parameter")
    if chars > cfg.max_prompt_chars:
        raise APIError(400, f"messages hold {chars} characters; this server accepts at most {cfg.max_prompt_chars}.",
                       param="messages", code="context_length_exceeded")
    try:
        question = question_of(messages)
    except ConfigError as exc:
        raise APIError(400, f"messages: the last user message must have non-empty text content ({exc}).",
                       param="messages", code="invalid_value") from exc
    model = check_model(body.get("model"), state.model_names)
    objectives = check_aligner_field(body.get("aligner"), state.aligner.corrector)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stream = bool(body.get("stream"))
    # the request's max_tokens lowers the ceiling but is not a choice of length for the
    # correction: the corrector's own answer-relative cap setting stays (see resolve_length)
    decoding = state.aligner.corrector.decoding.limited(cfg.max_new_tokens, max_tokens)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return ChatRequest(messages=messages, question=question, model=model, stream=stream, decoding=decoding,
                       include_usage=include_usage, json_mode=json_mode(body),
                       params=forwarded(body) if takes_params else {}, objectives=objectives)

