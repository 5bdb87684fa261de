"""AgentClient on its own: the outbox while Redis is away, dedupe and resume of the reader."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent.bus import Scripts, StreamKeys, emit
from agent.client import AgentClient, AgentError, ClientClosed, OutboxFull
from agent.types import AgentResult, ContextPackage, PackageError, Turn
from infra.embedded_redis import EmbeddedRedis, free_port
from tests.agent.conftest import WAIT_S, collect

CONVERSATION = [Turn(0, "user", "text", "hello")]


async def test_outbox_holds_packages_while_redis_is_away_then_publishes_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    redis = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2, socket_timeout=1
    )
    keys = StreamKeys()
    client = AgentClient(redis, "call-outbox", keys=keys, max_outbox=3)
    ids = []
    for i in range(3):
        # Returns at once, although nothing listens on the port.
        ids.append(await asyncio.wait_for(client.submit(f"task {i}", CONVERSATION, i), 1.0))
    with pytest.raises(OutboxFull):
        await client.submit("one too many", CONVERSATION, 3)
    assert client.status.submitted == 3 and client.status.pending_publish == 3

    async def down() -> None:
        while client.status.redis_ok:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(down(), WAIT_S)
    await asyncio.sleep(0.5)  # several retries happen meanwhile

    server = EmbeddedRedis(port=port)
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    try:
        assert await client.flush(WAIT_S)
        entries: Any = await redis.xrange(keys.ctx)
        published = [ContextPackage.decode(f[b"package"]).package_id for _id, f in entries]
        assert published == ids  # all of them, once each, in submit order
        assert client.status.published == 3 and client.status.pending_publish == 0
        assert client.status.redis_ok
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not per attempt
        await client.close()
        with pytest.raises(ClientClosed):
            await client.submit("after close", CONVERSATION, 9)
    finally:
        await redis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, server.close)


async def test_submit_rejects_bad_input_at_once(
    redis_client: aioredis.Redis, keys: StreamKeys
) -> None:
    client = AgentClient(redis_client, "call-bad", keys=keys)
    with pytest.raises(PackageError):
        await client.submit(
            "x", [{"microturn": 1, "role": "robot", "kind": "text", "text": "x"}], 1
        )
    with pytest.raises(AgentError) as info:
        await client.submit("x", CONVERSATION, -1)
    assert isinstance(info.value, PackageError) and info.value.code == "bad_field"
    assert client.status.submitted == 0
    await client.close()


async def test_reader_dedupes_and_resumes_after_connections_are_killed(
    redis_client: aioredis.Redis, redis_url: str, keys: StreamKeys, unique: str
) -> None:
    call_id = f"call-{unique}"
    reader_redis = aioredis.Redis.from_url(redis_url)
    client = AgentClient(reader_redis, call_id, keys=keys, read_block_ms=200)
    scripts = Scripts(redis_client)
    results_key = keys.results(call_id)
    await emit(scripts, keys, call_id, "p1", "started", "")
    await emit(scripts, keys, call_id, "p1", "partial", "half way", seq=1)
    # An at-least-once writer repeated itself (raw XADD bypassing the script): same (id, seq).
    dup = AgentResult("p1", 1, "partial", "half way").encode()
    await redis_client.xadd(results_key, {"result": dup})
    await redis_client.xadd(results_key, {"result": "not json"})  # skipped, not fatal
    first = await collect(client, lambda rs: len(rs) >= 2)
    assert [(r.seq, r.kind) for r in first] == [(0, "started"), (1, "partial")]

    got: list[AgentResult] = list(first)
    arrived = asyncio.Event()

    async def read() -> None:
        async for r in client.results():
            got.append(r)
            arrived.set()

    reader = asyncio.create_task(read())
    try:
        # Drop every client connection the server has (the reader's included), twice, with
        # results written in between.
        for n in range(2):
            await redis_client.client_kill_filter(_type="normal", skipme=True)
            await emit(scripts, keys, call_id, "p1", "partial", f"more {n}", seq=2 + n)
        await emit(scripts, keys, call_id, "p1", "final", "done")
        await emit(scripts, keys, call_id, "p1", "final", "done again")  # fenced: not written

        async def until_final() -> None:
            while not any(r.kind == "final" for r in got):
                arrived.clear()
                await arrived.wait()

        await asyncio.wait_for(until_final(), WAIT_S)
    finally:
        reader.cancel()
        await asyncio.wait([reader])
    assert [(r.seq, r.kind, r.text) for r in got] == [
        (0, "started", ""),
        (1, "partial", "half way"),
        (2, "partial", "more 0"),
        (3, "partial", "more 1"),
        (4, "final", "done"),
    ]
    assert client.status.duplicates_dropped == 1
    await client.close()
    await reader_redis.aclose()


async def test_cancelled_reader_always_stops(
    redis_client: aioredis.Redis, keys: StreamKeys, unique: str
) -> None:
    """Regression: on Python 3.11 redis-py's wait_for can swallow a cancel; results() honours it."""
    call_id = f"call-{unique}"
    client = AgentClient(redis_client, call_id, keys=keys, read_block_ms=200)
    scripts = Scripts(redis_client)
    rng = random.Random(7)

    async def read() -> None:
        async for _ in client.results():
            pass

    for i in range(24):
        reader = asyncio.create_task(read())
        await asyncio.sleep(rng.random() * 0.01)
        if i % 2:
            await emit(scripts, keys, call_id, f"p{i}", "started", "")
        reader.cancel()
        done, _ = await asyncio.wait([reader], timeout=WAIT_S)
        assert done, f"reader {i} ignored its cancellation"
    await client.close()
