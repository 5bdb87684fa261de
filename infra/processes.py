"""`microturn infer` as a child process, for scripts, tests and benchmarks.

    with InferProcess(redis_url, pool="bench", model="echo", max_sessions=8) as worker:
        worker.info          # its registration (infra/discovery.py), once it has registered
        worker.kill()        # kill -9: what a crash looks like to the media processes

Started on a free port (`--port 0`, the worker advertises the one it got); ready once its
registration is in Redis, which the worker writes only after its engine has warmed up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from infra.discovery import WorkerInfo, WorkerKeys, list_workers
from infra.pdeathsig import tied_to_parent


def supervised(command: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Popen/create_subprocess_exec argv and arguments of a child a supervisor owns: its own
    process group (a terminal's Ctrl-C reaches the supervisor alone, which stops the children in
    order) and stopped with its parent (infra/pdeathsig.py)."""
    return tied_to_parent(command), {"process_group": 0}


async def find_worker(redis_url: str, pool: str, pid: int) -> WorkerInfo | None:
    """The registration of the worker with this pid in `pool`, if there is one now."""
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=1.0)
    try:
        return next((w for w in await list_workers(redis, WorkerKeys(pool)) if w.pid == pid), None)
    finally:
        await redis.aclose()


class InferProcess:
    def __init__(
        self,
        redis_url: str,
        *,
        pool: str,
        model: str | None = "echo",  # None: the shipped checkpoint
        max_sessions: int = 8,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        supervised: bool = False,
    ) -> None:
        """`supervised`: a child of a long-running supervisor (`microturn serve --processes`): its
        output goes to the supervisor's, and it stops with it (`supervised()`)."""
        self.redis_url = redis_url
        self.supervised = supervised
        self.pool = pool
        self.command = [
            sys.executable,
            "-m",
            "inference.worker",
            "--redis-url",
            redis_url,
            "--port",
            "0",
            "--pool",
            pool,
            *(["--model", model] if model is not None else []),
            "--max-sessions",
            str(max_sessions),
            *(args or []),
        ]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: WorkerInfo | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def launch(self) -> None:
        if self.supervised:
            argv, kwargs = supervised(self.command)
            self.proc = subprocess.Popen(argv, env=self.env, **kwargs)
            return
        out = self.log_path.open("wb") if self.log_path is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env
        )

    async def wait_ready(self, timeout_s: float = 120.0) -> WorkerInfo:
        """Until its registration is in Redis (it registers once its engine is warm)."""
        assert self.proc is not None, "not launched"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"microturn infer exited at start: {self.log()}")
            self.info = await find_worker(self.redis_url, self.pool, self.proc.pid)
            if self.info is not None:
                return self.info
            await asyncio.sleep(0.1)
        self.kill()
        raise RuntimeError(f"microturn infer did not register within {timeout_s} s")

    async def astart(self, ready_timeout_s: float = 120.0) -> InferProcess:
        self.launch()
        await self.wait_ready(ready_timeout_s)
        return self

    def start(self, ready_timeout_s: float = 120.0) -> InferProcess:
        """launch() and wait until registered, from code with no event loop running."""
        self.launch()
        asyncio.run(self.wait_ready(ready_timeout_s))
        return self

    async def registration(self) -> WorkerInfo | None:
        return await find_worker(self.redis_url, self.pool, self.pid)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9: no goodbye, no deregistration (its key expires with its TTL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, as an operator stops it; killed if it does not exit in time."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) one must run to exit
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def __enter__(self) -> InferProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
