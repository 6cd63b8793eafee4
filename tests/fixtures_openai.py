"""The ``fake_openai`` fixture: a fresh real OpenAI-protocol server per test (starts in milliseconds)."""
from __future__ import annotations

from typing import Iterator

import pytest

from fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """One :class:`FakeOpenAI` shared by a module's tests (the serve tests' upstream)."""
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running :class:`FakeOpenAI`; script it with ``fail_next`` and set ``.responder`` freely."""
    with FakeOpenAI() as srv:
        yield srv
