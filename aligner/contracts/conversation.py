"""The question a corrector sees: the last user message, or the conversation it was trained on.

Chat applications send whole conversations; a corrector trained on HH-RLHF sees the whole
conversation before the answer (the data reader, :mod:`aligner.data.hh_rlhf`, keeps it), and
"Yes, do that." cannot be corrected without the turns before it. So a checkpoint records the
question format it was trained on, in ``aligner_config.json``::

    "question_format": {"kind": "conversation", "rendering": "hh-rlhf", "system": false}

(or ``"question_format": "last_message"``), and a chat's ``messages`` are rendered into exactly
that format here: the ``hh-rlhf`` rendering is the reader's transcript byte for byte — a
single-turn conversation is the bare user message, a longer one ``Human: …`` / ``Assistant: …``
turns joined by a blank line, each turn's text stripped (with ``system``, the system prompt is a
``System: …`` turn first). A checkpoint without a record (the released ``aligner-7b-v1.0``)
keeps the last user message, as before; ``context="last"`` / ``"conversation"`` overrides the
record (``--context``).

A conversation longer than the corrector's input budget is cut from the front: the oldest
exchanges go first (a system prompt, being oldest, before them), never the last question. When
even the last question with the answer does not fit, the last question alone is what the
corrector gets, and its own ``fit`` truncates the answer or refuses a question that is too long
by itself — the same error as in last-message mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import ConfigError, require_text

LAST_MESSAGE = "last_message"
CONVERSATION = "conversation"
KINDS = (LAST_MESSAGE, CONVERSATION)
#: the renderings a conversation can take; ``hh-rlhf`` is what :mod:`aligner.data.hh_rlhf` writes
RENDERINGS = ("hh-rlhf",)
#: ``--context`` values: ``last`` (the last user message) or ``conversation`` (as recorded, else hh-rlhf)
CONTEXTS = ("last", "conversation")
#: the speaker labels of the hh-rlhf transcript, by chat role
SPEAKERS = {"user": "Human", "assistant": "Assistant", "system": "System"}
#: chat roles whose text is the system prompt
SYSTEM_ROLES = ("system", "developer")

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class QuestionFormat:
    """How a corrector was trained to read the question (see the module docstring)."""

    kind: str = LAST_MESSAGE
    rendering: str = "hh-rlhf"
    #: whether the system prompt is part of the rendered conversation
    system: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown question format {self.kind!r}.", field="question_format",
                              fix=f"use one of {', '.join(KINDS)}.")
        if self.rendering not in RENDERINGS:
            raise ConfigError(f"unknown conversation rendering {self.rendering!r}.", field="question_format",
                              fix=f"use one of {', '.join(RENDERINGS)}.")

    @classmethod
    def from_record(cls, record: Any) -> "QuestionFormat":
        """The format an ``aligner_config.json`` records (its ``question_format`` key); a checkpoint
        without one reads the last user message."""
        value = record.get("question_format") if isinstance(record, Mapping) else None
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(kind=value)
        if isinstance(value, Mapping):
            return cls(kind=str(value.get("kind", LAST_MESSAGE)), rendering=str(value.get("rendering", "hh-rlhf")),
                       system=bool(value.get("system", False)))
        raise ConfigError(f"question_format must be a string or an object, got {value!r}.", field="question_format",
                          fix='e.g. "question_format": {"kind": "conversation", "rendering": "hh-rlhf"}.')

    def to_record(self) -> dict[str, Any]:
        """What ``aligner_config.json`` stores for this format."""
        if self.kind == LAST_MESSAGE:
            return {"kind": LAST_MESSAGE}
        return {"kind": self.kind, "rendering": self.rendering, "system": self.system}

    def overridden(self, context: str | None) -> "QuestionFormat":
        """This format with ``--context`` applied: ``last`` reads the last message, ``conversation``
        the conversation (as recorded, else the hh-rlhf transcript without the system prompt)."""
        if context is None:
            return self
        check_context(context)
        if context == "last":
            return QuestionFormat(LAST_MESSAGE)
        return self if self.kind == CONVERSATION else QuestionFormat(CONVERSATION)


def check_context(context: Any) -> str | None:
    if context is not None and context not in CONTEXTS:
        raise ConfigError(f"must be one of {', '.join(CONTEXTS)}, got {context!r}.", field="context",
                          fix="--context last (the last user message) or --context conversation (the whole "
                              "conversation, rendered as the corrector was trained).")
    return context


def format_of(corrector: Any, context: str | None = None) -> QuestionFormat:
    """The question format of ``corrector`` (each stage's, which must agree, for a stack) with
    ``context`` applied; a corrector that records none reads the last user message."""
    stages = getattr(corrector, "stages", None) or [corrector]
    found = {QuestionFormat.from_record(getattr(stage, "metadata", None) or {}) for stage in stages}
    if len(found) > 1 and context is None:
        shown = "; ".join(f"{s.name}: {QuestionFormat.from_record(getattr(s, 'metadata', None) or {}).kind}"
                          for s in stages)
        raise ConfigError(f"the stacked correctors were trained on different question formats ({shown}).",
                          field="context", fix="choose one for all of them: --context last or --context conversation.")
    return next(iter(found)).overridden(context)


# -- reading messages --------------------------------------------------------------------------
def _text(content: Any) -> str:
    """A message's text: a string, or its text parts joined (images and other parts carry none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, Mapping) and p.get("type", "text") == "text" and isinstance(p.get("text"), str))
    return ""


def turns_of(messages: Any) -> list[tuple[str, str]]:
    """``[(role, text), ...]`` of the conversation up to and including the last user message with
    text (later messages, such as the answer itself, are not the question). Roles are ``user``,
    ``assistant`` and ``system`` (a ``developer`` message is the system prompt); tool results and
    turns without text are left out."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConfigError("must be a non-empty list of chat messages.", field="messages",
                          fix="pass messages=[{'role': 'user', 'content': '...'}].")
    turns: list[tuple[str, str]] = []
    last_user = -1
    for m in messages:
        if not isinstance(m, Mapping):
            raise ConfigError(f"each message must be an object with a role and content, got {m!r}.",
                              field="messages", fix="e.g. {'role': 'user', 'content': 'Hello'}.")
        role = m.get("role")
        role = "system" if role in SYSTEM_ROLES else role
        text = _text(m.get("content"))
        if role not in SPEAKERS or not text.strip():
            continue
        turns.append((role, text))
        if role == "user":
            last_user = len(turns) - 1
    if last_user < 0:
        raise ConfigError("has no user message with text content.", field="messages",
                          fix="the conversation needs a user message: the question the answer replies to.")
    return turns[:last_user + 1]


def last_question(messages: Any) -> str:
    """The text of the last user message: the question in last-message mode."""
    return turns_of(messages)[-1][1]


def transcript(turns: Sequence[tuple[str, str]]) -> str:
    """The hh-rlhf rendering of ``(speaker, text)`` turns — speakers ``Human``/``Assistant``
    (``System``) — exactly as :mod:`aligner.data.hh_rlhf` writes a question: one human turn is the
    bare message, more are ``Speaker: text`` joined by a blank line, each text stripped."""
    if len(turns) == 1 and turns[0][0] == "Human":
        return turns[0][1].strip()
    return "\n\n".join(f"{who}: {text.strip()}" for who, text in turns)


def render(turns: Sequence[tuple[str, str]], fmt: QuestionFormat) -> str:
    """The question ``turns`` (from :func:`turns_of`) make in ``fmt``."""
    if fmt.kind == LAST_MESSAGE:
        return turns[-1][1]
    kept = [(SPEAKERS[role], text) for role, text in turns if fmt.system or role != "system"]
    return transcript(kept)


def starts(turns: Sequence[tuple[str, str]]) -> list[int]:
    """Where a cut conversation may begin, longest first: the whole, then each user turn (the
    oldest exchanges dropped first, a leading system prompt before them), down to the last one."""
    return [0] + [i for i, (role, _) in enumerate(turns) if role == "user" and i > 0]


def question_for(messages: Any, fmt: QuestionFormat, fits: Callable[[str], bool] | None = None) -> str:
    """The question the corrector gets for ``messages``: rendered in ``fmt`` and, in conversation
    mode, cut from the front to the longest tail that ``fits`` (the prompt with the answer fits the
    corrector's input budget); the last question alone when none does."""
    turns = turns_of(messages)
    if fmt.kind == LAST_MESSAGE:
        return render(turns, fmt)
    options = [render(turns[i:], fmt) for i in starts(turns)]
    if fits is None or len(options) == 1:
        return options[0]
    lo, hi = 0, len(options) - 1  # fits is monotone: a shorter tail fits whenever a longer one does
    if fits(options[lo]):
        return options[lo]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(options[mid]):
            hi = mid
        else:
            lo = mid
    return options[hi]


def is_conversation(question: Any) -> bool:
    """Whether ``question`` is a chat message list (rendered here) rather than a question string."""
    return isinstance(question, (list, tuple))


def check_question(question: Any, field: str = "question") -> Any:
    """``question`` as given, once it is a non-empty string or chat messages with a user message."""
    if is_conversation(question):
        turns_of(question)
        return question
    return require_text(question, field)


def is_transcript(question: str) -> bool:
    """Whether ``question`` is a multi-turn hh-rlhf transcript (``Human: …\n\nAssistant: …``)."""
    return question.startswith(("Human: ", "System: ")) and "\n\nAssistant: " in question


def trained_format(chosen: str | None, data_format: str, questions: Iterable[str]) -> dict[str, Any]:
    """The question format a trainer records: the one ``chosen``, else ``conversation`` for
    HH-RLHF data (or Q-A-C rows holding its transcripts), else ``last_message``."""
    if chosen is None:
        fmt = str(data_format).strip().lower().replace("_", "-")
        chosen = CONVERSATION if fmt == "hh-rlhf" or any(is_transcript(q) for q in questions) else LAST_MESSAGE
    return QuestionFormat(chosen).to_record()
