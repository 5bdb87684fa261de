"""`microturn serve --processes N`: N media processes on one port, and what they share.

    supervisor (this module; holds no call)
      ├── Redis: --redis-url, else an embedded one for them all
      ├── `microturn infer` (inference/worker.py) with --inference local: the engine in its own
      │   process, since N processes cannot share an in-process one (a private pool and secret)
      └── media process 0 .. N-1: `microturn serve` each, `--inference remote`, a share of
          --max-calls, the public port with SO_REUSEPORT and a private unix socket
          (signaling/siblings.py: calls are sticky to the process that answered them)

One aiortc process is one event loop on one core; media, not the model, is what limits a CPU
node. The children share the token secret (a token minted by one is good at another) and the
background workers run in process 0 only. A child that exits is started again (its calls ended
with it); Ctrl-C or SIGTERM stops the children first (every call gets `session.ended`), then the
engine, then Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.config import Config
from infra.embedded_redis import EmbeddedRedis
from infra.processes import InferProcess, supervised
from signaling.siblings import Siblings, Unreachable, layout, shares

log = logging.getLogger(__name__)

SECRET_ENV = "MICROTURN_INFERENCE_SECRET"
READY_TIMEOUT_S = 180.0  # a child loads aiortc and connects to the engine; the engine warms up
STOP_TIMEOUT_S = 10.0  # each child's graceful stop (calls get session.ended) before it is killed
RESTART_DELAY_S = (1.0, 30.0)  # a child that keeps dying waits longer each time, up to the second
HEALTHY_S = 60.0  # ... and a child that ran this long starts again at once next time


@dataclass
class _Child:
    index: int
    command: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    delay_s: float = RESTART_DELAY_S[0]
    restarts: int = 0
    exited: asyncio.Task[int] | None = field(default=None, repr=False)

    async def start(self) -> None:
        argv, kwargs = supervised(self.command)
        self.proc = await asyncio.create_subprocess_exec(*argv, env=self.env, **kwargs)
        self.started_at = time.monotonic()
        self.exited = asyncio.ensure_future(self.proc.wait())


def child_args(given: Mapping[str, str], overrides: Mapping[str, str]) -> list[str]:
    """`serve` flags: what the user gave (as given), then the supervisor's (later flags win)."""
    merged = {**given, **overrides}
    out = []
    for name, value in merged.items():
        out += ["--" + name.replace("_", "-"), value]
    return out


def engine_args(config: Config) -> list[str]:
    args = ["--step-mode", config.step_mode, "--log-level", config.log_level]
    args += ["--log-format", config.log_format]
    if config.device:
        args += ["--device", config.device]
    if config.engine_threads:
        args += ["--threads", str(config.engine_threads)]
    return args


