"""Whole calls over real aiortc peer connections on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from infra.embedded_redis import EmbeddedRedis
from media.synthetic import MovingSquareTrack, tone
from signaling.client import CallClient, CallRefused
from signaling.keys import CALLS
from tests.conftest import MakeServer

CONNECT_S = 30.0  # generous: a loaded 2-core CI machine


async def wait_until(predicate, timeout: float = CONNECT_S, every: float = 0.1) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(every)

    await asyncio.wait_for(loop(), timeout)


async def test_a_call_end_to_end(server: TestServer) -> None:
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone(440), video=MovingSquareTrack()) as call:
        created = await call.wait_event("session.created", timeout=CONNECT_S)
        assert created["call_id"] == call.call_id
        assert created["microturn_ms"] == 200 and created["model"]

        before = (await call.status())["microturns"]
        call.send("input_text", text="hello there")
        # the server says in which micro-turn the typed message joined the model's input
        committed = await call.wait_event("input_text.committed")
        assert committed["chars"] == len("hello there")
        assert committed["microturn"] >= before
        call.send_raw("{not json")
        call.send("no.such.event")
        bad = await call.wait_event("error", lambda e: e["code"] == "invalid_json")
        unknown = await call.wait_event("error", lambda e: e["code"] == "unknown_event")
        assert bad["message"] and unknown["message"]

        # The call keeps running after bad input: micro-turns keep coming, audio keeps playing.
        async def enough_turns() -> bool:
            return (await call.status())["microturns"] >= 15

        await wait_until(enough_turns)
        status = await call.status()
        assert status["state"] == "active"
        assert status["video_frames_used"] > 0, "the camera's frames reach the model"
        assert set(status) >= {"created_at", "late_steps", "audio_gaps", "agent_tasks"}

        async def heard_model() -> bool:
            audio = call.received_audio(last_s=2.0)
            return len(audio) > 0 and float(np.sqrt(np.mean(audio**2))) > 0.003

        await wait_until(heard_model)
        assert not [e for e in call.events if e.get("code") == "internal_error"]

        assert await call.hang_up() == 204
        async with aiohttp.ClientSession() as http:
            async with http.get(call.location or "") as resp:
                assert resp.status == 404


async def test_at_capacity_new_calls_get_503_with_retry_after(make_server: MakeServer) -> None:
    server = await make_server(max_calls=1)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as first:
        await first.wait_event("session.created", timeout=CONNECT_S)
        with pytest.raises(CallRefused) as info:
            await CallClient(base, audio=tone()).connect()
        assert info.value.status == 503
        assert info.value.code == "at_capacity"
        assert int(info.value.headers["Retry-After"]) > 0
        await first.hang_up()
    # the slot is free again
    async with CallClient(base, audio=tone()) as again:
        await again.wait_event("session.created", timeout=CONNECT_S)
        await again.hang_up()


async def test_a_call_without_camera_works(server: TestServer) -> None:
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)

        async def turns() -> bool:
            return (await call.status())["microturns"] >= 5

        await wait_until(turns)
        assert (await call.status())["video_frames_used"] == 0
        await call.hang_up()


async def test_the_calls_of_a_process_share_their_clock_grid_and_playout(
    server: TestServer,
) -> None:
    """One event loop and one engine delay every call's outputs alike: their playout cushions
    learn from one shared peak (media/audio_out.LoopJitter); and every call's micro-turns end on
    one 200 ms grid, so the engine steps them together."""
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as a, CallClient(base, audio=tone()) as b:
        await a.wait_event("session.created", timeout=CONNECT_S)
        await b.wait_event("session.created", timeout=CONNECT_S)
        assert a.call_id is not None and b.call_id is not None
        first, second = server.app[CALLS].get(a.call_id), server.app[CALLS].get(b.call_id)
        assert first is not None and second is not None
        assert first.playout is not None and first.playout is second.playout
        # and their micro-turns are cut at the same instants (one batched step for both)
        assert first.clock is not None and second.clock is not None
        phase = (first.clock.t0 - second.clock.t0) / 0.2
        assert abs(phase - round(phase)) < 1e-6, (first.clock.t0, second.clock.t0)
        status = await a.status()
        assert status["audio_underruns_audible"] <= status["audio_underruns"]
        await a.hang_up()
        await b.hang_up()


async def test_ask_runs_a_background_task_and_weaves_the_result(make_server: MakeServer) -> None:
    server = await make_server(agent_workers=1)
    base = str(server.make_url("")).rstrip("/")
    async with CallClient(base, audio=tone()) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        call.send("input_text", text="/ask what is 12*7")
        queued = await call.wait_event("agent.task", lambda e: e["status"] == "queued")
        done = await call.wait_event(
            "agent.task", lambda e: e["status"] == "done" and e["task_id"] == queued["task_id"]
        )
        assert "84" in done["text"]
        statuses = [e["status"] for e in call.events if e.get("type") == "agent.task"]
        assert statuses.index("queued") < statuses.index("done")
        status = await call.status()
        assert status["agent_tasks"] == 1
        # the model receives the result as text input at a micro-turn boundary
        assert call.call_id is not None
        served = server.app[CALLS].get(call.call_id)
        assert served is not None
        assert any(t.role == "agent" and "84" in t.text for t in served.transcript)
        await call.hang_up()


async def test_ask_with_the_default_embedded_redis_on_a_unix_socket(
    make_server: MakeServer,
) -> None:
    """`make run`'s path: the private Redis listens on a unix socket, workers run in-process."""
    with EmbeddedRedis() as private:
        server = await make_server(redis_url=private.url, agent_workers=1)
        base = str(server.make_url("")).rstrip("/")
        async with CallClient(base, audio=tone()) as call:
            await call.wait_event("session.created", timeout=CONNECT_S)
            call.send("input_text", text="/ask what is 6*7")
            done = await call.wait_event("agent.task", lambda e: e["status"] == "done")
            assert "42" in done["text"]
            await call.hang_up()
        await server.close()
