"""A worker's slots: how a task that is only waiting gives its slot back while it waits.

A worker runs at most `concurrency` packages that are *working* at once. A timer, or any tool
that sleeps until something happens, is not working while it sleeps, so it says so:

    async with slots.waiting():
        await asyncio.sleep(until_it_fires)

The worker sets a `Lease` for each package's task (a context variable, so the backend and its
tools need no reference to the worker). While a lease is waiting, the worker fetches and runs
other packages in its place; waiting tasks are bounded by a separate, larger limit. Outside a
worker (tests, direct use) `waiting()` does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar


class Lease:
    """One package's claim on a worker slot; `on_change` tells the worker to recount."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.waiting = False
        self._on_change = on_change

    def set_waiting(self, waiting: bool) -> None:
        if waiting != self.waiting:
            self.waiting = waiting
            self._on_change()


_lease: ContextVar[Lease | None] = ContextVar("microturn_worker_lease", default=None)


def bind(lease: Lease) -> None:
    """Attach `lease` to the current task (the worker calls this first thing in a package's task)."""
    _lease.set(lease)


@contextlib.asynccontextmanager
async def waiting() -> AsyncIterator[None]:
    """While inside, this package's slot is free for other packages."""
    lease = _lease.get()
    if lease is None:
        yield
        return
    lease.set_waiting(True)
    try:
        yield
    finally:
        lease.set_waiting(False)
