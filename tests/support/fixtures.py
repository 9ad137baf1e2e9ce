"""Pytest fixtures shared across the suite (load with `pytest_plugins`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_openai import FakeOpenAI


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started `FakeOpenAI`, stopped (and its stalls released) after the test."""
    with FakeOpenAI() as srv:
        yield srv
