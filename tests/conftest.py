"""Shared fixtures: a real redis-server per test session, unique key prefixes per test, and
Microturn apps served on real ports with the shipped model's engine (loaded once)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from infra.config import Config
from infra.embedded_redis import EmbeddedRedis
from signaling.app import create_app, load_engine
from signaling.call import EngineLike


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server (TCP on a free loopback port) shared by the whole test session."""
    with EmbeddedRedis(tcp=True) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def unique() -> str:
    """A short unique string for key names, so tests never see each other's streams."""
    return uuid.uuid4().hex[:10]


MakeServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture(scope="session")
def shipped_engine() -> Iterator[EngineLike]:
    """The shipped model, loaded once: real torch steps on a real engine thread."""
    engine = load_engine(Config.from_env({}, max_calls=4))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
async def make_server(shipped_engine: EngineLike, redis_url: str) -> AsyncIterator[MakeServer]:
    """Start app servers with config overrides; all are closed after the test."""
    servers: list[TestServer] = []

    async def make(**overrides: Any) -> TestServer:
        # Tests share a loaded machine: load-based admission only where a test asks for it.
        settings = {
            "redis_url": redis_url,
            "agent_workers": 0,
            "max_loop_lag_ms": 0.0,
            **overrides,
        }
        config = Config.from_env({}, **settings)
        server = TestServer(create_app(config, engine=shipped_engine), host="127.0.0.1")
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
