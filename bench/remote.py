"""Remote inference benchmark: what `microturn infer` adds to a step, and how fast calls move.

    .venv/bin/python -m bench.remote [--sessions 32] [--seconds 30] [--model echo|small|PATH]
                                     [--failover-sessions 8] [--json PATH]

1. Overhead. N sessions, each appending a micro-turn every 200 ms on its own phase (as calls do),
   for S seconds: once on an in-process engine (the default `microturn serve`), once through a
   `microturn infer` worker process on loopback (RemoteEngine, one WebSocket). Per append: the
   latency from append() to its output, and for the remote path its time on the wire (the round
   trip less the time the worker held the micro-turn, which the worker measures and sends back:
   framing, the socket both ways, both event loops). p50 / p99 / max of each.
2. Failover. M sessions on one worker, a second worker standing by; the first is killed (-9)
   mid-stream. Per session: the time from the kill to its first output from the standby (model
   output again, with `restart` set), the micro-turns answered as dropped meanwhile, and whether
   the session survived (no append raised, still open).

The model defaults to `echo` (a step costs ~nothing, so the numbers are the transport's); `small`
serves the shipped checkpoint. Tables on stdout, JSON in bench/results/remote.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.protocol import (
    MICROTURN_MS,
    MICROTURN_SAMPLES,
    Engine,
    MicroTurnInput,
    MicroTurnOutput,
)
from inference.remote import RemoteConfig, RemoteEngine
from infra.embedded_redis import EmbeddedRedis
from infra.processes import InferProcess

RESULTS = Path(__file__).parent / "results"
Answer = tuple[int, int, float, MicroTurnOutput, float]  # slot, index, latency ms, output, when
PERIOD_S = MICROTURN_MS / 1000


def micro_turn(index: int, session: int) -> MicroTurnInput:
    rng = np.random.default_rng(session * 1_000_003 + index)
    audio = (0.1 * rng.standard_normal(MICROTURN_SAMPLES)).astype(np.float32)
    return MicroTurnInput(index=index, audio=audio)


def summary(values_ms: list[float] | np.ndarray) -> dict[str, float]:
    v = np.asarray(values_ms, dtype=np.float64)
    if not v.size:
        return {"n": 0}
    return {
        "n": int(v.size),
        "p50_ms": round(float(np.percentile(v, 50)), 3),
        "p99_ms": round(float(np.percentile(v, 99)), 3),
        "max_ms": round(float(v.max()), 3),
    }


async def paced(
    engine: Engine,
    slots: list[int],
    seconds: float,
    record: list[Answer],
) -> int:
    """Every session appends every 200 ms on its own phase for `seconds`; `record` gets
    (slot, index, latency ms, output, when answered) per answer. Returns appends that raised."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    failed = 0

    async def one(n: int, slot: int) -> None:
        nonlocal failed
        phase = n * PERIOD_S / len(slots)
        index = 0
        pending: set[asyncio.Task[None]] = set()

        async def answer(index: int, t_append: float) -> None:
            nonlocal failed
            try:
                out = await engine.append(slot, micro_turn(index, slot))
            except Exception:
                failed += 1
                return
            now = time.perf_counter()
            record.append((slot, index, (now - t_append) * 1000.0, out, now))

        while index * PERIOD_S < seconds:
            await asyncio.sleep(max(0.0, t0 + phase + index * PERIOD_S - loop.time()))
            task = asyncio.ensure_future(answer(index, time.perf_counter()))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        await asyncio.gather(*pending)

    await asyncio.gather(*(one(n, slot) for n, slot in enumerate(slots)))
    return failed


def model_args(model: str) -> str | None:
    return None if model == "small" else model


async def in_process(model: str, sessions: int, seconds: float) -> dict[str, Any]:
    from inference.engine import Engine as LocalEngine
    from inference.engine import EngineConfig
    from inference.loading import load_model

    engine = LocalEngine(
        load_model(model_args(model)), EngineConfig(max_sessions=sessions, num_threads=1)
    )
    engine.warm_up()
    engine.start()
    try:
        slots = [await engine.open_async(f"local-{i}") for i in range(sessions)]
        record: list[Answer] = []
        failed = await paced(engine, slots, seconds, record)
    finally:
        engine.stop()
    live = [ms for _, _, ms, out, _ in record if not out.dropped]
    return {"latency": summary(live), "dropped": len(record) - len(live), "failed": failed}


def worker(redis_url: str, pool: str, model: str, sessions: int, log_dir: Path) -> InferProcess:
    return InferProcess(
        redis_url,
        pool=pool,
        model=model_args(model),
        max_sessions=sessions,
        log_path=log_dir / f"infer-{pool}-{time.monotonic_ns()}.log",
    )


