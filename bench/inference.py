"""Inference benchmark: batched step latency of the shipped `small` model on this machine.

    .venv/bin/python -m bench.inference [--quick] [--json PATH] [--threads N]

1. Step table. For 1, 2, 4, 8, 16 concurrent calls and call ages 0 s, 60 s, 10 and 60 min: p50/p99 of
   the wall time of one batched engine step with every call due (the synchronised worst case; the
   work the engine thread does per tick: collate inputs, model step, vocoder, outputs), its CPU
   time, and the real-time factor RTF = step time / 200 ms. The 20 cells take turns step by step
   (all their calls open at once), so a busy spell of a shared machine does not land on one cell.
   Call age is fast-forwarded, not lived: each call's KV window is filled with random keys and
   values at the positions the last W micro-turns of a call of that age would hold, its step
   counter and clock index are set to that age, then the steps are measured. The step does the same
   work whatever the cache holds (fixed-shape attention over sinks + the whole window, a mask for
   the empty part), so this is the cost a call of that age pays; a model with pins (config
   `pins`) gets every pin filled as well, the worst case. The full run cross-checks it by living
   60 s of 8 calls at full speed and timing the last steps. The state a call holds (KV window,
   pins, feature and vocoder tails) is printed in bytes: it does not depend on the call's age.
2. Capacity: more calls at 10 min until p99 reaches 200 ms; the largest count under it (and under
   100 ms, the budget that leaves this machine's other core's worth of time for media).
3. Live: N calls appended through asyncio on the engine thread, each paced at 200 ms on its own
   phase, for a few seconds: latency from append() to result, late outputs, dropped inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.config import FRAME_SIZE, TOKENS_PER_MICROTURN
from inference.engine import Engine, EngineConfig, default_threads
from inference.kvcache import SINK_POS
from inference.model import InteractionModel
from inference.protocol import MICROTURN_MS, MICROTURN_SAMPLES, MicroTurnInput
from inference.reference import ReferenceModel

RESULTS = Path(__file__).parent / "results"
CALLS = (1, 2, 4, 8, 16)
AGES_S = (0, 60, 600, 3600)
MORE_CALLS = (24, 32, 40, 48, 56, 64, 72, 80, 96, 128)
DEADLINE_MS = float(MICROTURN_MS)
HEADROOM_MS = 100.0
LAG_PROBE_S = 0.005


def inputs_for(n_calls: int, index: int, rng: np.random.Generator) -> list[MicroTurnInput]:
    t = np.arange(MICROTURN_SAMPLES) / 16_000
    out = []
    for c in range(n_calls):
        audio = 0.1 * np.sin(2 * np.pi * (150 + 40 * c) * t) + 0.01 * rng.standard_normal(
            MICROTURN_SAMPLES
        )
        frame = rng.integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        text = "what is on my screen?" if index % 50 == 0 else ""
        out.append(MicroTurnInput(index, audio.astype(np.float32), frame, text))
    return out


def reference(engine: Engine) -> InteractionModel:
    """The network behind the engine (fast-forwarding writes its KV window directly)."""
    assert isinstance(engine.model, ReferenceModel), "the benchmark serves the reference model"
    return engine.model.net


def fast_forward(engine: Engine, slots: list[int], age_microturns: int, seed: int) -> None:
    """Make these (already stepped once) calls look `age_microturns` old to the model."""
    state, cfg = engine.state, reference(engine).cfg
    if age_microturns == 0:
        return
    gen = torch.Generator().manual_seed(seed)
    window = min(age_microturns, cfg.window_microturns)
    rows = torch.tensor(slots)
    cache = state.cache
    for m in range(age_microturns - window, age_microturns):
        entries = cache.entries(torch.tensor([m]))[0]
        for j, e in enumerate(entries.tolist()):
            cache.kpos[rows, e] = TOKENS_PER_MICROTURN * m + j
    shape = (cache.k.shape[0], len(slots), *cache.k.shape[2:])
    live = slice(cfg.n_sinks, None)
    k = torch.randn(shape, generator=gen).to(cache.k.dtype)
    v = torch.randn(shape, generator=gen).to(cache.v.dtype)
    cache.k[:, rows, :, live] = k[:, :, :, live]
    cache.v[:, rows, :, live] = v[:, :, :, live]
    assert (cache.kpos[rows, : cfg.n_sinks] == SINK_POS).all()
    if cache.pins:  # every pin taken, by micro-turns out of the window: all of them are read
        pin_shape = (cache.pin_k.shape[0], len(slots), *cache.pin_k.shape[2:])
        cache.pin_k[:, rows] = torch.randn(pin_shape, generator=gen).to(cache.pin_k.dtype)
        cache.pin_v[:, rows] = torch.randn(pin_shape, generator=gen).to(cache.pin_v.dtype)
        oldest = max(0, age_microturns - cfg.window_microturns - cache.pins)
        cache.pin_mt[rows] = torch.arange(oldest, oldest + cache.pins)
        cache.pin_count[rows] = cache.pins
    state.n_microturns[rows] = age_microturns
    for slot in slots:
        engine._slots[slot].microturns = age_microturns  # type: ignore[union-attr]


def state_bytes_per_call(engine: Engine) -> int:
    """Bytes of preallocated state one call holds (every tensor of the engine's state is per
    slot): the same for a call of any age."""
    state = engine.state
    slots = int(state.n_microturns.shape[0])
    return sum(t.numel() * t.element_size() for t in state.tensors()) // slots


def _summary(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    w, c = np.array(wall), np.array(cpu)
    p50, p99 = float(np.percentile(w, 50)), float(np.percentile(w, 99))
    return {
        "step_ms_p50": round(p50, 2),
        "step_ms_p99": round(p99, 2),
        "step_ms_max": round(float(w.max()), 2),
        "cpu_ms_p50": round(float(np.percentile(c, 50)), 2),
        "cpu_ms_p99": round(float(np.percentile(c, 99)), 2),
        "rtf_p50": round(p50 / MICROTURN_MS, 3),
        "rtf_p99": round(p99 / MICROTURN_MS, 3),
        "real_time": p99 < DEADLINE_MS,
    }


def timed_step(engine: Engine, batch: dict[int, MicroTurnInput]) -> tuple[float, float]:
    """-> (wall ms, CPU ms of this process) of one batched step."""
    w0, c0 = time.perf_counter(), time.process_time()
    engine.step_sync(batch)
    return (time.perf_counter() - w0) * 1000.0, (time.process_time() - c0) * 1000.0


def time_cells(
    engine: Engine, cells: list[tuple[int, int]], steps: int, warmup: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Time (calls, age) cells. All cells' calls are open at once and the cells take turns, one
    step each, so a slow spell of a shared machine spreads over every cell instead of one."""
    rng = np.random.default_rng(seed)
    groups = []
    try:
        for n_calls, age_s in cells:
            slots = [engine.open(f"bench-{n_calls}-{age_s}-{i}") for i in range(n_calls)]
            index = age_s * 1000 // MICROTURN_MS
            groups.append((slots, index))
            engine.step_sync(dict(zip(slots, inputs_for(n_calls, index, rng), strict=True)))
            fast_forward(engine, slots, index, seed)
        wall: list[list[float]] = [[] for _ in cells]
        cpu: list[list[float]] = [[] for _ in cells]
        for i in range(warmup + steps):
            for c, (slots, index) in enumerate(groups):
                batch = dict(zip(slots, inputs_for(len(slots), index + 1 + i, rng), strict=True))
                w, t = timed_step(engine, batch)
                if i >= warmup:
                    wall[c].append(w)
                    cpu[c].append(t)
    finally:
        for slots, _ in groups:
            for slot in slots:
                engine.close(slot)
    return [
        {"calls": n, "age_s": a, "steps": steps, **_summary(w, t)}
        for (n, a), w, t in zip(cells, wall, cpu, strict=True)
    ]


