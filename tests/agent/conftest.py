"""Fixtures for the agent tests: unique stream keys per test, workers run as tasks, collectors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.backends import Backend
from agent.backends.builtin import BuiltinBackend
from agent.bus import StreamKeys
from agent.client import AgentClient
from agent.consumer import Worker
from agent.types import AgentResult

WAIT_S = 30.0  # generous: the machine may be loaded; every wait ends on an event, not a clock


@pytest.fixture
def keys(unique: str) -> StreamKeys:
    return StreamKeys.with_prefix(f"test:{unique}")


class Workers:
    """Starts Worker.run() tasks; stops (or cancels) them all at teardown."""

    def __init__(self, redis_url: str, keys: StreamKeys) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(
        self, backend: Backend | None = None, *, url: str | None = None, **kwargs: Any
    ) -> Worker:
        kwargs.setdefault("claim_idle_ms", 5_000)
        kwargs.setdefault("block_ms", 200)
        worker = Worker(
            url or self.redis_url, backend or BuiltinBackend(), keys=self.keys, **kwargs
        )
        task = asyncio.create_task(worker.run())
        self.running.append((worker, task))
        await asyncio.wait_for(worker.ready.wait(), WAIT_S)
        return worker

    async def stop_all(self) -> None:
        for worker, task in self.running:
            if not task.done():
                await asyncio.wait_for(worker.stop(grace_s=0.5), WAIT_S)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.running.clear()


@pytest.fixture
async def workers(redis_url: str, keys: StreamKeys) -> AsyncIterator[Workers]:
    w = Workers(redis_url, keys)
    try:
        yield w
    finally:
        await w.stop_all()


async def collect(
    client: AgentClient,
    until: Callable[[list[AgentResult]], bool],
    timeout_s: float = WAIT_S,
) -> list[AgentResult]:
    """Results from client.results() until `until(results)` holds (or fail after timeout_s)."""
    got: list[AgentResult] = []

    async def run() -> None:
        async for result in client.results():
            got.append(result)
            if until(got):
                return

    try:
        await asyncio.wait_for(run(), timeout_s)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout_s} s; got {got}")
    return got


def finals_for(results: list[AgentResult], package_ids: set[str] | list[str]) -> bool:
    wanted = set(package_ids)
    return wanted <= {r.package_id for r in results if r.terminal}


async def stream_results(redis: aioredis.Redis, key: str) -> list[AgentResult]:
    """Every result entry in a results stream, raw (no dedupe)."""
    entries: Any = await redis.xrange(key)
    return [AgentResult.decode(fields[b"result"]) for _id, fields in entries]