async def remote(
    redis_url: str, model: str, sessions: int, seconds: float, log_dir: Path
) -> dict[str, Any]:
    process = await worker(redis_url, "bench-overhead", model, sessions, log_dir).astart()
    engine = RemoteEngine(
        RemoteConfig(redis_url=redis_url, max_sessions=sessions, pool="bench-overhead")
    )
    engine.start()
    try:
        slots = [await engine.open_async(f"remote-{i}") for i in range(sessions)]
        record: list[Answer] = []
        failed = await paced(engine, slots, seconds, record)
        wire_ms = engine.wire_ms()[-len(record) :] if record else np.zeros(0)
    finally:
        await engine.aclose()
        process.stop()
    live = [ms for _, _, ms, out, _ in record if not out.dropped]
    return {
        "latency": summary(live),
        "wire": summary(wire_ms),
        "dropped": len(record) - len(live),
        "failed": failed,
    }


async def failover(
    redis_url: str, model: str, sessions: int, seconds: float, log_dir: Path
) -> dict[str, Any]:
    pool = "bench-failover"
    doomed = worker(redis_url, pool, model, sessions, log_dir)
    standby = worker(redis_url, pool, model, sessions, log_dir)
    await doomed.astart()
    engine = RemoteEngine(
        RemoteConfig(redis_url=redis_url, max_sessions=sessions, pool=pool, stall_s=5.0)
    )
    engine.start()
    try:
        slots = [await engine.open_async(f"failover-{i}") for i in range(sessions)]
        await standby.astart()
        record: list[Answer] = []
        run = asyncio.ensure_future(paced(engine, slots, seconds, record))
        await asyncio.sleep(seconds / 2)
        killed_at = time.perf_counter()
        doomed.kill()
        failed = await run
    finally:
        await engine.aclose()
        doomed.stop()
        standby.stop()
    per_session: list[dict[str, Any]] = []
    again: list[float] = []
    for slot in slots:
        answers = [r for r in record if r[0] == slot]
        restart = next((r for r in answers if r[3].restart), None)
        if restart is not None:
            again.append(round((restart[4] - killed_at) * 1000, 1))
        per_session.append(
            {
                "output_again_ms": again[-1] if restart is not None else None,
                "dropped_microturns": sum(1 for r in answers if r[3].dropped),
                "reason": None if restart is None else restart[3].restart,
            }
        )
    return {
        "sessions": sessions,
        "output_again_within_1s": sum(1 for a in again if a <= 1000.0),
        "output_again": summary(again),
        "sessions_lost": sessions - len(again),
        "appends_failed": failed,
        "per_session": per_session,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": args.model,
        "sessions": args.sessions,
        "seconds": args.seconds,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    redis: EmbeddedRedis | None = None
    redis_url = args.redis_url
    if redis_url is None:
        redis = EmbeddedRedis(tcp=True)
        redis.start()
        redis_url = redis.url
    try:
        results["in_process"] = await in_process(args.model, args.sessions, args.seconds)
        results["remote"] = await remote(
            redis_url, args.model, args.sessions, args.seconds, log_dir
        )
        local, far = results["in_process"]["latency"], results["remote"]["latency"]
        if local.get("n") and far.get("n"):
            results["p99_difference_ms"] = round(far["p99_ms"] - local["p99_ms"], 3)
        if args.failover_sessions:
            results["failover"] = await failover(
                redis_url, args.model, args.failover_sessions, args.failover_seconds, log_dir
            )
    finally:
        if redis is not None:
            redis.close()
    return results


def table(results: dict[str, Any]) -> str:
    local, far = results["in_process"], results["remote"]
    lines = [
        f"{results['sessions']} sessions, {results['seconds']:g} s, model {results['model']}",
        "",
        "| path | append -> output p50 / p99 / max ms | on the wire p50 / p99 / max ms | dropped |",
        "|---|---|---|---|",
        f"| in process | {_triple(local['latency'])} | | {local['dropped']} |",
        f"| remote worker (loopback) | {_triple(far['latency'])} | {_triple(far['wire'])} "
        f"| {far['dropped']} |",
    ]
    if "failover" in results:
        f = results["failover"]
        lines += [
            "",
            f"failover: {f['sessions']} sessions, worker killed (-9): output again within 1 s: "
            f"{f['output_again_within_1s']} of {f['sessions']}; time to output "
            f"{_triple(f['output_again'])} ms; sessions lost {f['sessions_lost']}, "
            f"appends failed {f['appends_failed']}, micro-turns dropped per session "
            f"{[p['dropped_microturns'] for p in f['per_session']]}",
        ]
    return "\n".join(lines)


def _triple(s: dict[str, float]) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} / {s['max_ms']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__)
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default="echo", help="echo, small (shipped), or a checkpoint")
    parser.add_argument("--failover-sessions", type=int, default=8, help="0: skip")
    parser.add_argument("--failover-seconds", type=float, default=6.0)
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--json", type=Path, default=RESULTS / "remote.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = asyncio.run(main_async(args))
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
