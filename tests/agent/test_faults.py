"""Crashes, poison and races, against a real Redis: nothing lost, exactly one final per package."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis

from agent.bus import Scripts, StreamKeys, emit, ensure_group, publish
from agent.client import AgentClient
from agent.types import ContextPackage, Turn
from tests.agent.conftest import WAIT_S, Workers, collect, finals_for, stream_results

REPO = Path(__file__).resolve().parents[2]
CONVERSATION = [Turn(1, "user", "speech", "can you help me with something")]


async def wait_for(predicate: Any, timeout_s: float = WAIT_S, what: str = "condition") -> None:
    """Poll an async predicate until true; the timeout is only a safety net."""

    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def pending_count(redis: aioredis.Redis, keys: StreamKeys) -> int:
    info = await redis.xpending(keys.ctx, keys.group)
    return int(info["pending"])


def terminal_counts(results: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        if r.terminal:
            counts[r.package_id] = counts.get(r.package_id, 0) + 1
    return counts


async def test_entry_of_a_dead_consumer_is_reclaimed_and_finished_once(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    await ensure_group(redis_client, keys)
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    package_id = await client.submit("what is 6*7", CONVERSATION, microturn=3)
    assert await client.flush(WAIT_S)
    # A consumer takes it and dies without a word.
    taken: Any = await redis_client.xreadgroup(keys.group, "ghost", {keys.ctx: ">"}, count=10)
    assert len(taken[0][1]) == 1

    worker = await workers.start(claim_idle_ms=300, claim_interval_ms=50)
    got = await collect(client, lambda rs: finals_for(rs, [package_id]))

    assert [r.kind for r in got] == ["started", "final"]
    assert got[0].data is not None and got[0].data["attempt"] == 2
    assert "42" in got[-1].text
    assert worker.stats.reclaimed == 1
    await wait_for(lambda: _zero(pending_count(redis_client, keys)), what="ack")
    raw = await stream_results(redis_client, keys.results(client.call_id))
    assert terminal_counts(raw) == {package_id: 1}
    await client.close()


async def _zero(value: Any) -> bool:
    return await value == 0


async def test_killed_worker_process_mid_task_is_taken_over(
    redis_client: aioredis.Redis, redis_url: str, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    """A real `microturn agent` process dies (SIGKILL) in the middle of a timer."""
    prefix = keys.ctx.removesuffix(":ctx")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "--redis",
        redis_url,
        "--key-prefix",
        prefix,
        "--concurrency",
        "1",
        "--consumer",
        "doomed",
        "--log-level",
        "warning",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    try:
        package_id = await client.submit("set a timer for 3 seconds", CONVERSATION, microturn=7)
        first = await collect(client, lambda rs: any(r.kind == "partial" for r in rs))
        assert first[0].data is not None and first[0].data["worker"] == "doomed"
    finally:
        proc.kill()
        await proc.wait()

    worker = await workers.start(claim_idle_ms=300, claim_interval_ms=50)
    rest = await collect(client, lambda rs: finals_for(rs, [package_id]))

    got = first + rest
    assert worker.stats.reclaimed == 1
    assert sum(r.terminal for r in got) == 1 and got[-1].kind == "final"
    assert got[-1].data is not None and got[-1].data["timer_s"] == 3
    # The takeover continued the package's seq: strictly increasing, no gap-filling repeats.
    seqs = [r.seq for r in got]
    assert seqs == sorted(set(seqs))
    assert [r.data["worker"] for r in got if r.kind == "started"] == [  # type: ignore[index]
        "doomed",
        worker.consumer,
    ]
    raw = await stream_results(redis_client, keys.results(client.call_id))
    assert terminal_counts(raw) == {package_id: 1}
    await wait_for(lambda: _zero(pending_count(redis_client, keys)), what="ack")
    await client.close()


async def test_final_written_but_not_acked_is_not_run_again(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    """A worker that died between writing its final and XACK: the next one only acks."""
    await ensure_group(redis_client, keys)
    call_id = f"call-{unique}"
    package = ContextPackage.new(call_id, "what is 2+2", CONVERSATION, 4)
    await publish(redis_client, keys, package)
    await redis_client.xreadgroup(keys.group, "ghost", {keys.ctx: ">"}, count=1)
    scripts = Scripts(redis_client)
    assert await emit(scripts, keys, call_id, package.package_id, "started", "") == 0
    assert await emit(scripts, keys, call_id, package.package_id, "final", "2+2 = 4") == 1

    worker = await workers.start(claim_idle_ms=300, claim_interval_ms=50)
    await wait_for(lambda: _zero(pending_count(redis_client, keys)), what="ack")

    assert worker.stats.already_done == 1 and worker.stats.finished == 0
    raw = await stream_results(redis_client, keys.results(call_id))
    assert [(r.seq, r.kind) for r in raw] == [(0, "started"), (1, "final")]


async def test_too_many_deliveries_goes_to_dead_letter_with_error_result(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    await ensure_group(redis_client, keys)
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    package_id = await client.submit("what is 1+1", CONVERSATION, microturn=2)
    assert await client.flush(WAIT_S)
    taken: Any = await redis_client.xreadgroup(keys.group, "crasher-1", {keys.ctx: ">"}, count=1)
    entry_id = taken[0][1][0][0]
    for n in (2, 3):  # two more consumers took it and crashed too: delivered 3 times
        await redis_client.xclaim(keys.ctx, keys.group, f"crasher-{n}", 0, [entry_id])

    worker = await workers.start(max_deliveries=3, claim_idle_ms=300, claim_interval_ms=50)
    got = await collect(client, lambda rs: finals_for(rs, [package_id]))

    assert [r.kind for r in got] == ["error"]
    assert "after 3 attempts" in got[0].text
    # The error result goes first, then the dead letter and the ack.
    await wait_for(lambda: _zero(pending_count(redis_client, keys)), what="ack")
    dead: Any = await redis_client.xrange(keys.dead)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"reason"].startswith(b"max_deliveries")
    assert fields[b"deliveries"] == b"4"
    assert json.loads(fields[b"package"])["package_id"] == package_id
    assert worker.stats.dead_lettered == 1
    await client.close()


async def test_poison_packages_are_dead_lettered_acked_with_a_reason(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    call_id = f"call-{unique}"
    good = ContextPackage.new(call_id, "what is 3*3", CONVERSATION, 1)
    v2 = {**good.to_wire(), "v": 2, "package_id": "pkg-v2"}
    bad_role = good.to_wire()
    bad_role["package_id"] = "pkg-bad-role"
    bad_role["conversation"] = [{"microturn": 1, "role": "robot", "kind": "text", "text": "x"}]
    no_request = {k: v for k, v in good.to_wire().items() if k != "request"}
    no_request["package_id"] = "pkg-no-request"
    poison: list[dict[str, Any]] = [
        {"package": "{this is not json"},
        {"package": json.dumps(v2)},
        {"package": json.dumps(bad_role)},
        {"package": json.dumps(no_request)},
        {"package": "[1, 2, 3]"},
        {"something": "else"},
    ]
    worker = await workers.start()
    for fields in poison:
        await redis_client.xadd(keys.ctx, cast(Any, fields))
    await publish(redis_client, keys, good)

    client = AgentClient(redis_client, call_id, keys=keys)
    got = await collect(client, lambda rs: finals_for(rs, [good.package_id, "pkg-v2"]))

    async def all_dead() -> bool:
        return int(await redis_client.xlen(keys.dead)) == len(poison)

    await wait_for(all_dead, what="dead letters")
    dead: Any = await redis_client.xrange(keys.dead)
    reasons = sorted(f[b"reason"].decode().split(":")[0] for _id, f in dead)
    assert reasons == sorted(
        ["bad_json", "unsupported_version", "bad_field", "missing_field", "not_object",
         "missing_field"]
    )  # fmt: skip
    assert all(f[b"deliveries"] == b"1" for _id, f in dead)
    assert {f[b"package"] for _id, f in dead} >= {b"{this is not json", b"[1, 2, 3]"}
    assert await pending_count(redis_client, keys) == 0
    assert worker.stats.dead_lettered == len(poison)
    # The wrong-version package named its call and id: that call is told it failed.
    v2_results = [r for r in got if r.package_id == "pkg-v2"]
    assert [r.kind for r in v2_results] == ["error"]
    assert "unsupported_version" in v2_results[0].text
    # And the worker went on with good work.
    assert [r.kind for r in got if r.package_id == good.package_id] == ["started", "final"]
    await client.close()


async def test_two_workers_never_both_finish_a_package(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    """Aggressive reclaiming (idle 150 ms, rare heartbeats) makes workers steal each other's
    running timers, and some packages are published twice; each still finishes exactly once."""
    settings: dict[str, Any] = {
        "concurrency": 20,  # always free slots, so idle running entries get stolen
        "claim_idle_ms": 150,
        "claim_interval_ms": 30,
        "heartbeat_interval_ms": 5000,
        "max_deliveries": 1000,
    }
    w1 = await workers.start(consumer_name="w1", **settings)
    w2 = await workers.start(consumer_name="w2", **settings)
    calls = [AgentClient(redis_client, f"call-{unique}-{i}", keys=keys) for i in range(3)]
    ids: dict[str, list[str]] = {c.call_id: [] for c in calls}
    for i in range(24):
        call = calls[i % 3]
        text = "set a timer for 1 second" if i % 2 == 0 else f"what is {i}*{i}"
        package = ContextPackage.new(call.call_id, text, CONVERSATION, i)
        await publish(redis_client, keys, package)
        if i % 3 == 0:
            await publish(redis_client, keys, package)  # a publisher retry wrote it twice
        ids[call.call_id].append(package.package_id)

    for call in calls:
        got = await collect(
            call, functools.partial(finals_for, package_ids=ids[call.call_id]), timeout_s=WAIT_S * 2
        )
        assert sum(r.terminal for r in got) == len(ids[call.call_id])
        raw = await stream_results(redis_client, keys.results(call.call_id))
        assert terminal_counts(raw) == dict.fromkeys(ids[call.call_id], 1)
        for pid in ids[call.call_id]:
            seqs = [r.seq for r in raw if r.package_id == pid]
            assert seqs == sorted(set(seqs)), f"{pid}: seq must strictly increase: {seqs}"
        await call.close()

    finished = sum(w.stats.finished + w.stats.failed for w in (w1, w2))
    assert finished == 24
    assert w1.stats.reclaimed + w2.stats.reclaimed > 0, "the test should have caused steals"
    await wait_for(lambda: _zero(pending_count(redis_client, keys)), what="all acked")


async def test_worker_process_stops_cleanly_on_sigterm(
    redis_client: aioredis.Redis, redis_url: str, keys: StreamKeys, unique: str
) -> None:
    prefix = keys.ctx.removesuffix(":ctx")
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "--key-prefix",
        prefix,
        "--concurrency",
        "2",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client = AgentClient(redis_client, f"call-{unique}", keys=keys)
    try:
        package_id = await client.submit("what is 7*8", CONVERSATION, microturn=1)
        got = await collect(client, lambda rs: finals_for(rs, [package_id]))
        assert "56" in got[-1].text
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), WAIT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0
    assert proc.stdout is not None and proc.stderr is not None
    out = (await proc.stdout.read()).decode()
    err = (await proc.stderr.read()).decode()
    assert "consuming" in out
    assert "stopped" in err and "Traceback" not in err
    # It left the group tidy: no pending entries and no consumer left behind.
    assert await pending_count(redis_client, keys) == 0
    consumers: Any = await redis_client.xinfo_consumers(keys.ctx, keys.group)
    assert consumers == []
    await client.close()


async def test_script_cache_loss_is_survived(
    redis_client: aioredis.Redis, keys: StreamKeys, workers: Workers, unique: str
) -> None:
    """A Redis that forgot its scripts (restarted without persistence, SCRIPT FLUSH): the
    worker reloads EMIT, alone and in a pipelined batch."""
    await workers.start(concurrency=16)
    client = AgentClient(redis_client, f"call-{unique}", keys=keys, max_in_flight=64)
    first = await client.submit("what is 1+1", CONVERSATION, 1)
    await collect(client, lambda rs: finals_for(rs, [first]))
    for round_ in range(2):
        await redis_client.script_flush()
        ids = [await client.submit(f"what is {i}*{round_}", CONVERSATION, i) for i in range(12)]
        got = await collect(client, functools.partial(finals_for, package_ids=ids))
        assert {r.package_id for r in got if r.kind == "final"} == set(ids)
    await client.close()
