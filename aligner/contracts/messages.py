"""Chat messages as OpenAI clients send them, read for what the Aligner needs: the question.

The proxy (a client's request) and ``aligner.wrap`` (a wrapped client's call) both receive a chat
message list and correct the answer for its last user message; one reader here, so both agree on
which text that is (content parts included).
"""
from __future__ import annotations

from typing import Any

from .errors import ConfigError


def question_of(messages: Any) -> str:
    """The text of the last user message: the question the answer replies to."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError("must be a non-empty list of chat messages.", field="messages",
                          fix="pass messages=[{'role': 'user', 'content': '...'}].")
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content
    raise ConfigError("has no user message with text content.", field="messages",
                      fix="the last user message's content is the question the Aligner corrects for.")