class Supervisor:
    def __init__(self, config: Config, given: Mapping[str, str]) -> None:
        self.config = config
        self.given = dict(given)
        self.processes = config.media_processes
        self.directory = tempfile.mkdtemp(prefix="microturn-media-")  # mode 0700: ours alone
        self.layout = layout(self.directory, self.processes)
        self.children: list[_Child] = []
        self.redis: EmbeddedRedis | None = None
        self.infer: InferProcess | None = None
        self.stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        try:
            await self._start()
            if self.stop.is_set():
                return 0
            self._announce()
            await self._watch()
            return 0
        finally:
            await self._shutdown()

    async def _start(self) -> None:
        config = self.config
        redis_url = config.redis_url
        if redis_url is None:
            self.redis = EmbeddedRedis()
            await asyncio.get_running_loop().run_in_executor(None, self.redis.start)
            redis_url = self.redis.url
        env = {**os.environ, "MICROTURN_TOKEN_SECRET": config.token_secret}
        overrides = {"redis_url": redis_url}
        if config.inference == "local":
            pool = f"serve-{os.getpid()}-{secrets.token_hex(3)}"
            env[SECRET_ENV] = secrets.token_urlsafe(24)
            self.infer = InferProcess(
                redis_url,
                pool=pool,
                model=config.model,
                max_sessions=config.max_calls,
                args=engine_args(config),
                env={SECRET_ENV: env[SECRET_ENV]},
                supervised=True,
            )
            self.infer.launch()
            await self._until_stopped(self.infer.wait_ready(READY_TIMEOUT_S))
            overrides.update(inference="remote", inference_pool=pool)
        for i, (siblings, share) in enumerate(
            zip(self.layout, shares(config.max_calls, self.processes), strict=True)
        ):
            mine = {
                **overrides,
                "max_calls": str(share),
                "agent_workers": str(config.agent_workers if i == 0 else 0),
            }
            command = [sys.executable, "-m", "signaling.cli", "serve"]
            child = _Child(i, command + child_args(self.given, mine), {**env, **siblings.env()})
            await child.start()
            self.children.append(child)
        await self._until_stopped(self._ready())

    async def _until_stopped(self, work: object) -> None:
        """`work` (a coroutine), unless Ctrl-C comes first."""
        task = asyncio.ensure_future(work)  # type: ignore[call-overload]
        stopped = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stopped.cancel()
            task.result()
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _ready(self) -> None:
        """Until every child answers on its private socket (it has started up)."""
        probe = Siblings(0, self.layout[0].sockets)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            pending = set(range(self.processes))
            while pending:
                for child in self.children:
                    if child.exited is not None and child.exited.done():
                        raise RuntimeError(
                            f"media process {child.index} exited at start "
                            f"(code {child.exited.result()})"
                        )
                for i in list(pending):
                    with contextlib.suppress(Unreachable):
                        await probe.get_json(i, "/internal/room")
                        pending.discard(i)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"media processes {sorted(pending)} did not start in time")
                if pending:
                    await asyncio.sleep(0.2)
        finally:
            await probe.aclose()

    def _announce(self) -> None:
        c = self.config
        redis = c.redis_url or "embedded"
        auth = "on" if c.auth_enabled else "off"
        engine = "one `microturn infer` child" if self.infer else f"remote pool {c.inference_pool}"
        print(
            f"Microturn is serving on {c.url}  ({self.processes} media processes, inference: "
            f"{engine}, redis: {redis}, auth: {auth}, max calls: {c.max_calls})\n"
            "Open it in a browser; press Ctrl-C to stop.",
            flush=True,
        )

    async def _watch(self) -> None:
        """Start again whatever exits, until Ctrl-C."""
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                waits: set[asyncio.Future[Any]] = {stopped}
                waits |= {c.exited for c in self.children if c.exited is not None}
                if self.infer is not None and self.infer.proc is not None:
                    waits.add(asyncio.ensure_future(asyncio.sleep(1.0)))
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if self.stop.is_set():
                    return
                for child in self.children:
                    if child.exited is not None and child.exited.done():
                        await self._restart(child)
                if self.infer is not None and self.infer.proc is not None:
                    code = self.infer.proc.poll()
                    if code is not None:
                        log.warning(
                            "the inference worker exited (code %s); starting it again", code
                        )
                        self.infer.launch()
        finally:
            stopped.cancel()

    async def _restart(self, child: _Child) -> None:
        assert child.exited is not None
        code = child.exited.result()
        ran_s = time.monotonic() - child.started_at
        child.delay_s = RESTART_DELAY_S[0] if ran_s > HEALTHY_S else child.delay_s
        log.warning(
            "media process %d exited (code %s) after %.0f s; its calls ended; starting it "
            "again in %.0f s",
            child.index,
            code,
            ran_s,
            child.delay_s,
        )
        child.exited = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), child.delay_s)
        if self.stop.is_set():
            return
        child.delay_s = min(RESTART_DELAY_S[1], child.delay_s * 2)
        child.restarts += 1
        await child.start()

    async def _shutdown(self) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.returncode is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGINT)  # as Ctrl-C: calls get session.ended
        for child in running:
            assert child.proc is not None
            try:
                await asyncio.wait_for(child.proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("media process %d did not stop in time; killed", child.index)
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        loop = asyncio.get_running_loop()
        if self.infer is not None:
            await loop.run_in_executor(None, self.infer.stop)
        if self.redis is not None:
            await loop.run_in_executor(None, self.redis.close)
        shutil.rmtree(self.directory, ignore_errors=True)


def supervise(config: Config, given: Mapping[str, str]) -> int:
    """Run `config.media_processes` media processes until Ctrl-C; `given`: the `serve` flags the
    user set (field name -> raw text), passed on to each child."""
    try:
        return asyncio.run(Supervisor(config, given).run())
    except RuntimeError as exc:
        log.error("microturn serve --processes: %s", exc)
        return 1
