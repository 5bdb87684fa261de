import subprocess
import sys
import time
from pathlib import Path

import redis

from infra.embedded_redis import EmbeddedRedis


def test_unix_socket_redis_starts_answers_and_stops() -> None:
    server = EmbeddedRedis()
    with server:
        assert server.url.startswith("unix://")
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
        client.close()
        proc = server.proc
    assert proc is not None and proc.poll() is not None, "redis-server must stop with its owner"


def test_persistent_redis_keeps_streams_across_restart() -> None:
    with EmbeddedRedis(tcp=True, persist=True) as server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"k": "v"})
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.xlen("s") == 1
        client.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie no one reaped yet
    except FileNotFoundError:
        return True


def test_redis_dies_with_its_owner_even_by_kill_9() -> None:
    """A crashed server leaves no redis-server behind (PR_SET_PDEATHSIG set by setpriv, nothing run
    in the forked child before exec)."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from infra.embedded_redis import EmbeddedRedis\n"
            "r = EmbeddedRedis().start()\n"
            "print(r.proc.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().strip() == "redis-server", (
                "the child is redis-server itself, not a wrapper"
            )
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30.0
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "redis-server outlived the process that started it"
