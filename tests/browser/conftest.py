"""Fixtures of the browser QA harness (see harness.py for the pieces)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.embedded_redis import free_port
from tests.browser.harness import (
    ARTIFACTS,
    FakeMedia,
    ServerProcess,
    close_chromium,
    launch_chromium,
    make_media,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def fake_media(tmp_path_factory: pytest.TempPathFactory) -> FakeMedia:
    return make_media(tmp_path_factory.mktemp("media"), speech="hello, can you hear me?")


@pytest.fixture(scope="session")
def served(untrained_checkpoint: Path) -> Iterator[ServerProcess]:
    """`microturn serve` with its defaults (embedded Redis) on a free port, serving the untrained
    `small` model (always audible: the page's audio path is testable without asking it anything)."""
    args = ["--model", str(untrained_checkpoint)]
    server = ServerProcess(free_port(), args=args, log_path=ARTIFACTS / "browser-server.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def served_shipped() -> Iterator[ServerProcess]:
    """`microturn serve` exactly as `make run` starts it: defaults, the shipped trained model."""
    server = ServerProcess(free_port(), log_path=ARTIFACTS / "browser-shipped-server.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def quiet_media(tmp_path_factory: pytest.TempPathFactory) -> FakeMedia:
    """A quiet room on the mic (a user who types), the circling square on the camera."""
    return make_media(tmp_path_factory.mktemp("quiet-media"), speech=None)


async def _chromium(media: FakeMedia) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await launch_chromium(playwright, media)
        try:
            yield context
        finally:
            await close_chromium(context)


@pytest.fixture
async def chromium(fake_media: FakeMedia) -> AsyncIterator[Any]:
    """Chromium whose fake mic loops speech ("hello, can you hear me?")."""
    async for context in _chromium(fake_media):
        yield context


@pytest.fixture
async def chromium_quiet(quiet_media: FakeMedia) -> AsyncIterator[Any]:
    """Chromium whose fake mic hears a quiet room."""
    async for context in _chromium(quiet_media):
        yield context


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
