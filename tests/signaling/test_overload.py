"""Admission by measured load: a loop that falls behind refuses new calls."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from signaling.keys import LOAD
from tests.conftest import MakeServer


async def test_a_lagging_event_loop_refuses_new_calls_and_says_why(make_server: MakeServer) -> None:
    server = await make_server(max_loop_lag_ms=80.0)
    monitor = server.app[LOAD]
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(1.2)  # a healthy loop: ready
        assert not monitor.overloaded
        async with http.get(server.make_url("/readyz")) as resp:
            assert resp.status == 200
        for _ in range(20):  # something hogs the loop (as too many calls would)
            time.sleep(0.15)  # noqa: ASYNC251 (blocking the loop is the point)
            await asyncio.sleep(0)
        assert monitor.overloaded, monitor.lag_p95_ms
        async with http.post(
            server.make_url("/v1/calls"),
            data="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["error"]["code"] == "at_capacity"
            assert "real-time capacity" in body["error"]["message"]
            assert resp.headers["Retry-After"]
        async with http.get(server.make_url("/readyz")) as resp:
            assert resp.status == 503
            assert any("overloaded" in r for r in (await resp.json())["reasons"])
