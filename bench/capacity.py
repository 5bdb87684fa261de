"""Capacity benchmark: media CPU per call and calls held, with a load generator that is not us.

    .venv/bin/python -m bench.capacity cost [--calls 4] [--minutes 2] [--json PATH]
    .venv/bin/python -m bench.capacity hold [--calls 10] [--minutes 10] [--processes 2] [--json PATH]

The callers are GStreamer's webrtcbin (bench/gst_caller.py: Debian's system Python and C
pipelines, Opus and VP8 encoders, libnice, libsrtp), in one process of their own whose CPU is
reported beside the server's: their cost does not decide the result, and none of their work is
counted as the server's.

`cost`: the CPU one audio+video call costs `microturn serve --model echo` (one media process,
the engine in it: the echo model's step is nothing), with the video the demo page now sends
(`PAGE_VIDEO`: a 320x240 camera capped to session.created's request) and with the camera as it
is (320x240 at 15 fps, what the page sent before), against a plain aiortc echo (the received
audio track relayed back: aiortc decoding and re-encoding it, the same DTLS) with audio only.
Per call = (server CPU while the calls are held - its idle CPU) / calls, from /proc.

`hold`: `--calls` audio+video calls (the page's video, speech-band audio) against `microturn serve
--processes N --inference remote` with the shipped model on one `microturn infer` worker, all on
this machine, for `--minutes`, each call typing `--say` once up so that the model speaks all
along; every call's GET at the start and the end: late steps, audio gaps
(micro-turns with missing microphone audio, after the first `SETTLE_S` of the call), underruns of
the model's audio (all, and those right after a frame with sound: a gap a listener hears), the
model's utterances; the worker's step time (p50/p99 of its recent steps) ~40 s in and at the end;
CPU of the media processes, the worker and the callers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.media import RESULTS, proc_stats
from infra.embedded_redis import EmbeddedRedis, free_port
from infra.processes import InferProcess
from tests.browser.harness import ServerProcess

SYSTEM_PYTHON = "/usr/bin/python3"
GST_CALLER = Path(__file__).with_name("gst_caller.py")
PAGE_VIDEO = "107x80@10"  # a 320x240 camera after session.created's request (client.js)
CAMERA_VIDEO = "320x240@15"  # the same camera as it is (the page before the request)
IDLE_S = 10.0
SETTLE_S = 30.0  # audio gaps are counted after this much of the call (ICE, the first frames)
# Typed into every call once it is up: the model then speaks all through the hold, so an underrun
# of its audio can fall in speech (a gap heard) rather than always in silence.
SAY = "say hello every 2 seconds"
STEP_SAMPLE_S = 40.0  # the worker's step times: this long into the hold, and at its end


# -- CPU of process trees ----------------------------------------------------------------------
def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def role(pid: int, root: int) -> str:
    if pid == root:
        return "server"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "inference.worker" in cmd:
        return "infer"
    if "redis-server" in cmd:
        return "redis"
    if "signaling.cli serve" in cmd:
        return "media"
    return "other"


class TreeCpu:
    """CPU seconds of a process tree by role (the root, media children, infer, redis), summed
    over every process seen (a child that exits keeps what it used until then)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}

    def read(self) -> dict[str, float]:
        for pid in tree(self.root):
            try:
                cpu, _ = proc_stats(pid)
            except OSError:
                continue
            kind = self.seen.get(pid, (role(pid, self.root), 0.0))[0]
            self.seen[pid] = (kind, cpu)
        out: dict[str, float] = {}
        for kind, cpu in self.seen.values():
            out[kind] = out.get(kind, 0.0) + cpu
        return out


def pct(a: dict[str, float], b: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: round(100 * (b.get(k, 0.0) - a.get(k, 0.0)) / seconds, 2) for k in b}


# -- the callers ---------------------------------------------------------------------------------
class Callers:
    """bench/gst_caller.py as a child process; `held` is set when its calls are up."""

    def __init__(
        self, url: str, calls: int, seconds: float, video: str, sample_s: str, say: str = ""
    ) -> None:
        self.command = [
            SYSTEM_PYTHON,
            str(GST_CALLER),
            url,
            "--calls",
            str(calls),
            "--seconds",
            str(seconds),
            "--video",
            video,
            "--sample-s",
            sample_s,
            "--say",
            say,
        ]
        self.held = asyncio.Event()
        self.up_line = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self._stderr = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith("hold "):
                self.up_line = line
                self.held.set()

    async def result(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        out = await self.proc.stdout.read()
        await self.proc.wait()
        if self._stderr is not None:
            await self._stderr
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"the callers printed nothing (exit {self.proc.returncode})")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


