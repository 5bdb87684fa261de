"""A package published and answered end to end through a real Redis; ordering per call."""

from __future__ import annotations

import functools
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from agent.bus import StreamKeys
from agent.client import AgentClient
from agent.types import ContextPackage, Turn
from tests.agent.conftest import Workers, collect, finals_for, stream_results

CONVERSATION = [
    Turn(0, "user", "speech", "hi there"),
    Turn(3, "model", "speech", "hello! what can I do?"),
    Turn(9, "user", "text", "/ask what is 12*7"),
]


async def test_ask_answered_end_to_end(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    await workers.start(concurrency=2)
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    package_id = await client.submit("/ask what is 12*7", CONVERSATION, microturn=9)

    got = await collect(client, lambda rs: finals_for(rs, [package_id]))

    assert [r.kind for r in got] == ["started", "final"]
    assert [r.seq for r in got] == [0, 1]
    assert all(r.package_id == package_id for r in got)
    final = got[-1]
    assert "84" in final.text
    assert final.data is not None
    assert final.data["expression"] == "12*7"
    assert final.data["value"] == 84
    # Acked only after the final: nothing is left pending in the group.
    pending = await redis_client.xpending(keys.ctx, keys.group)
    assert pending["pending"] == 0
    status = client.status
    assert (status.submitted, status.published, status.done, status.in_flight) == (1, 1, 1, 0)
    await client.close()


async def test_package_on_the_wire_is_the_contract(
    redis_client: aioredis.Redis, keys: StreamKeys, unique: str
) -> None:
    """What the client XADDs decodes as a v1 package with the api.md field names."""
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    frame = b"\xff\xd8\xff\xe0fake-jpeg"
    package_id = await client.submit("look at this", CONVERSATION, microturn=12, frame_jpeg=frame)
    assert await client.flush(10)
    entries = cast(list[Any], await redis_client.xrange(keys.ctx))
    assert len(entries) == 1
    fields = entries[0][1]
    assert set(fields) == {b"package"}
    import json

    wire = json.loads(fields[b"package"])
    assert set(wire) == {
        "v", "package_id", "call_id", "created_at", "microturn", "request", "conversation",
        "frame_jpeg_b64",
    }  # fmt: skip
    assert wire["v"] == 1 and wire["package_id"] == package_id and wire["microturn"] == 12
    assert wire["request"] == {"text": "look at this"}
    assert wire["conversation"][2] == {
        "microturn": 9,
        "role": "user",
        "kind": "text",
        "text": "/ask what is 12*7",
    }
    package = ContextPackage.decode(fields[b"package"])
    assert package.frame_jpeg == frame
    assert package.conversation == tuple(CONVERSATION)
    await client.close()


async def test_results_are_ordered_per_call(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    await workers.start(concurrency=4)
    await workers.start(concurrency=4)
    calls = [AgentClient(redis_client, f"call-{unique}-{i}", keys=keys) for i in range(3)]
    submitted: dict[str, list[str]] = {c.call_id: [] for c in calls}
    requests = [
        "set a timer for 2 seconds",
        "what is 2**10",
        "convert 5 km to miles",
        "what time is it",
        "what is 1/0",
        "/ask 100 f to c",
    ]
    for call in calls:
        for text in requests:
            submitted[call.call_id].append(await call.submit(text, CONVERSATION, microturn=20))

    for call in calls:
        ids = submitted[call.call_id]
        got = await collect(call, functools.partial(finals_for, package_ids=ids))
        # Only this call's packages, each exactly once per seq.
        assert {r.package_id for r in got} == set(ids)
        assert len({(r.package_id, r.seq) for r in got}) == len(got)
        for pid in ids:
            mine = [r for r in got if r.package_id == pid]
            assert mine[0].kind == "started"
            assert [r.seq for r in mine] == sorted(r.seq for r in mine)
            assert mine[-1].terminal and sum(r.terminal for r in mine) == 1
        by_id = {pid: [r for r in got if r.package_id == pid] for pid in ids}
        timer = by_id[ids[0]]
        assert [r.kind for r in timer][-1] == "final"
        assert any(r.kind == "partial" for r in timer)
        assert timer[-1].data is not None and timer[-1].data["timer_s"] == 2
        assert by_id[ids[1]][-1].data["value"] == 1024  # type: ignore[index]
        assert by_id[ids[2]][-1].data["value"] == pytest.approx(3.1068559612)  # type: ignore[index]
        assert "It is" in by_id[ids[3]][-1].text
        assert by_id[ids[4]][-1].kind == "error" and "division by zero" in by_id[ids[4]][-1].text
        assert by_id[ids[5]][-1].data["value"] == pytest.approx(37.7777777778)  # type: ignore[index]
        # The raw stream agrees with what the reader yielded: nothing extra, same order.
        raw = await stream_results(redis_client, keys.results(call.call_id))
        assert raw == got
        await call.close()


async def test_in_process_workers_on_an_embedded_unix_socket_redis() -> None:
    """What `microturn serve` does by default: private Redis on a unix socket, workers as tasks."""
    import asyncio

    from agent.inprocess import in_process_workers
    from infra.embedded_redis import EmbeddedRedis

    loop = asyncio.get_running_loop()
    server = EmbeddedRedis()
    await loop.run_in_executor(None, server.start)
    redis = aioredis.Redis.from_url(server.url, socket_timeout=None)
    try:
        keys = StreamKeys()
        async with in_process_workers(server.url, 2, backend="builtin") as running:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in running)), 30)
            client = AgentClient(redis, "call-inproc", keys=keys)
            ids = [await client.submit(f"what is {i}+{i}", CONVERSATION, i) for i in range(6)]
            got = await collect(client, lambda rs: finals_for(rs, ids))
            assert sorted(r.text for r in got if r.kind == "final") == sorted(
                f"{i}+{i} = {2 * i}" for i in range(6)
            )
            await client.close()
        assert all(not w._running for w in running)
        assert await redis.xinfo_consumers(keys.ctx, keys.group) == []
    finally:
        await redis.aclose()
        await loop.run_in_executor(None, server.close)
