"""Hostile background work against live servers (real peers, real Redis, real workers).

- The most expensive requests we could find, sent together from one call, cost another call
  nothing: its micro-turns stay on time and `/healthz` answers promptly throughout.
- Tasks that only wait (timers) do not hold the worker's slots; a call has a limit on tasks in
  flight; a call's tasks stop, and leave Redis, when the call ends.
- Redis stays bounded: finished packages are deleted, packages are capped in size, results of
  ended calls expire, the embedded Redis has a memory limit that never evicts.
- Poison packages and poison results are dead-lettered or skipped; nothing dies of them.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from agent.bus import StreamKeys
from agent.types import MAX_CONVERSATION_CHARS, MAX_PACKAGE_BYTES
from infra.embedded_redis import free_port
from media.synthetic import tone
from signaling.client import CallClient
from tests.browser.harness import ARTIFACTS, ServerProcess
from tests.conftest import MakeServer

KEYS = StreamKeys()  # the servers under test use the contract's key names

EXPENSIVE = [
    "/ask what is round(1,-30000000)",
    "/ask what is round(1, -1000) * round(7, -1000)",
    "/ask what is 9**9**9",
    "/ask what is factorial(1000) * factorial(1000) / factorial(999)",
    "/ask what time in " + "in " * 1300 + "1",
    "/ask what is " + "1" * 3900 + "% of",
    "/ask " + "timer " * 600,
    "/ask search notes " + "notes " * 600 + "x",
]


class HealthProbe:
    """GET /healthz every 50 ms from its own thread (plain sockets, no event loop of ours in the
    way); remembers the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest_s = 0.0
        self.probes = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as resp:
                    resp.read()
            except OSError as exc:
                self.failures.append(repr(exc))
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.probes += 1
            self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def terminal(event: dict[str, Any]) -> bool:
    return event.get("type") == "agent.task" and event.get("status") in {"done", "failed"}


async def test_the_most_expensive_requests_cost_another_call_nothing(
    untrained_checkpoint: Path,
) -> None:
    server = ServerProcess(
        free_port(),
        args=["--model", str(untrained_checkpoint)],
        log_path=ARTIFACTS / "hostile-background.log",
    )
    server.start()
    try:
        async with (
            CallClient(server.url, audio=tone()) as victim,
            CallClient(server.url, audio=tone()) as attacker,
        ):
            await victim.wait_event("session.created", timeout=60)
            await attacker.wait_event("session.created", timeout=60)
            await asyncio.sleep(2.0)  # both calls streaming
            before = await victim.status()
            with HealthProbe(server.url) as probe:
                for request in EXPENSIVE:
                    attacker.send("input_text", text=request)

                async def all_answered() -> None:
                    while sum(terminal(e) for e in attacker.events) < len(EXPENSIVE):
                        await asyncio.sleep(0.2)

                await asyncio.wait_for(all_answered(), 60)
                await asyncio.sleep(2.0)  # and a little after
            after = await victim.status()
            assert probe.probes >= 20 and not probe.failures, probe.failures[:3]
            assert probe.slowest_s < 0.100, f"/healthz took {probe.slowest_s * 1000:.0f} ms"
            assert after["microturns"] - before["microturns"] >= 10, (before, after)
            assert after["late_steps"] == before["late_steps"], (before, after)
            assert (await attacker.status())["state"] == "active"
        # The embedded Redis is bounded and evicts nothing that is waiting.
        socket = re.search(r"unix://(\S+/redis\.sock)", server.log())
        assert socket, server.log()[-2000:]
        redis = aioredis.Redis(unix_socket_path=socket.group(1))
        try:
            memory: Any = await redis.config_get("maxmemory*")
        finally:
            await redis.aclose()
        memory = {_text(k): _text(v) for k, v in memory.items()}
        assert int(memory["maxmemory"]) > 0
        assert memory["maxmemory-policy"] == "noeviction"
    finally:
        server.stop()


async def entries(redis: aioredis.Redis, key: str) -> list[tuple[str, dict[bytes, bytes]]]:
    reply: Any = await redis.xrange(key, "-", "+")
    return [(entry_id.decode(), fields) for entry_id, fields in reply]


async def package_ids_of(redis: aioredis.Redis, call_id: str) -> list[str]:
    """Entry ids of this call's packages still in the ctx stream."""
    return [
        entry_id
        for entry_id, fields in await entries(redis, KEYS.ctx)
        if json.loads(fields[b"package"]).get("call_id") == call_id
    ]