def lived_check(engine: Engine, n_calls: int, age_s: int, last: int) -> dict[str, Any]:
    """Live `age_s` of n calls at full speed (every micro-turn really stepped); time the last steps."""
    rng = np.random.default_rng(1)
    slots = [engine.open(f"lived-{i}") for i in range(n_calls)]
    total = age_s * 1000 // MICROTURN_MS
    wall, cpu = [], []
    try:
        for i in range(total + last):
            w, c = timed_step(engine, dict(zip(slots, inputs_for(n_calls, i, rng), strict=True)))
            if i >= total:
                wall.append(w)
                cpu.append(c)
    finally:
        for slot in slots:
            engine.close(slot)
    return {"calls": n_calls, "age_s": age_s, "steps": last, **_summary(wall, cpu)}


async def live_run(engine: Engine, n_calls: int, seconds: float) -> dict[str, Any]:
    """n calls through append() on the engine thread, each paced at 200 ms on its own phase."""
    rng = np.random.default_rng(2)
    slots = [engine.open(f"live-{i}") for i in range(n_calls)]
    turns = int(seconds * 1000 / MICROTURN_MS)
    latencies: list[float] = []
    late = 0

    async def call(slot: int, phase_s: float) -> None:
        nonlocal late
        loop = asyncio.get_running_loop()
        start = loop.time() + phase_s
        pending = []
        for i in range(turns):
            await asyncio.sleep(max(0.0, start + i * MICROTURN_MS / 1000 - loop.time()))
            inp = inputs_for(1, i, rng)[0]
            t0 = time.perf_counter()

            async def one(inp: MicroTurnInput = inp, t0: float = t0) -> None:
                nonlocal late
                out = await engine.append(slot, inp)
                latencies.append((time.perf_counter() - t0) * 1000.0)
                late += int(out.late)

            pending.append(asyncio.ensure_future(one()))
        await asyncio.gather(*pending)

    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:  # how late the event loop wakes up while the engine works
        loop = asyncio.get_running_loop()
        while not done.is_set():
            t0 = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            lags.append((loop.time() - t0 - LAG_PROBE_S) * 1000.0)

    engine.start()
    try:
        before = engine.stats()
        prober = asyncio.ensure_future(probe())
        calls = (call(s, float(rng.uniform(0, 0.2))) for s in slots)
        await asyncio.gather(asyncio.sleep(seconds), *calls)
        done.set()
        await prober
        after = engine.stats()
    finally:
        engine.stop()
        for slot in slots:
            engine.close(slot)
    arr = np.array(latencies or [0.0])
    return {
        "calls": n_calls,
        "seconds": seconds,
        "outputs": len(latencies),
        "latency_ms_p50": round(float(np.percentile(arr, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(arr, 99)), 2),
        "late_outputs": late,
        "dropped_inputs": after.dropped_inputs - before.dropped_inputs,
        "steps": after.steps - before.steps,
        "mean_batch": round(len(latencies) / max(1, after.steps - before.steps), 2),
        "loop_lag_ms_p50": round(float(np.percentile(lags, 50)), 2),
        "loop_lag_ms_p99": round(float(np.percentile(lags, 99)), 2),
        "loop_lag_ms_max": round(float(np.max(lags)), 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'calls':>5} {'age':>6} | {'wall p50':>8} {'wall p99':>8} | {'cpu p50':>7} {'cpu p99':>7} |"
        f" {'RTF p50':>7} {'RTF p99':>7} | real time"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        age = f"{r['age_s'] // 60} min" if r["age_s"] >= 60 else f"{r['age_s']} s"
        lines.append(
            f"{r['calls']:>5} {age:>6} | {r['step_ms_p50']:8.1f} {r['step_ms_p99']:8.1f} |"
            f" {r['cpu_ms_p50']:7.1f} {r['cpu_ms_p99']:7.1f} | {r['rtf_p50']:7.3f} {r['rtf_p99']:7.3f} |"
            f" {'yes' if r['real_time'] else 'NO'}"
        )
    return "\n".join(lines)


def progress(r: dict[str, Any]) -> str:
    return (
        f"  {r['calls']:3d} calls at {r['age_s']:4d} s: wall p50 {r['step_ms_p50']:6.1f} / p99 "
        f"{r['step_ms_p99']:6.1f} ms, cpu p99 {r['cpu_ms_p99']:6.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps, no lived cross-check")
    parser.add_argument("--json", type=Path, default=RESULTS / "inference.json")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the engine's)"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint directory (default: shipped small)"
    )
    args = parser.parse_args(argv)
    logging.getLogger("inference.engine").setLevel(logging.ERROR)  # late steps are in the table
    steps, warmup = (20, 3) if args.quick else (100, 5)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    capacity = max(CALLS + MORE_CALLS)
    engine = Engine.from_checkpoint(
        args.checkpoint, EngineConfig(max_sessions=capacity, num_threads=threads)
    )
    cfg = reference(engine).cfg
    state_bytes = state_bytes_per_call(engine)
    print(
        f"{engine.model_name}: d {cfg.d_model}, {cfg.n_layers} layers, window {cfg.window_microturns} "
        f"micro-turns, flow {cfg.flow_steps} Euler steps, Griffin-Lim {cfg.griffin_lim_iters} iterations; "
        f"{engine.device}, {threads} torch thread(s) of {os.cpu_count()} cores; "
        f"pins {cfg.pins}; state per call {state_bytes} bytes at any age",
        flush=True,
    )
    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = time_cells(engine, [(n, a) for n in CALLS for a in AGES_S], steps, warmup)
    for r in rows:
        print(progress(r), flush=True)
    capacity_rows = []  # beyond 16 calls, at the oldest age, until neither wall nor CPU keeps up
    for n in MORE_CALLS:
        capacity_rows += time_cells(engine, [(n, AGES_S[-1])], max(20, steps // 2), warmup)
        print(progress(capacity_rows[-1]), flush=True)
        if min(capacity_rows[-1]["step_ms_p99"], capacity_rows[-1]["cpu_ms_p99"]) >= DEADLINE_MS:
            break
    everything = rows + capacity_rows

    def largest(limit_ms: float, key: str = "step_ms_p99") -> int:
        ok = 0
        for n in sorted({r["calls"] for r in everything}):
            cells = [r for r in everything if r["calls"] == n]
            if all(r[key] < limit_ms for r in cells):
                ok = n
            else:
                break
        return ok

    lived = None if args.quick else lived_check(engine, 8, 60, 50)
    live = [asyncio.run(live_run(engine, n, 4.0 if args.quick else 10.0)) for n in (0, 8, 16)]

    print()
    print(table(rows + capacity_rows))
    print(
        "(wall: step latency; cpu: the process's CPU time during the step, close to wall when the "
        "engine had its core;\n ages 60 s and 10 min are fast-forwarded, see the docstring; "
        f"load average {load_before} before, {os.getloadavg()[0]:.2f} after)"
    )
    print(
        f"largest real-time call count (p99 < {DEADLINE_MS:.0f} ms at every age): wall "
        f"{largest(DEADLINE_MS)}, CPU {largest(DEADLINE_MS, 'cpu_ms_p99')}"
    )
    print(
        f"largest with media headroom (p99 < {HEADROOM_MS:.0f} ms): wall {largest(HEADROOM_MS)}, "
        f"CPU {largest(HEADROOM_MS, 'cpu_ms_p99')}"
    )
    if lived:
        ff = next(r for r in rows if r["calls"] == 8 and r["age_s"] == 60)
        print(
            f"cross-check, 8 calls really stepped for 60 s, last {lived['steps']} steps: wall p50 "
            f"{lived['step_ms_p50']} / cpu p50 {lived['cpu_ms_p50']} ms (fast-forwarded 60 s: "
            f"{ff['step_ms_p50']} / {ff['cpu_ms_p50']})"
        )
    idle = live[0]
    print(
        f"event-loop lag with the engine idle: p50 {idle['loop_lag_ms_p50']} / p99 "
        f"{idle['loop_lag_ms_p99']} / max {idle['loop_lag_ms_max']} ms"
    )
    for r in live[1:]:
        print(
            f"live via asyncio, {r['calls']} calls x {r['seconds']:.0f} s on their own phases: append->result "
            f"p50 {r['latency_ms_p50']} / p99 {r['latency_ms_p99']} ms, late {r['late_outputs']}, "
            f"dropped {r['dropped_inputs']}, mean batch {r['mean_batch']}; event-loop lag p50 "
            f"{r['loop_lag_ms_p50']} / p99 {r['loop_lag_ms_p99']} / max {r['loop_lag_ms_max']} ms"
        )
    result = {
        "model": engine.model_name,
        "config": cfg.to_dict(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": threads,
            "device": str(engine.device),
        },
        "quick": args.quick,
        "state_bytes_per_call": state_bytes,
        "steps_per_cell": steps,
        "age_method": "fast-forward: KV window filled with random keys/values at the positions of the "
        "last W micro-turns, step counter and clock index set to the age",
        "table": rows,
        "capacity": capacity_rows,
        "max_realtime_calls": largest(DEADLINE_MS),
        "max_realtime_calls_by_cpu": largest(DEADLINE_MS, "cpu_ms_p99"),
        "max_calls_under_100ms": largest(HEADROOM_MS),
        "max_calls_under_100ms_by_cpu": largest(HEADROOM_MS, "cpu_ms_p99"),
        "load_average_before_after": [float(load_before), os.getloadavg()[0]],
        "lived_check": lived,
        "live": live,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
