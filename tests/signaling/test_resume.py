"""Calls that survive the network: the client's peer connection dies without DELETE, the client
re-offers with its resume token within the window, and the call goes on on the same engine
session (same conversation, same background tasks and results, the model's own state: a "hello
every 2 seconds" typed before keeps its period). Real aiortc peers, real engine, real Redis and an
in-process background worker; the scripted talker model (tests/signaling/talker.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from infra.config import Config
from media.synthetic import tone
from signaling.app import create_app
from signaling.call import Call
from signaling.client import CallClient, CallRefused
from signaling.keys import CALLS
from tests.signaling.talker import talker_engine

CONNECT_S = 30.0
PERIOD = 10  # micro-turns: "hello every 2 seconds"
ICE = ("stun:stun.example:3478", "turn:turn.example:3478?transport=udp")


@pytest.fixture
async def make_talker_server(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    engine = talker_engine()
    servers: list[TestServer] = []

    async def make(**overrides: Any) -> TestServer:
        settings = {"redis_url": redis_url, "agent_workers": 1, "max_loop_lag_ms": 0.0}
        config = Config.from_env({}, **{**settings, **overrides})
        server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            await server.close()
        engine.stop()


async def until(predicate: Callable[[], bool], timeout: float = CONNECT_S) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


def hellos(call: CallClient, after: int = 0) -> list[int]:
    return [
        e["microturn"]
        for e in call.events[after:]
        if e.get("type") == "output_text.delta" and e.get("text") == "hello "
    ]


def served(server: TestServer, call: CallClient) -> Call:
    found = server.app[CALLS].get(call.call_id or "")
    assert found is not None
    return found


async def scrape(server: TestServer, name: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/metrics")) as resp:
            text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


async def test_a_dropped_call_resumed_within_the_window_keeps_its_session(
    make_talker_server: Callable[..., Any],
) -> None:
    server = await make_talker_server(ice_servers=ICE, turn_secret="s3cret")
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone(amplitude=0.0)) as call:
        created = await call.wait_event("session.created", timeout=CONNECT_S)
        assert created["resume_token"] and created["resume_window_s"] == 15
        stun, turn = created["ice_servers"]
        assert stun == {"urls": ["stun:stun.example:3478"]}
        assert turn["urls"] == ["turn:turn.example:3478?transport=udp"]
        assert turn["username"].endswith(":" + (call.call_id or "")) and turn["credential"]

        call.send("input_text", text="say hello every 2 seconds")
        await until(lambda: len(hellos(call)) >= 2)
        first, second = hellos(call)[:2]
        assert second - first == PERIOD
        call.send("input_text", text="/ask set a timer for 3 seconds")
        queued = await call.wait_event("agent.task", lambda e: e["status"] == "queued")

        # The path dies: no DELETE. The server keeps the call (and its engine session) waiting.
        await call.drop()
        session = served(server, call)
        await until(lambda: session.suspended)
        before = max(hellos(call))
        await asyncio.sleep(0.5)  # a little time away; the clock and the model go on
        mark = len(call.events)
        await call.resume()
        again = await call.wait_event("session.created", timeout=CONNECT_S, after=mark)
        assert again["call_id"] == created["call_id"] and again["resumed"] is True
        assert again["resume_token"] != created["resume_token"], "a resume spends its token"
        assert again["microturn"] > before

        # The model kept its context: the hellos go on at their period, on the same clock.
        await until(lambda: len(hellos(call, mark)) >= 2)
        later = hellos(call, mark)
        assert all((m - first) % PERIOD == 0 for m in later), (first, later)
        assert later[0] > before
        # The background task started before the drop finishes into the resumed call.
        done = await call.wait_event(
            "agent.task", lambda e: e["status"] == "done" and e["task_id"] == queued["task_id"]
        )
        assert done["text"]
        assert session is served(server, call), "the same call object, slot and session"
        status = await call.status()
        assert status["state"] == "active" and status["resumes"] == 1
        assert status["suspended"] is False
        assert await scrape(server, "microturn_call_resumes_total") == 1
        texts = [t.text for t in session.transcript if t.role == "user"]
        assert texts[:2] == ["say hello every 2 seconds", "/ask set a timer for 3 seconds"]

        # The spent token opens nothing; the new one is the call's.
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{call.location}/resume",
                data="v=0\r\n",
                headers={
                    "Authorization": f"Bearer {created['resume_token']}",
                    "Content-Type": "application/sdp",
                },
            ) as refused:
                assert refused.status == 401
                assert (await refused.json())["error"]["code"] == "invalid_resume_token"
        assert await call.hang_up() == 204


async def test_a_call_nobody_resumes_ends_when_its_window_passes(
    make_talker_server: Callable[..., Any],
) -> None:
    server = await make_talker_server(resume_window_s=1.0)
    base = str(server.make_url("")).rstrip("/")
    call = CallClient(base, audio=tone(amplitude=0.0))
    await call.connect()
    try:
        await call.wait_event("session.created", timeout=CONNECT_S)
        session = served(server, call)
        await call.drop()
        await asyncio.wait_for(session.wait_closed(), CONNECT_S)
        assert len(server.app[CALLS]) == 0, "its slot is free again"
        with pytest.raises(CallRefused) as info:
            await call.resume()
        assert info.value.status == 404 and info.value.code == "call_not_found"
    finally:
        await call.close()


async def test_ice_servers_for_the_first_offer(make_talker_server: Callable[..., Any]) -> None:
    server = await make_talker_server(ice_servers=ICE, turn_secret="s3cret", turn_ttl_s=600)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/v1/ice-servers")) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["ttl_s"] == 600
    assert [s["urls"] for s in body["ice_servers"]] == [
        ["stun:stun.example:3478"],
        ["turn:turn.example:3478?transport=udp"],
    ]


async def test_a_call_waiting_for_a_resume_gives_its_slot_to_a_new_call(
    make_talker_server: Callable[..., Any],
) -> None:
    server = await make_talker_server(max_calls=1)
    base = str(server.make_url("")).rstrip("/")
    gone = CallClient(base, audio=tone(amplitude=0.0))
    await gone.connect()
    try:
        await gone.wait_event("session.created", timeout=CONNECT_S)
        session = served(server, gone)
        await gone.drop()
        await until(lambda: session.suspended)
        async with CallClient(base, audio=tone(amplitude=0.0)) as new:
            await new.wait_event("session.created", timeout=CONNECT_S)
            assert session.state == "closed" and len(server.app[CALLS]) == 1
            assert await new.hang_up() == 204
    finally:
        await gone.close()
