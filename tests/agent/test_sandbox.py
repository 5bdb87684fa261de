"""The tool sandbox: CPU work in child processes with a hard time limit, the loop never waits."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from agent.backends.tool_types import ToolError
from agent.backends.tools import Toolbox
from agent.sandbox import Sandbox, SandboxError


def spin(seconds: float) -> str:
    """Busy for `seconds` of CPU (holds the GIL of whatever process runs it)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "spun"


def pid() -> int:
    return os.getpid()


def refuse() -> None:
    raise ToolError("no, thank you")


def hog_memory() -> int:
    return len(bytearray(4 * 1024**3))


async def test_work_runs_in_another_process_and_comes_back() -> None:
    sandbox = Sandbox(processes=1)
    try:
        assert await sandbox.call(pid) != os.getpid()
        assert await sandbox.call(spin, 0.01) == "spun"
    finally:
        await sandbox.aclose()


async def test_work_past_the_time_limit_is_killed_and_the_loop_never_waits() -> None:
    sandbox = Sandbox(processes=1, timeout_s=0.5)
    try:
        first_child = await sandbox.call(pid)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        counting = asyncio.create_task(ticker())
        started = time.monotonic()
        with pytest.raises(SandboxError, match="took too long"):
            await sandbox.call(spin, 30.0)
        elapsed = time.monotonic() - started
        counting.cancel()
        assert elapsed < 10.0, "the limit ends the wait, not the work's own end"
        assert ticks >= 10, "the event loop kept running while the child spun"
        assert sandbox.killed == 1
        assert await sandbox.call(pid) != first_child, "a fresh child took the killed one's place"
    finally:
        await sandbox.aclose()


def echo(value: int) -> int:
    time.sleep(0.2)
    return value


async def test_a_caller_cancelled_mid_request_never_gets_its_reply_to_the_next_caller() -> None:
    sandbox = Sandbox(processes=1)
    try:
        first = asyncio.create_task(sandbox.call(echo, 1))
        await asyncio.sleep(0.05)  # sent, not answered
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert await sandbox.call(echo, 2) == 2
        assert await sandbox.call(echo, 3) == 3
        assert sandbox.killed == 1, "the child out of step was replaced"
    finally:
        await sandbox.aclose()


async def test_tool_errors_and_memory_hogs_come_back_as_tool_errors() -> None:
    sandbox = Sandbox(processes=1, memory_bytes=512 * 1024**2)
    try:
        with pytest.raises(ToolError, match="no, thank you"):
            await sandbox.call(refuse)
        with pytest.raises(ToolError, match="memory"):
            await sandbox.call(hog_memory)
        assert await sandbox.call(spin, 0.0) == "spun", "the child survives a refused allocation"
    finally:
        await sandbox.aclose()


async def test_the_toolbox_calculates_in_the_sandbox_with_bounded_functions() -> None:
    toolbox = Toolbox(sandbox=Sandbox(processes=1, timeout_s=5.0))
    try:

        async def calc(expression: str) -> str:
            events = [e async for e in toolbox.invoke("calculate", {"expression": expression})]
            return events[-1].text

        assert await calc("12*7") == "12*7 = 84"
        assert await calc("round(1234.5678, 2)") == "round(1234.5678, 2) = 1234.57"
        for hostile in ["round(1,-30000000)", "round(1, 10**9)", "(-8) ** 0.5", "9**9999*9**9999"]:
            with pytest.raises(ToolError):
                await calc(hostile)
        assert toolbox.sandbox.killed == 0, "bounded: refused at once, not killed at the limit"
    finally:
        await toolbox.aclose()
