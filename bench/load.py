"""Load benchmark: many real WebRTC calls at once against `microturn serve` (loopback only).

    .venv/bin/python -m bench.load [--levels 1,2,3,4,6] [--seconds 60] [--max-calls N] [--quick] [--json PATH]

For each level N, N aiortc client peers (espeak-ng speech looped as the mic, a moving square at
15 fps as the camera) connect at once to a fresh server running the shipped model and talk for the
given time. The peers run in a separate process from the bench (the server is a third), so the
report separates the server's CPU and memory from the clients'. Reported per level: calls held and
refused (503 beyond --max-calls), micro-turns, late steps, dropped inputs, audio gaps, the server's
CPU and RSS over time. The point of the last level (above --max-calls) is to show the server
refusing calls rather than degrading everyone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.media import RESULTS, ProcSampler
from infra.embedded_redis import free_port
from tests.browser.harness import ServerProcess, make_speech_wav

SPEECH = "Hello there. I would like to know the weather tomorrow, and then count with me to ten."


async def run_peers(url: str, n: int, seconds: float, wav: str) -> dict[str, Any]:
    """In the peers' process: connect n calls at once, talk, report each call's status."""
    from infra.ice import enable_loopback_candidates
    from media.synthetic import MovingSquareTrack, wav_track
    from signaling.client import CallClient, CallRefused

    enable_loopback_candidates()
    clients = [CallClient(url, audio=wav_track(wav), video=MovingSquareTrack()) for _ in range(n)]
    results = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
    held = [c for c, r in zip(clients, results, strict=True) if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, CallRefused)]
    failed = [
        repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, CallRefused)
    ]
    await asyncio.gather(*(c.wait_event("session.created", timeout=60) for c in held))
    await asyncio.sleep(seconds)
    statuses = [await c.status() for c in held]
    for c in held:
        await c.hang_up()
        await c.close()
    return {
        "held": len(held),
        "refused": len(refused),
        "refused_codes": sorted({r.code for r in refused}),
        "failed": failed,
        "statuses": statuses,
    }


async def level(n: int, seconds: float, max_calls: int | None, wav: str) -> dict[str, Any]:
    cap = ["--max-calls", str(max_calls)] if max_calls else []
    server = ServerProcess(
        free_port(),
        args=[*cap, "--agent-workers", "0"],
        log_path=RESULTS / "bench-load-server.log",
    )
    with server:
        assert server.proc is not None
        pid = server.proc.pid
        peers = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.load",
            "--peers",
            str(n),
            "--url",
            server.url,
            "--seconds",
            str(seconds),
            "--wav",
            wav,
            stdout=asyncio.subprocess.PIPE,
        )
        sampler = ProcSampler(pid)
        every = max(2.0, seconds / 10)
        while peers.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peers.wait(), every)
            sampler.sample()
        samples = sampler.samples
        out, _ = await peers.communicate()
    report = json.loads(out.decode().strip().splitlines()[-1])
    statuses = report.pop("statuses")
    mts = sum(s["microturns"] for s in statuses)
    return {
        "calls": n,
        **report,
        "microturns": mts,
        "late_steps": sum(s["late_steps"] for s in statuses),
        "late_pct": round(100 * sum(s["late_steps"] for s in statuses) / max(1, mts), 2),
        "audio_gaps": sum(s["audio_gaps"] for s in statuses),
        "audio_gap_ms": sum(s["audio_gap_ms"] for s in statuses),
        "video_frames_used": sum(s["video_frames_used"] for s in statuses),
        "server_cpu_pct_mean": round(
            statistics.fmean(x["cpu_pct"] for x in samples[1:] or samples), 1
        ),
        "server_rss_mb_start": samples[0]["rss_mb"],
        "server_rss_mb_end": samples[-1]["rss_mb"],
        "samples": samples,
    }


def print_table(rows: list[dict[str, Any]], seconds: float, max_calls: int | None) -> None:
    cap = f"--max-calls {max_calls}" if max_calls else "the default --max-calls"
    print(f"\nLoad: N peers with speech + video for {seconds:g} s each, {cap}")
    print(
        f"{'calls':>5} {'held':>5} {'refused':>8} {'micro-turns':>12} {'late %':>7} {'gap turns':>10} "
        f"{'video used':>11} {'server cpu %':>13} {'rss MB start->end':>18}"
    )
    for r in rows:
        print(
            f"{r['calls']:5d} {r['held']:5d} {r['refused']:8d} {r['microturns']:12d} {r['late_pct']:7.2f} "
            f"{r['audio_gaps']:10d} {r['video_frames_used']:11d} {r['server_cpu_pct_mean']:13.1f} "
            f"{r['server_rss_mb_start']:8.1f} -> {r['server_rss_mb_end']:<7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,3,4,6")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-calls", type=int, default=None, help="default: the server's own")
    parser.add_argument("--quick", action="store_true", help="levels 1,4,10 for 20 s")
    parser.add_argument("--json", default=str(RESULTS / "load.json"))
    # the peers' process
    parser.add_argument("--peers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peers:
        result = asyncio.run(run_peers(args.url, args.peers, args.seconds, args.wav))
        print(json.dumps(result))
        return 0
    if args.quick:
        args.levels, args.seconds = "1,4,6", 20.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = str(make_speech_wav(Path(tmp) / "speech.wav", SPEECH))
        rows = []
        for n in [int(x) for x in args.levels.split(",")]:
            print(f"  {n} calls for {args.seconds:g} s ...", flush=True)
            rows.append(asyncio.run(level(n, args.seconds, args.max_calls, wav)))
    print_table(rows, args.seconds, args.max_calls)
    report = {"machine": {"cores": os.cpu_count()}, "args": vars(args), "rows": rows}
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
