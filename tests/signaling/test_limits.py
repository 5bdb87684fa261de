"""Call limits: event rate, idle peers, calls that never connect, maximum duration, goodbyes."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCPeerConnection

from media.synthetic import tone
from signaling.client import CallClient
from signaling.keys import CALLS
from tests.conftest import MakeServer

CONNECT_S = 60.0


def base_of(server) -> str:
    return str(server.make_url("")).rstrip("/")


async def wait_until(predicate, timeout: float = 60.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


async def test_a_flood_of_events_is_rate_limited_and_the_call_goes_on(
    make_server: MakeServer,
) -> None:
    server = await make_server(events_per_s=10.0)
    async with CallClient(base_of(server), audio=tone()) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        for i in range(300):
            call.send("input_text", text=f"spam {i}")
        error = await call.wait_event("error", lambda e: e["code"] == "rate_limited")
        assert "dropped" in error["message"]
        status = await call.status()
        assert status["state"] == "active" and status["events_dropped"] > 0
        limited = [e for e in call.events if e.get("code") == "rate_limited"]
        assert len(limited) <= 3, "one rate_limited error a second, not one per message"
        await call.hang_up()


async def test_a_peer_that_goes_silent_is_ended_as_idle(make_server: MakeServer) -> None:
    server = await make_server(idle_timeout_s=2.0)
    mic = tone()
    async with CallClient(base_of(server), audio=mic) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        mic.stop()  # the peer stops sending anything: as a vanished browser would
        ended = await call.wait_event("session.ended", timeout=CONNECT_S)
        assert ended["reason"].startswith("idle")
        await wait_until(lambda: server.app[CALLS].get(call.call_id or "") is None)


async def test_a_call_that_never_connects_is_freed(make_server: MakeServer) -> None:
    server = await make_server(connect_timeout_s=1.0)
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url("/v1/calls"),
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            location = resp.headers["Location"]
    await pc.close()  # we never apply the answer: ICE cannot complete
    registry = server.app[CALLS]
    assert len(registry) == 1
    await wait_until(lambda: len(registry) == 0, timeout=30)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(location)) as resp:
            assert resp.status == 404


async def test_calls_end_at_their_maximum_duration_with_a_goodbye(make_server: MakeServer) -> None:
    server = await make_server(max_call_s=2.0)
    async with CallClient(base_of(server), audio=tone()) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        ended = await call.wait_event("session.ended", timeout=CONNECT_S)
        assert "maximum call duration" in ended["reason"]
