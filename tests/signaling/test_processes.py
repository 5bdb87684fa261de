"""`microturn serve --processes 2` as a user runs it: two media processes on one port (with a
`microturn infer` child for the echo model and an embedded Redis, all started by the server
itself), real aiortc calls. With --max-calls 2 each process holds one call, so the second offer
lands on the other process whichever one the kernel handed it to; GET and DELETE through the
public Location reach the owner from either process (new connections each time, until both
paths were taken); an unknown id is 404; a third offer is 503 from either process; /metrics and
/readyz speak for both; a resume re-offered on a new connection reaches the call's process."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.embedded_redis import free_port
from media.synthetic import tone
from signaling.client import CallClient, CallRefused
from signaling.siblings import VIA
from tests.browser.harness import ARTIFACTS, ServerProcess

WAIT_S = 60.0
TRIES = 40  # fresh connections per check: the kernel picks the process (2^-40 to miss one)


@asynccontextmanager
async def fresh_connections() -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose every request opens a new TCP connection (so any process may take it)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        yield http


async def both_paths(http: aiohttp.ClientSession, url: str) -> list[tuple[int, dict[str, object]]]:
    """GET `url` on new connections until one was answered by the process that took the
    connection and one was forwarded by the other; every answer (status, body)."""
    answers, paths = [], set()
    for _ in range(TRIES):
        async with http.get(url) as resp:
            answers.append((resp.status, await resp.json()))
            paths.add(resp.headers.get(VIA) is not None)
        if paths == {True, False}:
            return answers
    raise AssertionError(f"{url}: in {TRIES} connections only {paths} (forwarded?) were seen")


async def test_two_media_processes_behind_one_port() -> None:
    server = ServerProcess(
        free_port(),
        args=["--processes", "2", "--model", "echo", "--max-calls", "2", "--agent-workers", "0"],
        log_path=ARTIFACTS / "processes-server.log",
    )
    loop = asyncio.get_running_loop()
    calls: list[CallClient] = []
    try:
        await loop.run_in_executor(None, server.start)  # ready: both processes answer
        for _ in range(2):
            call = CallClient(server.url, audio=tone())
            calls.append(call)
            await call.connect()
            await call.wait_event("session.created", timeout=WAIT_S)
        owners = {(await c.status())["process"] for c in calls}
        assert owners == {0, 1}  # one slot each: the second offer went to the other process

        async with fresh_connections() as http:
            for call in calls:
                assert call.location is not None
                for status, body in await both_paths(http, call.location):
                    assert status == 200 and body["call_id"] == call.call_id
            for status, body in await both_paths(http, f"{server.url}/v1/calls/nosuchcall00"):
                assert status == 404 and body["error"]["code"] == "call_not_found"  # type: ignore[index]

            # A resume (an SDP offer with the resume token) reaches the owner too: each call
            # re-offers three times on new connections (a forwarded resume in 6 tries but 2^-6).
            for call in calls:
                for _ in range(3):
                    mark = len(call.events)
                    await call.drop()
                    assert call._session is not None
                    await call._session.close()
                    call._session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True)
                    )
                    await call.resume()
                    resumed = await call.wait_event("session.created", timeout=WAIT_S, after=mark)
                    assert resumed["resumed"] is True and resumed["call_id"] == call.call_id

            # Full everywhere: 503 whichever process takes the offer, and not ready.
            for _ in range(3):
                with pytest.raises(CallRefused) as refused:
                    async with CallClient(server.url, audio=tone()):
                        pass
                assert refused.value.status == 503 and refused.value.code == "at_capacity"
            async with http.get(f"{server.url}/readyz") as resp:
                assert resp.status == 503
                assert "at capacity" in (await resp.json())["reasons"]

            # One scrape shows both processes.
            async with http.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            active = {
                s.labels["process"]: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "microturn_calls_active"
            }
            assert active == {"0": 1.0, "1": 1.0}

            # DELETE through the Location, from whichever process: the owner ends it.
            for call in calls:
                assert call.location is not None
                async with http.delete(call.location) as resp:
                    assert resp.status == 204
                async with http.delete(call.location) as resp:
                    assert resp.status == 404
                await call.wait_event("session.ended", timeout=WAIT_S)
            # ready again once the inference worker's freed sessions show in its registration
            while (await http.get(f"{server.url}/readyz")).status != 200:
                await asyncio.sleep(0.1)

        # Room again: a new call is taken.
        again = CallClient(server.url, audio=tone())
        calls.append(again)
        await again.connect()
        await again.wait_event("session.created", timeout=WAIT_S)
        assert await again.hang_up() == 204
    finally:
        for call in calls:
            await call.close()
        code = await loop.run_in_executor(None, server.stop)
    assert code == 0
    assert "2 media processes" in server.log()  # the supervisor's announcement
    assert "Traceback" not in server.log()


def media_children(pid: int) -> set[int]:
    """The `microturn serve` children of the supervisor `pid` (its media processes)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                with open(f"/proc/{child}/cmdline", "rb") as cmd:
                    if b"signaling.cli\0serve" in cmd.read():
                        found.add(int(child))
    return found


async def test_a_media_process_that_dies_is_started_again() -> None:
    server = ServerProcess(
        free_port(),
        args=["--processes", "2", "--model", "echo", "--max-calls", "2", "--agent-workers", "0"],
        log_path=ARTIFACTS / "processes-restart-server.log",
    )
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, server.start)
        assert server.proc is not None
        while "Microturn is serving" not in server.log():  # the supervisor watches its children
            await asyncio.sleep(0.1)
        before = media_children(server.proc.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        async with fresh_connections() as http:
            # a new process in its place, and the server whole again: both take calls
            while len(after := media_children(server.proc.pid) - {victim}) < 2:
                assert server.proc.poll() is None, server.log()[-2000:]
                await asyncio.sleep(0.1)
            while (await http.get(f"{server.url}/readyz")).status != 200:
                await asyncio.sleep(0.1)
            # /readyz is ready while either process has room: wait until the new process answers
            # its siblings too (its samples in the merged /metrics), or the call it should take
            # finds no room anywhere
            while True:
                text = await (await http.get(f"{server.url}/metrics")).text()
                if 'process="0"' in text and 'process="1"' in text:
                    break
                await asyncio.sleep(0.1)
        calls = [CallClient(server.url, audio=tone()) for _ in range(2)]
        for call in calls:
            await call.connect()
            await call.wait_event("session.created", timeout=WAIT_S)
        assert {(await c.status())["process"] for c in calls} == {0, 1}
        for call in calls:
            assert await call.hang_up() == 204
            await call.close()
    finally:
        code = await loop.run_in_executor(None, server.stop)
    assert code == 0
    assert victim not in after
    assert "media process" in server.log() and "exited (code -9)" in server.log()