async def hold_and_measure(
    callers: Callers, trees: dict[str, TreeCpu], seconds: float
) -> tuple[dict[str, dict[str, float]], float]:
    """Once the calls are up: CPU % of each tree (and of the callers) over the hold."""
    await callers.start()
    assert callers.proc is not None
    await asyncio.wait_for(callers.held.wait(), 180)
    callers_cpu = TreeCpu(callers.proc.pid)
    start = {name: t.read() for name, t in trees.items()}
    start["callers"] = callers_cpu.read()
    t0 = time.monotonic()
    await asyncio.sleep(max(1.0, seconds - 2.0))  # the end: before the callers hang up
    end = {name: t.read() for name, t in trees.items()}
    end["callers"] = callers_cpu.read()
    held_s = time.monotonic() - t0
    return {name: pct(start[name], end[name], held_s) for name in end}, held_s


def grown(first: dict[str, Any], last: dict[str, Any], key: str) -> int:
    """How much a call's counter `key` grew from one GET sample to a later one."""
    return int(last.get(key, 0) - first.get(key, 0))


def judged_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in result["calls"] if c.get("status") == 201]


# -- cost ----------------------------------------------------------------------------------------
async def plain_echo(port: int) -> None:
    """A plain aiortc echo (bench/media.py's, with the server's DTLS so webrtcbin can connect)."""
    from aiohttp import web

    from bench.media import plain_echo_app
    from infra.ice import enable_loopback_candidates
    from signaling.dtls import new_peer_connection

    enable_loopback_candidates()
    runner = web.AppRunner(plain_echo_app(new_peer_connection), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def measure_cost(
    url: str, pid: int, calls: int, seconds: float, video: str
) -> dict[str, Any]:
    server = TreeCpu(pid)
    a = server.read()
    await asyncio.sleep(IDLE_S)
    idle = pct(a, server.read(), IDLE_S)
    callers = Callers(url, calls, seconds, video, "")
    cpu, held_s = await hold_and_measure(callers, {"server": server}, seconds)
    result = await callers.result()
    up = judged_calls(result)
    total = sum(cpu["server"].values())
    idle_total = sum(idle.values())
    last = [c["samples"][-1] for c in up if c.get("samples")]
    return {
        "video": video,
        "calls": calls,
        "calls_up": len(up),
        "held_s": round(held_s, 1),
        "server_idle_cpu_pct": round(idle_total, 2),
        "server_cpu_pct": round(total, 2),
        "cpu_pct_per_call": round((total - idle_total) / max(1, len(up)), 2),
        "callers_cpu_pct": round(sum(cpu["callers"].values()), 2),
        "late_steps": sum(s.get("late_steps", 0) for s in last),
        "audio_gaps": sum(s.get("audio_gaps", 0) for s in last),
        "video_frame_size": last[0].get("video_frame_size") if last else None,
    }


async def cost(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    rows = []
    port = free_port()
    echo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.capacity", "plain-echo", "--port", str(port)
    )
    try:
        while not await _listening(port):
            if echo.returncode is not None:
                raise RuntimeError("the plain echo exited at start")
            await asyncio.sleep(0.2)
        print(f"  plain aiortc echo, audio only: {args.calls} calls ...", flush=True)
        row = await measure_cost(f"http://127.0.0.1:{port}", echo.pid, args.calls, seconds, "none")
        rows.append({"server": "plain aiortc echo (audio only)", **row})
    finally:
        echo.terminate()
        await echo.wait()
    for video, name in ((PAGE_VIDEO, "page's video"), (CAMERA_VIDEO, "camera as it is")):
        server = ServerProcess(
            free_port(),
            args=["--model", "echo", "--max-calls", str(args.calls), "--agent-workers", "0"],
            log_path=RESULTS / "bench-capacity-server.log",
        )
        with server:
            assert server.proc is not None
            print(f"  microturn --model echo, {name} ({video}): {args.calls} calls ...", flush=True)
            row = await measure_cost(server.url, server.proc.pid, args.calls, seconds, video)
            rows.append({"server": f"microturn echo, audio + {name}", **row})
    return {"rows": rows}


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


# -- hold ----------------------------------------------------------------------------------------
def worker_stats(info_url: str) -> dict[str, Any]:
    url = info_url.replace("ws://", "http://").rsplit("/v1/", 1)[0] + "/healthz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
        return stats


async def hold(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    pool = f"bench-{os.getpid()}"
    with EmbeddedRedis() as redis:
        worker = InferProcess(
            redis.url,
            pool=pool,
            model=None if args.model == "shipped" else args.model,
            max_sessions=args.calls,
            log_path=RESULTS / "bench-capacity-infer.log",
        )
        await worker.astart()
        assert worker.info is not None and worker.proc is not None
        server = ServerProcess(
            free_port(),
            args=[
                "--inference",
                "remote",
                "--redis-url",
                redis.url,
                "--inference-pool",
                pool,
                "--processes",
                str(args.processes),
                "--max-calls",
                str(args.calls),
                "--agent-workers",
                "0",
            ],
            log_path=RESULTS / "bench-capacity-hold-server.log",
        )
        try:
            with server:
                assert server.proc is not None
                trees = {"server": TreeCpu(server.proc.pid), "infer": TreeCpu(worker.proc.pid)}
                a = {name: t.read() for name, t in trees.items()}
                await asyncio.sleep(IDLE_S)
                idle = {name: pct(a[name], t.read(), IDLE_S) for name, t in trees.items()}
                callers = Callers(
                    server.url,
                    args.calls,
                    seconds,
                    args.video,
                    f"{SETTLE_S},{STEP_SAMPLE_S}",
                    say=args.say,
                )
                print(f"  {args.calls} calls for {args.minutes:g} min ...", flush=True)
                steps: dict[str, Any] = {}

                async def sample_steps() -> None:
                    await callers.held.wait()
                    await asyncio.sleep(STEP_SAMPLE_S)
                    steps["start"] = worker_stats(worker.info.url)  # type: ignore[union-attr]
                    await asyncio.sleep(max(0.0, seconds - STEP_SAMPLE_S - 5.0))
                    steps["end"] = worker_stats(worker.info.url)  # type: ignore[union-attr]

                sampler = asyncio.ensure_future(sample_steps())
                cpu, held_s = await hold_and_measure(callers, trees, seconds)
                await sampler
                result = await callers.result()
        finally:
            worker.stop()
    up = judged_calls(result)
    per_call = []
    for c in up:
        first: dict[str, Any] = next(
            (s for s in c["samples"] if s.get("at_s", 0) >= SETTLE_S - 1), {}
        )
        last = c["samples"][-1]
        per_call.append(
            {
                "microturns": last.get("microturns", 0),
                "late_steps": last.get("late_steps", 0),
                "audio_gaps": last.get("audio_gaps", 0),
                "audio_gaps_after_settle": grown(first, last, "audio_gaps"),
                "audio_underruns": last.get("audio_underruns", 0),
                "audio_underruns_after_settle": grown(first, last, "audio_underruns"),
                "audio_underruns_audible": last.get("audio_underruns_audible", 0),
                "audio_underruns_audible_after_settle": grown(
                    first, last, "audio_underruns_audible"
                ),
                "model_restarts": last.get("model_restarts", 0),
                "utterances": c["events"].get("output_audio.started", 0),
                "audio_cushion_ms": last.get("audio_cushion_ms"),
                "audio_grace_ms": last.get("audio_grace_ms"),
                "video_frames_used": last.get("video_frames_used", 0),
                "video_frame_size": last.get("video_frame_size"),
                "process": last.get("process"),
            }
        )
    media = cpu["server"].get("media", 0.0) + cpu["server"].get("server", 0.0)
    media_idle = idle["server"].get("media", 0.0) + idle["server"].get("server", 0.0)
    start, end = steps.get("start", {}), steps.get("end", {})
    ratio = end.get("step_ms_p50", 0) / start["step_ms_p50"] if start.get("step_ms_p50") else None
    return {
        "calls": args.calls,
        "calls_up": len(up),
        "refused": [c.get("code") for c in result["calls"] if c.get("status") != 201],
        "processes": args.processes,
        "video": args.video,
        "held_s": round(held_s, 1),
        "microturns": sum(c["microturns"] for c in per_call),
        "late_steps": sum(c["late_steps"] for c in per_call),
        "audio_gaps": sum(c["audio_gaps"] for c in per_call),
        "audio_gaps_after_settle": sum(c["audio_gaps_after_settle"] for c in per_call),
        **{
            k: sum(c[k] for c in per_call)
            for k in (
                "audio_underruns",
                "audio_underruns_after_settle",
                "audio_underruns_audible",
                "audio_underruns_audible_after_settle",
            )
        },
        "model_restarts": sum(c["model_restarts"] for c in per_call),
        "utterances": sum(c["utterances"] for c in per_call),
        "media_cpu_pct": round(media, 1),
        "media_cpu_pct_per_call": round((media - media_idle) / max(1, len(up)), 2),
        "infer_cpu_pct": round(sum(cpu["infer"].values()), 1),
        "callers_cpu_pct": round(sum(cpu["callers"].values()), 1),
        "idle_cpu_pct": idle,
        "step_ms_start": {k: start.get(k) for k in ("step_ms_p50", "step_ms_p99", "batch_mean")},
        "step_ms_end": {k: end.get(k) for k in ("step_ms_p50", "step_ms_p99", "batch_mean")},
        "step_p50_end_over_start": round(ratio, 3) if ratio else None,
        "per_call": per_call,
        "load_average": os.getloadavg(),
    }


# -- report ----------------------------------------------------------------------------------------
def print_cost(report: dict[str, Any]) -> None:
    print("\nMedia CPU per call (% of one core; GStreamer webrtcbin callers, their CPU apart)")
    print(
        f"{'server':44} {'video':>11} {'calls':>6} {'server %':>9} {'idle %':>7} "
        f"{'per call %':>11} {'callers %':>10} {'late':>5} {'gaps':>5}"
    )
    for r in report["rows"]:
        print(
            f"{r['server']:44} {r['video']:>11} {r['calls_up']:>3}/{r['calls']:<2} "
            f"{r['server_cpu_pct']:9.1f} {r['server_idle_cpu_pct']:7.1f} "
            f"{r['cpu_pct_per_call']:11.2f} {r['callers_cpu_pct']:10.1f} {r['late_steps']:5d} "
            f"{r['audio_gaps']:5d}"
        )


def print_hold(r: dict[str, Any]) -> None:
    print(
        f"\nHeld {r['calls_up']} of {r['calls']} audio+video calls ({r['video']}) for "
        f"{r['held_s']:.0f} s on {r['processes']} media processes + 1 infer worker"
    )
    print(
        f"micro-turns {r['microturns']}, late steps {r['late_steps']}, audio gaps "
        f"{r['audio_gaps']} ({r['audio_gaps_after_settle']} after the first {SETTLE_S:.0f} s), "
        f"underruns {r['audio_underruns']} ({r['audio_underruns_after_settle']} after it; audible "
        f"{r['audio_underruns_audible']}, {r['audio_underruns_audible_after_settle']} after it), "
        f"model restarts {r['model_restarts']}, model utterances {r['utterances']}"
    )
    print(
        f"CPU, % of one core: media {r['media_cpu_pct']} ({r['media_cpu_pct_per_call']} per call), "
        f"infer {r['infer_cpu_pct']}, callers {r['callers_cpu_pct']}"
    )
    print(
        f"step ms (worker, recent p50/p99, mean batch): start {r['step_ms_start']}, end "
        f"{r['step_ms_end']}; p50 end/start {r['step_p50_end_over_start']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.capacity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cost", help="media CPU per call, against a plain aiortc echo")
    c.add_argument("--calls", type=int, default=4)
    c.add_argument("--minutes", type=float, default=2.0)
    c.add_argument("--json", default=str(RESULTS / "capacity-cost.json"))
    h = sub.add_parser("hold", help="calls held with the shipped model")
    h.add_argument("--calls", type=int, default=10)
    h.add_argument("--minutes", type=float, default=10.0)
    h.add_argument("--processes", type=int, default=2)
    h.add_argument("--video", default=PAGE_VIDEO)
    h.add_argument("--model", default="shipped", help="shipped, echo, or a checkpoint directory")
    h.add_argument(
        "--say", default=SAY, help="what each call types once up, so the model speaks ('' for none)"
    )
    h.add_argument("--json", default=str(RESULTS / "capacity-hold.json"))
    e = sub.add_parser("plain-echo", help=argparse.SUPPRESS)
    e.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.mode == "plain-echo":
        asyncio.run(plain_echo(args.port))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    if args.mode == "cost":
        report = {"machine": machine, "args": vars(args), **asyncio.run(cost(args))}
        print_cost(report)
    else:
        report = {"machine": machine, "args": vars(args), **asyncio.run(hold(args))}
        print_hold(report)
    report["machine"]["load_average_after"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
