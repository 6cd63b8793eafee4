"""Errors a user can act on.

Every error raised on purpose by aligner-kit names the argument (or file, row and field) that is
wrong and says how to fix it, so a user never has to read a traceback from deep inside a library.
"""
from __future__ import annotations

from typing import TypeVar


class AlignerError(Exception):
    """Base class: ``field`` is the argument at fault, ``fix`` what to do about it."""

    #: the library exception this error was made from, kept for debugging (see :func:`hide_cause`)
    cause: BaseException | None = None

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None):
        self.field = field
        self.fix = fix
        text = message
        if field and not message.startswith(f"{field}:"):
            text = f"{field}: {message}"
        if fix:
            text = f"{text} Fix: {fix}"
        super().__init__(text)


class ConfigError(AlignerError, ValueError):
    """An argument, option or config value is invalid."""


class TemplateError(ConfigError):
    """A prompt template is unknown or malformed."""


class CorrectorError(AlignerError, RuntimeError):
    """The corrector could not be loaded or could not produce a correction."""


class UpstreamError(AlignerError, RuntimeError):
    """The upstream model could not be reached or kept failing after retries.

    ``status`` carries the HTTP status when there was one, so the server can map it onto an
    OpenAI-style error with the right code; ``retry_after`` the seconds a rate-limited upstream
    asked to wait (its ``Retry-After``), which the server passes on to its own client.
    """

    def __init__(self, message: str, *, field: str | None = "upstream", fix: str | None = None,
                 status: int | None = None, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message, field=field, fix=fix)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the configured timeout."""


#: what a 1-based location number counts: the line an editor shows (JSONL, CSV) ...
LINE = "line"
#: ... or the position of a record in a JSON list, a parquet table or a hub split (no lines there).
RECORD = "record"


class DataError(AlignerError, ValueError):
    """A data row is malformed; ``source``/``row`` locate it.

    ``row`` is 1-based and counts ``unit``: :data:`LINE` (the default; the line number an editor
    shows, in every reader of a JSONL file) or :data:`RECORD`. One numbering in every message, so
    the same bad line is the same number whichever command read it; the 0-based ``row`` field of
    ``aligner correct``/``generate`` output files is another thing and never shown as a location.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 field: str | None = None, fix: str | None = None, unit: str = LINE):
        where = ", ".join(p for p in (source and f"file {source}", row is not None and f"{unit} {row}",
                                      field and f"field '{field}'") if p)
        super().__init__(f"{where}: {message}" if where else message, fix=fix)
        self.source, self.row, self.field, self.unit = source, row, field, unit


E = TypeVar("E", bound=AlignerError)


def hide_cause(err: E, cause: BaseException | None) -> E:
    """``raise hide_cause(ConfigError(...), exc)`` instead of ``raise ConfigError(...) from exc``.

    The message already says what went wrong and how to fix it; chaining the library's exception
    would put 40-100 lines of transformers or httpx internals under it in every traceback. The
    library's exception stays on ``err.cause`` for debugging (``aligner -v`` prints it).
    """
    err.cause = cause if cause is not err else None
    err.__cause__ = None
    err.__suppress_context__ = True  # the implicit "during handling" context too
    return err


def json_type(value: object) -> str:
    """What a value read from JSON is, in JSON's words and with the value when it is short:
    ``a number (5)``, ``a list``, ``null`` — for "expected a string, got ..." messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return f"a list ({len(value)} item{'s' if len(value) != 1 else ''})"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def require_text(value: object, field: str) -> str:
    """Validate a user-supplied text argument (non-empty ``str``)."""
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {type(value).__name__}.", field=field,
                          fix=f"pass {field} as a non-empty str.")
    if not value.strip():
        raise ConfigError("is empty.", field=field, fix=f"pass a non-empty {field}.")
    return value
