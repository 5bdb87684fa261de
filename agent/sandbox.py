"""CPU-bound tool work off the event loop, in child processes with a hard time limit.

    await sandbox.call(fn, *args)          # fn: a module-level function, args and result picklable
        idle child <- (fn, args) over a pipe; the loop waits on the pipe's fd (add_reader)
        answer within timeout_s            -> its result, or its ToolError re-raised here
        no answer within timeout_s         -> the child is killed and replaced; ToolError("took too long")

A background worker in `microturn serve` shares the event loop with every call's media. Python
threads cannot be stopped, and a big-integer or regex operation holds the GIL for as long as it
runs, so a thread would still stall media; a child process can be killed. Children run at a lower
CPU priority (nice 10) than the server and with an address-space limit, so a hostile request costs
at most `timeout_s` of one core's spare time and a bounded amount of memory.

Children are started with `spawn` (a fresh interpreter: nothing of the server's threads, locks or
torch state is inherited) when first needed, and again after a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from agent.backends.tool_types import ToolError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PROCESSES = 2
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MEMORY_BYTES = 1024 * 1024 * 1024  # address space of a child
CHILD_NICE = 10
START_TIMEOUT_S = 30.0


class SandboxError(ToolError):
    """The work did not finish: too slow, too big, or the child died. The message is for users."""


def _child_main(conn: Connection, memory_bytes: int) -> None:
    """A child's loop: (fn, args) in, ("ok", result) | ("tool_error", text) | ("error", text) out."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; it stops us
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except ToolError as exc:
            reply = ("tool_error", str(exc))
        except MemoryError:
            reply = ("tool_error", "that needs more memory than a tool may use")
        except RecursionError:
            reply = ("tool_error", "that is nested too deeply")
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}"[:300])
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


class _Child:
    def __init__(self, memory_bytes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_child_main, args=(child_conn, memory_bytes), daemon=True, name="tool-sandbox"
        )
        self.proc.start()
        child_conn.close()

    def kill(self) -> None:
        """SIGKILL; the process is reaped later (`join`), off the event loop."""
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.conn.close()

    def join(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.join(timeout=5.0)


class Sandbox:
    """A few child processes that run tool functions with a hard wall-clock limit each."""

    def __init__(
        self,
        processes: int = DEFAULT_PROCESSES,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._idle: asyncio.Queue[_Child | None] | None = None
        self._children: set[_Child] = set()
        self._closed = False
        self.killed = 0  # children killed for running past timeout_s (or dying)
        self.calls = 0

    def _ensure_pool(self) -> asyncio.Queue[_Child | None]:
        if self._idle is None:
            # None is a free place whose child is started on first use.
            self._idle = asyncio.Queue()
            for _ in range(self.processes):
                self._idle.put_nowait(None)
        return self._idle

    async def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """Run `fn(*args)` in a child. A ToolError it raises, a timeout and a crash all come back
        as SandboxError, a ToolError: callers turn it into a user-facing error like any other."""
        if self._closed:
            raise SandboxError("the tool sandbox is closed")
        idle = self._ensure_pool()
        child = await idle.get()
        limit = self.timeout_s if timeout_s is None else timeout_s
        in_flight = False  # a request sent whose reply is not read: the child is out of step
        try:
            if child is None:
                child = await asyncio.wait_for(
                    asyncio.to_thread(_Child, self.memory_bytes), START_TIMEOUT_S
                )
                self._children.add(child)
            self.calls += 1
            child.conn.send((fn, args))
            in_flight = True
            status, value = await asyncio.wait_for(_receive(child.conn), limit)
            in_flight = False
        except TimeoutError:
            raise SandboxError(f"that took too long (limit {limit:g} s)") from None
        except (EOFError, OSError):
            raise SandboxError("the tool process died (out of memory?)") from None
        finally:
            # A child that did not answer (too slow, died, or its caller was cancelled) may still
            # answer later: it is killed, so no reply ever reaches the wrong caller.
            if in_flight and child is not None:
                self._discard(child)
                child = None
            idle.put_nowait(child)
        if status == "ok":
            return value
        if status == "tool_error":
            raise SandboxError(value)
        log.warning("tool %s failed in the sandbox: %s", getattr(fn, "__name__", fn), value)
        raise SandboxError(f"the tool failed: {value}")

    def _discard(self, child: _Child) -> None:
        self.killed += 1
        self._children.discard(child)
        child.kill()
        asyncio.get_running_loop().run_in_executor(None, child.join)

    async def aclose(self) -> None:
        self._closed = True
        children, self._children = list(self._children), set()
        for child in children:
            child.kill()
            await asyncio.to_thread(child.join)


async def _receive(conn: Connection) -> tuple[str, Any]:
    """The child's reply, waiting on the pipe's fd with the loop (no thread per call)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    reply: tuple[str, Any] = conn.recv()  # ready: the child writes its whole (small) reply
    return reply


__all__ = ["Sandbox", "SandboxError"]