async def test_waiting_tasks_hold_no_slot_are_limited_per_call_and_stop_with_their_call(
    make_server: MakeServer, redis_client: aioredis.Redis
) -> None:
    server = await make_server(agent_workers=1)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as timers, CallClient(base, audio=tone()) as other:
        await timers.wait_event("session.created", timeout=60)
        await other.wait_event("session.created", timeout=60)
        for i in range(6):  # more than the worker's 4 slots
            timers.send("input_text", text=f"/ask set a timer for {600 + i} seconds")

        async def timers_running(n: int) -> None:
            while sum(1 for e in timers.events if e.get("status") == "partial") < n:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(timers_running(6), 60)
        other.send("input_text", text="/ask what is 12*7")
        done = await other.wait_event("agent.task", lambda e: e["status"] == "done", timeout=30)
        assert "84" in done["text"], "six waiting timers do not block another call's work"

        for i in range(3):  # 6 + 2 reach the per-call limit of 8; the 9th is refused
            timers.send("input_text", text=f"/ask set a timer for {700 + i} seconds")
        refused = await timers.wait_event(
            "agent.task", lambda e: e["status"] == "failed", timeout=30
        )
        assert refused["data"]["reason"] == "too_many_tasks", refused
        assert "not started" in refused["text"]
        assert timers.call_id is not None
        assert len(await package_ids_of(redis_client, timers.call_id)) == 8
        await timers.hang_up()

        async def gone() -> None:
            assert timers.call_id is not None
            while await package_ids_of(redis_client, timers.call_id):
                await asyncio.sleep(0.5)

        await asyncio.wait_for(gone(), 45)  # stopped, acked and deleted: nothing left pending
        assert await redis_client.exists(KEYS.ended(timers.call_id))
        assert 0 < await redis_client.ttl(KEYS.results(timers.call_id)) <= KEYS.ended_results_ttl_s
        # The finished calculation left nothing behind either.
        assert other.call_id is not None
        assert await package_ids_of(redis_client, other.call_id) == []


async def test_a_long_conversation_makes_a_package_of_bounded_size(
    make_server: MakeServer, redis_client: aioredis.Redis
) -> None:
    server = await make_server(agent_workers=0, events_per_s=100.0)  # the package stays queued
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=60)
        for i in range(40):
            call.send("input_text", text=f"{i} " + "a long ramble, " * 260)  # ~3,900 chars
        call.send("input_text", text="/ask what is 2+2")
        await call.wait_event("agent.task", lambda e: e["status"] == "queued", timeout=30)
        assert call.call_id is not None

        async def published() -> list[Any]:
            while True:
                for _id, fields in await entries(redis_client, KEYS.ctx):
                    package = json.loads(fields[b"package"])
                    if package["call_id"] == call.call_id:
                        return [fields[b"package"], package]
                await asyncio.sleep(0.1)

        raw, package = await asyncio.wait_for(published(), 30)
        assert len(raw) <= MAX_PACKAGE_BYTES
        chars = sum(len(turn["text"]) for turn in package["conversation"])
        assert 0 < chars <= MAX_CONVERSATION_CHARS, chars
        assert package["conversation"][-1]["text"] == "/ask what is 2+2", "the newest turns kept"
        await call.hang_up()


POISON_PACKAGES = {
    "huge integer": b'{"v":1,"package_id":"p1","call_id":"c","created_at":1,"microturn":'
    + b"9" * 5000
    + b',"request":{"text":"x"},"conversation":[]}',
    "NaN timestamp": b'{"v":1,"package_id":"p2","call_id":"c","created_at":NaN,"microturn":1,'
    b'"request":{"text":"x"},"conversation":[]}',
    "deep nesting": b'{"v":1,"package_id":"p3","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "not UTF-8": b'{"v":1,"package_id":"\xff\xfe","call_id":"c"}',
    "surrogate in a turn": b'{"v":1,"package_id":"p5","call_id":"c","created_at":1,"microturn":1,'
    b'"request":{"text":"x"},"conversation":[{"microturn":1,"role":"user","kind":"text",'
    b'"text":"\\ud800"}]}',
}
POISON_RESULTS = [
    b'{"package_id":"x","seq":' + b"9" * 5000 + b',"kind":"final","text":"t"}',
    b'{"package_id":"x","seq":NaN,"kind":"final","text":"t"}',
    b"[" * 5000 + b"]" * 5000,
    b"\xff\xfe not json",
    b'{"package_id":"x","seq":1,"kind":"final","text":"\\ud800 lone"}',
]


async def test_poison_packages_are_dead_lettered_and_poison_results_skipped(
    make_server: MakeServer, redis_client: aioredis.Redis
) -> None:
    server = await make_server(agent_workers=1)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=60)
        call.send("input_text", text="/ask what is 1+1")  # the worker is up and consuming
        await call.wait_event("agent.task", lambda e: e["status"] == "done", timeout=60)
        ids = {
            _text(await redis_client.xadd(KEYS.ctx, {"package": raw})): name
            for name, raw in POISON_PACKAGES.items()
        }

        async def all_dead() -> None:
            while True:
                found = {
                    f[b"entry_id"].decode() for _i, f in await entries(redis_client, KEYS.dead)
                }
                if set(ids) <= found:
                    return
                await asyncio.sleep(0.2)

        await asyncio.wait_for(all_dead(), 30)
        assert not set(ids) & {e for e, _f in await entries(redis_client, KEYS.ctx)}
        # Poison in this call's own results stream: its reader skips it and goes on.
        assert call.call_id is not None
        for raw in POISON_RESULTS:
            await redis_client.xadd(KEYS.results(call.call_id), {"result": raw})
        call.send("input_text", text="/ask what is 6*7")
        done = await call.wait_event(
            "agent.task", lambda e: e["status"] == "done" and "42" in e.get("text", ""), timeout=60
        )
        assert done
        assert not [e for e in call.events if e.get("code") == "internal_error"]
        assert (await call.status())["state"] == "active"
        await call.hang_up()
