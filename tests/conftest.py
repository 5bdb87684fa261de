"""Shared fixtures: a real redis-server per test session, unique key prefixes per test, and
Microturn apps served on real ports with a real model engine (loaded once).

The plumbing tests (signaling, media, the demo page's mechanics) serve the *untrained* `small`
model: the shipped architecture at its reproducible initialisation (seed 0), which never says text
and always makes moderate audio, so a test can hear the call without asking the model for anything.
The trained, shipped checkpoint is what tests of the model's behaviour use (tests/inference,
tests/browser/test_model_in_page.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from inference.protocol import Engine as EngineLike
from infra.config import Config
from infra.embedded_redis import EmbeddedRedis
from signaling.app import create_app, load_engine


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
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` architecture at its seed-0 initialisation, as a checkpoint directory (greedy
    text decoding: its text head's quiet start then never speaks)."""
    import dataclasses

    from inference.checkpoint import init_model, save
    from inference.config import preset

    out = tmp_path_factory.mktemp("untrained-small")
    # the flow sampled at temperature 1, as the plumbing tests were written against: its noise
    # keeps the untrained voice audible whatever the untrained flow computes
    cfg = dataclasses.replace(preset("small"), onset_survival=0.0, flow_temperature=1.0)
    save(init_model(cfg, seed=0), out, dtype="bfloat16", preset_name="small")
    return out


@pytest.fixture(scope="session")
def audible_engine(untrained_checkpoint: Path) -> Iterator[EngineLike]:
    """The untrained model, loaded once: real torch steps on a real engine thread."""
    engine = load_engine(Config.from_env({}, max_calls=4, model=str(untrained_checkpoint)))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
async def make_server(audible_engine: EngineLike, redis_url: str) -> AsyncIterator[MakeServer]:
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
        server = TestServer(create_app(config, engine=audible_engine), host="127.0.0.1")
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
