"""An app served on a real port, with the shipped model's engine shared by the module's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from infra.config import Config
from signaling.app import create_app, load_engine
from signaling.call import EngineLike

MakeServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture(scope="session")
def engine() -> Iterator[EngineLike]:
    """The shipped model, loaded once: real torch steps on a real engine thread."""
    engine = load_engine(Config.from_env({}, max_calls=4))
    engine.start()  # type: ignore[attr-defined]
    yield engine
    engine.stop()  # type: ignore[attr-defined]


@pytest.fixture
async def make_server(engine: EngineLike, redis_url: str) -> AsyncIterator[MakeServer]:
    """Start app servers with config overrides; all are closed after the test."""
    servers: list[TestServer] = []

    async def make(**overrides: Any) -> TestServer:
        settings = {"redis_url": redis_url, "agent_workers": 0, **overrides}
        config = Config.from_env({}, **settings)
        server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def server(make_server: MakeServer) -> AsyncIterator[TestServer]:
    server = await make_server()
    yield server
    await server.close()
