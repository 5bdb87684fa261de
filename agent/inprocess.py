"""Background workers as tasks of this process: what `microturn serve` runs beside its calls.

    async with in_process_workers(redis_url, 1, backend=BackendSettings.from_env()):
        ...  # the app serves; packages are consumed by these workers meanwhile

On exit they finish or release their work (`grace_s`; a worker that does not stop in time is
cancelled) and a backend made here is closed. `count` 0 runs none (workers elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agent.backends import Backend, BackendSettings
from agent.bus import StreamKeys
from agent.consumer import DEFAULT_CONCURRENCY, Worker

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 8.0


@contextlib.asynccontextmanager
async def in_process_workers(
    redis_url: str,
    count: int = 1,
    *,
    backend: Backend | BackendSettings | str = "builtin",
    concurrency: int = DEFAULT_CONCURRENCY,
    keys: StreamKeys | None = None,
    grace_s: float = 5.0,
    **worker_options: Any,
) -> AsyncIterator[list[Worker]]:
    """Run `count` workers sharing one backend for the duration of the block. `backend`: a
    backend, the settings to make one (closed at exit), or a backend name (settings otherwise
    from the environment)."""
    if count <= 0:
        yield []
        return
    made = not hasattr(backend, "run")
    if isinstance(backend, str):
        backend = BackendSettings.from_env(name=backend)
    the_backend: Backend = backend.make() if isinstance(backend, BackendSettings) else backend
    host = f"{socket.gethostname()}-{os.getpid()}"
    workers = [
        Worker(
            redis_url,
            the_backend,
            concurrency=concurrency,
            consumer_name=f"{host}-inproc{i}-{uuid.uuid4().hex[:4]}",
            keys=keys,
            **worker_options,
        )
        for i in range(count)
    ]
    tasks = [asyncio.create_task(w.run(), name=f"agent-worker-{w.consumer}") for w in workers]
    try:
        yield workers
    finally:
        stopping = asyncio.gather(*(w.stop(grace_s) for w in workers), return_exceptions=True)
        try:
            await asyncio.wait_for(stopping, STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("background workers did not stop within %.0f s; cancelling", STOP_TIMEOUT_S)
        for task in tasks:
            if not task.done():
                task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S / 4)
        if stuck:
            log.error("%d background worker task(s) ignored cancellation; leaving them", len(stuck))
        if made:
            await the_backend.aclose()
