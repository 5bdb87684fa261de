"""A peer that sends video of an absurd shape: the call goes on, on time, and the server stays
responsive (the frame is scaled within a cap, off the event loop)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from media.synthetic import MovingSquareTrack, tone
from signaling.client import CallClient
from tests.conftest import MakeServer


async def test_video_of_16382x2_pixels_costs_the_call_nothing(make_server: MakeServer) -> None:
    server = await make_server()
    url = str(server.make_url("")).rstrip("/")
    video = MovingSquareTrack(width=16382, height=2, fps=15)
    async with CallClient(url, audio=tone(), video=video) as call:
        await call.wait_event("session.created", timeout=60)

        async def frames_used() -> None:
            while (await call.status())["video_frames_used"] < 10:
                await asyncio.sleep(0.2)

        await asyncio.wait_for(frames_used(), 60)
        before = await call.status()
        slowest = 0.0
        async with aiohttp.ClientSession() as session:
            for _ in range(40):  # ~4 s of calls, /healthz every 100 ms
                started = time.monotonic()
                async with session.get(f"{url}/healthz") as resp:
                    assert resp.status == 200
                slowest = max(slowest, time.monotonic() - started)
                await asyncio.sleep(0.1)
        after = await call.status()
        assert after["state"] == "active"
        assert after["video_frames_used"] > before["video_frames_used"]
        assert after["late_steps"] == before["late_steps"], (before, after)
        assert slowest < 0.25, f"/healthz took {slowest * 1000:.0f} ms"
        await call.hang_up()
