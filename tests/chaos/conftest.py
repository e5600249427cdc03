"""Fixtures every chaos module shares: a quick-stopping router starter, and both upstream dialects."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.chaos import router_starter
from tests.fakes import FakeUpstream
from tests.support.router_server import RunningRouter


@pytest.fixture
def start_router() -> Iterator[Callable[..., RunningRouter]]:
    """`start_router(yaml_text)` starts a real router on loopback (see `router_starter`)."""
    yield from router_starter()


@pytest.fixture(params=["ollama", "openai"])
def fake(request: pytest.FixtureRequest) -> FakeUpstream:
    """Each test runs against both dialects."""
    return request.getfixturevalue(f"fake_{request.param}")  # type: ignore[no-any-return]
