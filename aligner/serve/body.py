"""A request body read off the socket: declared JSON, decoded, within its size and time limits, and
parsed into JSON that an upstream can be sent.

The connection layer bounds request heads, not bodies, so the limits on a body are kept here: the
size (refused before reading when ``Content-Length`` says so, and while reading a chunked body,
counted on the *decoded* bytes of a gzip or deflate body) and the time it may take to arrive. The
body must come as ``application/json``: a web page can send ``text/plain`` or a form to any address
without asking; it cannot send JSON cross-site unless the server allows its origin.

Python's ``json`` accepts what no upstream will (``NaN``, ``Infinity``, a lone UTF-16 surrogate
``"\\ud800"``) and fails in ways that are not ``JSONDecodeError`` (a 5,000-digit integer is a
``ValueError``, deep nesting a ``RecursionError``); without these checks such bodies surfaced as a
500 from deep inside or a 502 when the upstream client could not encode them. Each is a 400 naming
where in the body it is. Both JSON routes (chat completions, feedback) read their body here.
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from fastapi import Request

from .errors import APIError, invalid, shown

#: deepest nesting a body may have (an OpenAI tool's JSON schema needs far fewer levels).
MAX_DEPTH = 64
#: ``Content-Encoding`` values a body may come in, and the zlib window bits that decode them.
ENCODINGS = {"identity": None, "gzip": 31, "x-gzip": 31, "deflate": 15}
#: bodies larger than this are parsed and checked in a worker thread, off the event loop.
_PARSE_INLINE_BYTES = 64_000


def check_content_type(value: str | None) -> None:
    """Refuse a body that is not declared JSON with a 415. A web page may send ``text/plain``, a
    form or no type at all to any address without a CORS preflight; a JSON body it may not."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        got = shown(value) if value else "no Content-Type"
        raise APIError(415, f"Content-Type header: a chat request must be sent as application/json, got {got}.",
                       code="unsupported_media_type")


class BodyDecoder:
    """Decodes a ``Content-Encoding: gzip`` or ``deflate`` body as it arrives, never producing more
    than ``limit`` bytes: a few kilobytes that inflate to gigabytes (a zip bomb) are refused with
    the 413 an oversized plain body gets, after at most ``limit`` bytes of work."""

    def __init__(self, encoding: str | None, limit: int):
        name = (encoding or "identity").strip().lower()
        if name not in ENCODINGS:
            raise APIError(415, f"Content-Encoding header: {shown(encoding)} is not supported; send the body "
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


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The JSON body, refusing more than ``limit`` bytes before reading them (Content-Length) or
    while reading them (chunked bodies have no length) — sent and, for a gzip or deflate body,
    decoded — and a body that takes longer than ``timeout`` seconds to arrive: the connection
    layer bounds request heads, not bodies, so a client trickling a byte at a time would
    otherwise hold a connection for as long as it likes."""
    decoder = BodyDecoder(request.headers.get("content-encoding"), limit)
    encoded = "" if decoder.encoding == "identity" else f" (decoded from {decoder.encoding})"
    too_big = APIError(413, f"request body larger than {limit} bytes{encoded}.", code="request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(decoder.feed(chunk))
        decoder.finish()
    except OverflowError as exc:
        raise too_big from exc
    except TimeoutError as exc:
        raise APIError(408, f"the request body did not arrive within {timeout:g} seconds.", code="body_timeout",
                       headers={"Connection": "close"}) from exc
    raw = b"".join(chunks)
    if len(raw) > _PARSE_INLINE_BYTES:
        return await asyncio.to_thread(parse_body, raw)
    return parse_body(raw)


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
