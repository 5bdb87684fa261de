"""bench/remote.py runs end to end at tiny settings (the full run is a command in the README)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.remote import main


def test_the_remote_benchmark_runs_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "remote.json"
    args = ["--sessions", "2", "--seconds", "1", "--failover-sessions", "2"]
    assert main([*args, "--failover-seconds", "2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["in_process"]["latency"]["n"] > 0
    assert results["remote"]["wire"]["n"] > 0 and results["remote"]["failed"] == 0
    failover = results["failover"]
    assert failover["sessions_lost"] == 0 and failover["appends_failed"] == 0
    assert all(p["reason"] == "worker_lost" for p in failover["per_session"])
