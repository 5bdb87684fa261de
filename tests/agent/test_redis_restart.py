"""Redis crashes and comes back (AOF on) in the middle of a call: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from agent.backends.builtin import BuiltinBackend
from agent.bus import StreamKeys
from agent.client import AgentClient
from agent.consumer import Worker
from agent.types import AgentResult, Turn
from infra.embedded_redis import EmbeddedRedis
from tests.agent.conftest import WAIT_S, finals_for, stream_results

CONVERSATION = [Turn(0, "user", "speech", "start a timer and then do some math")]


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tcp=True, persist=True) as server:
        yield server


async def test_redis_restart_mid_call_loses_nothing(
    own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    keys = StreamKeys()  # a private Redis: the default contract key names
    redis = aioredis.Redis.from_url(own_redis.url, socket_connect_timeout=0.5)
    client = AgentClient(redis, "call-restart", keys=keys)
    worker = Worker(own_redis.url, BuiltinBackend(), keys=keys, claim_idle_ms=5000, block_ms=200)
    worker_task = asyncio.create_task(worker.run())
    got: list[AgentResult] = []
    arrived = asyncio.Event()

    async def read() -> None:
        async for result in client.results():
            got.append(result)
            arrived.set()

    reader = asyncio.create_task(read())
    try:
        timer_id = await client.submit("set a timer for 3 seconds", CONVERSATION, microturn=5)

        async def until(predicate: object) -> None:
            while not predicate(got):  # type: ignore[operator]
                arrived.clear()
                await arrived.wait()

        # The worker is running the timer (its first partial is in) when Redis crashes.
        await asyncio.wait_for(until(lambda rs: any(r.kind == "partial" for r in rs)), WAIT_S)
        own_redis.kill()
        # The call goes on: work can still be handed over, and it returns at once.
        math_id = await asyncio.wait_for(
            client.submit("what is 6*7", CONVERSATION, microturn=9), 1.0
        )
        assert client.status.pending_publish >= 1
        await asyncio.sleep(1.0)  # Redis stays away for a while; everyone retries meanwhile
        assert not reader.done() and not worker_task.done()
        assert not client.status.redis_ok
        await loop.run_in_executor(None, own_redis.start)  # same port, same AOF

        await asyncio.wait_for(until(lambda rs: finals_for(rs, [timer_id, math_id])), WAIT_S)
    finally:
        reader.cancel()
        await asyncio.wait([reader])
        await worker.stop(grace_s=1.0)
        await asyncio.wait([worker_task])

    timer = [r for r in got if r.package_id == timer_id]
    assert timer[-1].kind == "final" and timer[-1].data is not None
    assert timer[-1].data["timer_s"] == 3
    assert [r.kind for r in got if r.package_id == math_id][-1] == "final"
    assert "42" in [r for r in got if r.package_id == math_id][-1].text
    # No duplicates reached the call, and the stream itself has one terminal per package.
    assert len({(r.package_id, r.seq) for r in got}) == len(got)
    raw = await stream_results(redis, keys.results("call-restart"))
    assert sum(r.terminal for r in raw) == 2
    assert (await redis.xpending(keys.ctx, keys.group))["pending"] == 0
    status = client.status
    assert (status.submitted, status.published, status.pending_publish) == (2, 2, 0)
    assert status.redis_ok
    # Each side logged the outage once, not once per retry.
    unreachable = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    by_logger: dict[str, int] = {}
    for record in unreachable:
        key = record.getMessage().split(": Redis unreachable")[0]
        by_logger[key] = by_logger.get(key, 0) + 1
    assert unreachable and all(n == 1 for n in by_logger.values()), by_logger
    await client.close()
    await redis.aclose()
