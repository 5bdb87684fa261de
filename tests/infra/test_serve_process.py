"""`microturn serve` as a user runs it: defaults (embedded Redis), ready, Ctrl-C stops everything."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from infra.embedded_redis import free_port
from tests.browser.harness import ARTIFACTS, ServerProcess


def test_serve_with_defaults_starts_announces_and_stops_cleanly_on_ctrl_c() -> None:
    server = ServerProcess(free_port(), args=["--model", "echo"], log_path=ARTIFACTS / "serve.log")
    server.start()
    with urllib.request.urlopen(f"{server.url}/readyz", timeout=5) as resp:
        assert resp.status == 200
    log = server.log()
    assert f"serving on {server.url}" in log
    socket_dir = re.search(r"unix://(\S+)/redis\.sock", log)
    assert socket_dir, "the default is a private Redis on a unix socket"
    assert Path(socket_dir.group(1)).exists()
    assert server.stop(timeout_s=30) == 0, server.log()
    assert not Path(socket_dir.group(1)).exists(), "the private Redis and its files are gone"


async def test_sigterm_drains_calls_with_a_goodbye_then_exits() -> None:
    import asyncio
    import signal
    import subprocess

    from media.synthetic import tone
    from signaling.client import CallClient

    server = ServerProcess(free_port(), args=["--model", "echo"], log_path=ARTIFACTS / "drain.log")
    server.start()
    assert server.proc is not None
    try:
        async with CallClient(server.url, audio=tone()) as call:
            await call.wait_event("session.created", timeout=60)
            server.proc.send_signal(signal.SIGTERM)
            ended = await call.wait_event("session.ended", timeout=30)
            assert ended["reason"] == "server shutting down"
        code = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 30)
        assert code == 0, server.log()
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise
