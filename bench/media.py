"""Media benchmark: mouth-to-ear latency added by micro-turn framing, and media cost per call.

    .venv/bin/python -m bench.media [--beeps 20] [--calls 4] [--minutes 10] [--quick] [--json PATH]

1. Latency. Headless Chromium sends timed beeps (a WebAudio oscillator as its microphone) and times
   their echo with an AudioWorklet on the incoming track, both on the page's audio clock. Two servers
   are measured in the same run:
   - `plain aiortc echo`: an aiortc peer that sends the received track straight back (no framing);
   - `microturn --model echo`: the real server, whose pass-through "model" returns each micro-turn's
     own input audio as its output.
   The difference is what micro-turn framing costs (expected: about one micro-turn).
2. Cost. N aiortc client peers (48 kHz speech-like audio + 320x240 15 fps video) hold calls against
   `microturn serve --model echo` for M minutes; the server process's CPU per call and RSS over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from infra.embedded_redis import free_port
from infra.ice import enable_loopback_candidates
from media.synthetic import MovingSquareTrack, SignalAudioTrack
from signaling.client import CallClient
from tests.browser.harness import ServerProcess, close_chromium, launch_chromium

RESULTS = Path(__file__).parent / "results"
BEEP_INTERVAL_S = 1.13  # not a multiple of 200 ms: beeps land at every phase of a micro-turn

PAGE = """<!doctype html><meta charset="utf-8"><title>echo latency</title><audio id="remote" autoplay></audio>
<script type="module">
const WORKLET = `
class Onsets extends AudioWorkletProcessor {
  constructor() { super(); this.quiet = 0; }
  process(inputs) {
    const ch = inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      const loud = Math.abs(ch[i]) > 0.05;
      if (loud && this.quiet > 4000) this.port.postMessage((currentFrame + i) / sampleRate);
      this.quiet = loud ? 0 : this.quiet + 1;
    }
    return true;
  }
}
registerProcessor("onsets", Onsets);`;
const result = { beeps: [], onsets: [], state: "new", error: null };
window.bench = result;
window.runBench = async (count, intervalS) => {
  const ctx = new AudioContext({ sampleRate: 48000 });
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" })));
  const osc = ctx.createOscillator(); osc.frequency.value = 1000;
  const gain = ctx.createGain(); gain.gain.value = 0;
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest); osc.start();
  const pc = new RTCPeerConnection();
  pc.addTrack(dest.stream.getAudioTracks()[0], dest.stream);
  pc.createDataChannel("events");
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    document.getElementById("remote").srcObject = stream;
    const node = new AudioWorkletNode(ctx, "onsets");
    node.port.onmessage = (m) => result.onsets.push(m.data);
    ctx.createMediaStreamSource(stream).connect(node);
  };
  pc.onconnectionstatechange = () => { result.state = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === "complete") r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); });
  const resp = await fetch("/v1/calls", { method: "POST", headers: { "Content-Type": "application/sdp" },
                                          body: pc.localDescription.sdp });
  if (resp.status !== 201) { result.error = await resp.text(); return; }
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  while (result.state !== "connected") await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 1500));  // let both sides settle
  const start = ctx.currentTime + 0.2;
  for (let i = 0; i < count; i++) {
    const t = start + i * intervalS;
    gain.gain.setValueAtTime(0.5, t); gain.gain.setValueAtTime(0, t + 0.06);
    result.beeps.push(t);
  }
  await new Promise((r) => setTimeout(r, (count * intervalS + 2) * 1000));
  const location = resp.headers.get("Location");  // microturn only: the call's own counters
  if (location) result.status = await (await fetch(location)).json();
  result.state = "done";
};
</script>"""


# -- a plain aiortc echo: the floor to compare against ---------------------------------------------
def plain_echo_app(
    new_peer: Callable[[], RTCPeerConnection] = RTCPeerConnection,
) -> web.Application:
    """The received audio track relayed back (aiortc decoding and re-encoding it); `new_peer`
    makes each call's peer connection (bench/capacity.py: the server's DTLS certificate)."""
    relay = MediaRelay()
    pcs: set[RTCPeerConnection] = set()

    async def offer(request: web.Request) -> web.Response:
        pc = new_peer()
        pcs.add(pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                pc.addTrack(relay.subscribe(track))

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201, text=pc.localDescription.sdp, content_type="application/sdp"
        )

    async def close(app: web.Application) -> None:
        await asyncio.gather(*(pc.close() for pc in pcs))

    app = web.Application()
    app.router.add_post("/v1/calls", offer)
    app.on_shutdown.append(close)
    return app


def match_latencies(beeps: list[float], onsets: list[float]) -> list[float]:
    """For each beep, the first onset heard after it (within one interval), in ms."""
    out = []
    for t in beeps:
        later = [o for o in onsets if t <= o < t + BEEP_INTERVAL_S]
        if later:
            out.append((later[0] - t) * 1000)
    return out


async def measure_echo(base_url: str, beeps: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await launch_chromium(playwright, None)
        try:
            page = await context.new_page()
            await page.route(
                f"{base_url}/__bench",
                lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE),
            )
            await page.goto(f"{base_url}/__bench")
            await page.evaluate(f"runBench({beeps}, {BEEP_INTERVAL_S})")
            result = await page.evaluate("window.bench")
        finally:
            await close_chromium(context)
    if result["error"]:
        raise RuntimeError(f"call refused: {result['error']}")
    lat = match_latencies(result["beeps"], result["onsets"])
    if not lat:
        raise RuntimeError("no echo heard")
    return {
        "beeps": len(result["beeps"]),
        "echoes": len(lat),
        "p50_ms": statistics.median(lat),
        # the second half alone: after the grace and the cushion adapted to this call's jitter
        "second_half_p50_ms": statistics.median(lat[len(lat) // 2 :]),
        "p90_ms": float(np.percentile(lat, 90)),
        "mean_ms": statistics.fmean(lat),
        "min_ms": min(lat),
        "max_ms": max(lat),
        "call": {
            k: v
            for k, v in (result.get("status") or {}).items()
            if k in ("audio_grace_ms", "audio_cushion_ms", "audio_underruns", "audio_late_ms")
        },
    }


async def latency(beeps: int, prefetches: list[int]) -> dict[str, Any]:
    enable_loopback_candidates()
    rows: dict[str, Any] = {}
    port = free_port()
    runner = web.AppRunner(plain_echo_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        print(f"  plain aiortc echo: {beeps} beeps ...", flush=True)
        rows["plain aiortc echo"] = await measure_echo(f"http://127.0.0.1:{port}", beeps)
    finally:
        await runner.cleanup()
    for prefetch in prefetches:
        args = ["--model", "echo", "--jitter-prefetch", str(prefetch)]
        server = ServerProcess(free_port(), args=args, log_path=RESULTS / "bench-media-server.log")
        with server:
            name = f"microturn echo, prefetch {prefetch}"
            print(f"  {name}: {beeps} beeps ...", flush=True)
            rows[name] = await measure_echo(server.url, beeps)
    return rows


# -- cost per call ---------------------------------------------------------------------------------
def speechlike(t: np.ndarray) -> np.ndarray:
    """Syllable-rate amplitude modulation of a few harmonics: keeps Opus busy like speech does."""
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return 0.2 * envelope * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 360 * t))


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


class ProcSampler:
    """CPU % since the previous sample and RSS of a process, as a time series."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = self._last_t = time.monotonic()
        self._last_cpu, _ = proc_stats(pid)
        self.samples: list[dict[str, float]] = []

    def sample(self) -> dict[str, float]:
        cpu, rss = proc_stats(self.pid)
        now = time.monotonic()
        row = {
            "t_s": round(now - self.t0, 1),
            "cpu_pct": round((cpu - self._last_cpu) / max(1e-6, now - self._last_t) * 100, 1),
            "rss_mb": round(rss / 2**20, 1),
        }
        self._last_cpu, self._last_t = cpu, now
        self.samples.append(row)
        return row


async def cost(calls: int, minutes: float) -> dict[str, Any]:
    enable_loopback_candidates()
    server = ServerProcess(
        free_port(),
        args=["--model", "echo", "--max-calls", str(calls)],
        log_path=RESULTS / "bench-media-cost-server.log",
    )
    with server:
        assert server.proc is not None
        pid = server.proc.pid
        idle = ProcSampler(pid)
        await asyncio.sleep(5)
        idle_row = idle.sample()
        clients = [
            CallClient(server.url, audio=SignalAudioTrack(speechlike), video=MovingSquareTrack())
            for _ in range(calls)
        ]
        for c in clients:
            await c.connect()
        for c in clients:
            await c.wait_event("session.created", timeout=60)
        sampler = ProcSampler(pid)
        duration = minutes * 60
        every = max(5.0, duration / 20)
        print(f"  {calls} calls for {minutes:g} min ...", flush=True)
        while (elapsed := time.monotonic() - sampler.t0) < duration:
            await asyncio.sleep(min(every, duration - elapsed))
            sampler.sample()
        samples = sampler.samples
        statuses = [await c.status() for c in clients]
        for c in clients:
            await c.hang_up()
            await c.close()
    total_cpu_pct = statistics.fmean(s["cpu_pct"] for s in samples)
    rss = [s["rss_mb"] for s in samples]
    half = len(rss) // 2
    return {
        "calls": calls,
        "minutes": minutes,
        "idle_cpu_pct": idle_row["cpu_pct"],
        "idle_rss_mb": idle_row["rss_mb"],
        "cpu_pct_total": round(total_cpu_pct, 1),
        "cpu_pct_per_call": round((total_cpu_pct - idle_row["cpu_pct"]) / calls, 1),
        "rss_mb_first_half_mean": round(statistics.fmean(rss[:half] or rss), 1),
        "rss_mb_second_half_mean": round(statistics.fmean(rss[half:]), 1),
        "rss_mb_end": rss[-1],
        "late_steps": sum(s["late_steps"] for s in statuses),
        "audio_gaps": sum(s["audio_gaps"] for s in statuses),
        "audio_gap_ms": sum(s["audio_gap_ms"] for s in statuses),
        "audio_late_ms": sum(s["audio_late_ms"] for s in statuses),
        "audio_reanchors": sum(s["audio_reanchors"] for s in statuses),
        "microturns": sum(s["microturns"] for s in statuses),
        "samples": samples,
    }


def print_tables(report: dict[str, Any]) -> None:
    lat = report["latency"]
    print("\nMouth-to-ear echo latency (Chromium beep -> server -> Chromium onset), ms")
    print(
        f"{'server':28} {'echoes':>7} {'p50':>7} {'p90':>7} {'mean':>7} {'min':>7} {'max':>7} "
        f"{'2nd half p50':>13}"
    )
    for name, r in lat.items():
        print(
            f"{name:28} {r['echoes']:>3}/{r['beeps']:<3} {r['p50_ms']:7.0f} {r['p90_ms']:7.0f} "
            f"{r['mean_ms']:7.0f} {r['min_ms']:7.0f} {r['max_ms']:7.0f} "
            f"{r.get('second_half_p50_ms', float('nan')):13.0f}"
        )
    names = list(lat)
    for name in names[1:]:
        added = lat[name]["p50_ms"] - lat[names[0]]["p50_ms"]
        late = lat[name]["second_half_p50_ms"] - lat[names[0]]["second_half_p50_ms"]
        print(
            f"{name}: framing adds {added:.0f} ms (p50) over the plain echo, "
            f"{late:.0f} ms in the second half"
        )
    c = report.get("cost")
    if c:
        print(f"\nMedia cost, {c['calls']} audio+video calls for {c['minutes']:g} min (echo model)")
        print(
            f"{'cpu % total':>12} {'cpu %/call':>11} {'idle rss MB':>12} {'rss MB 1st half':>16} "
            f"{'2nd half':>9} {'end':>7} {'late steps':>11} {'gap turns':>10} {'gap ms':>8} "
            f"{'late ms':>8} {'reanchors':>10}"
        )
        print(
            f"{c['cpu_pct_total']:12.1f} {c['cpu_pct_per_call']:11.1f} {c['idle_rss_mb']:12.1f} "
            f"{c['rss_mb_first_half_mean']:16.1f} {c['rss_mb_second_half_mean']:9.1f} "
            f"{c['rss_mb_end']:7.1f} {c['late_steps']:11d} {c['audio_gaps']:10d} "
            f"{c['audio_gap_ms']:8d} {c['audio_late_ms']:8d} {c['audio_reanchors']:10d}"
        )
        print(f"of {c['microturns']} micro-turns")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "args": vars(args)}
    print("latency:", flush=True)
    report["latency"] = await latency(args.beeps, [int(p) for p in args.prefetch.split(",")])
    if args.minutes > 0:
        print("cost:", flush=True)
        report["cost"] = await cost(args.calls, args.minutes)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.media", description=__doc__.splitlines()[0])
    parser.add_argument("--beeps", type=int, default=20)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--prefetch", default="0,4", help="jitter-buffer prefetch values to measure"
    )
    parser.add_argument("--quick", action="store_true", help="10 beeps, 1 minute")
    parser.add_argument("--json", default=str(RESULTS / "media.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.beeps, args.minutes = 10, 1.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(main_async(args))
    print_tables(report)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
