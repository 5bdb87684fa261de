"""What one step of the shipped model costs, measured on this machine: the numbers a GPU estimate
starts from (README, "Sessions per GPU").

    .venv/bin/python -m bench.step_cost [--batches 1,8,32,128] [--json PATH]
    .venv/bin/python -m bench.step_cost --gpu [--batches 1,8,32,128,512]   # on a CUDA machine

Per batch size B, one streaming step of `small` (`InteractionModel.step`, calls 60 s old):

- FLOPs (torch's FlopCounterMode: matmuls, convolutions and attention; FFTs and elementwise work
  are not counted, so this is a floor), per session;
- kernels: the ATen ops dispatched, in all and in the three pure heads CUDA graphs replay
  (inference/hotstep.py: flow.sample, text_head.generate, vocoder.stream); on a GPU at small
  batch each costs a launch (~5-10 us) whatever its size;
- host time per session: the served step (`ReferenceModel.step`: stacking inputs, per-call noise,
  reading the outputs back, each call's decoding) with the network's answer given, on this CPU
  (the pitch tracker's numpy recurrence inside the network's step is not in it).

And the memory a session holds: its preallocated state with the cache in bfloat16 (as on CUDA),
which is also what each step reads of it (the attention reads the whole window).

`--gpu` is the device check: the served step (Engine.step_sync, every session due) at each batch
size, eager and with `--step-mode cudagraph`, p50 / p99 ms, peak CUDA memory, and whether the two
modes gave identical outputs step for step.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from inference.kvcache import Rows
from inference.model import InteractionModel, StepInput, StreamState
from inference.protocol import MicroTurnInput
from inference.reference import ReferenceModel

RESULTS = Path(__file__).parent / "results"
AGE = 300  # micro-turns: a full window (150) and more


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched (what a GPU launches), by the head they ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.where = "trunk"

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[self.where] += 1
        return func(*args, **(kwargs or {}))


HEADS = (("flow", "sample"), ("text_head", "generate"), ("vocoder", "stream"))


def counted_heads(net: InteractionModel, counter: OpCounter) -> None:
    """Tag ops run inside the three pure heads (instance attributes, this network only)."""
    for part, method in HEADS:
        module = getattr(net, part)
        fn = getattr(module, method)

        def tagged(*args: Any, _fn: Any = fn, _name: str = part) -> Any:
            counter.where = _name
            try:
                return _fn(*args)
            finally:
                counter.where = "trunk"

        setattr(module, method, tagged)


def aged_state(net: InteractionModel, batch: int) -> StreamState:
    state = net.new_state(batch, "cpu", torch.float32)
    state.n_microturns[:] = AGE
    return state


def step_input(net: InteractionModel, batch: int) -> StepInput:
    gen = torch.Generator().manual_seed(0)
    return StepInput(
        audio=0.1 * torch.randn(batch, 3200, generator=gen),
        frames=torch.randint(0, 256, (batch, 40, 40, 3), dtype=torch.uint8, generator=gen),
        has_frame=torch.ones(batch, dtype=torch.bool),
        text_in=torch.full((batch, net.cfg.text_in_slots), 256, dtype=torch.long),
        index=torch.full((batch,), AGE, dtype=torch.long),
        noise=torch.randn(batch, 1280, generator=gen),
    )


@torch.inference_mode()
def measure(served: ReferenceModel, batch: int, repeats: int) -> dict[str, Any]:
    net = served.net
    rows = Rows.of(list(range(batch)), "cpu")
    state, inp = aged_state(net, batch), step_input(net, batch)
    flops = FlopCounterMode(display=False)
    with flops:
        net.step(state, rows, inp)
    counter = OpCounter()
    counted_heads(net, counter)
    with counter:
        net.step(aged_state(net, batch), rows, inp)
    for part, method in HEADS:  # back to the class's methods
        delattr(getattr(net, part), method)

    inputs = [
        MicroTurnInput(AGE, inp.audio[b].numpy(), inp.frames[b].numpy()) for b in range(batch)
    ]
    sessions = [served.new_session(f"c{b}", b) for b in range(batch)]
    for s in sessions:
        s.take_turn()
    net_ms, host_ms = [], []
    for _ in range(repeats):
        state = aged_state(net, batch)
        t0 = time.perf_counter()
        out = net.step(state, rows, inp)
        net_ms.append((time.perf_counter() - t0) * 1000)
        # The served step with the network's answer ready: only the host's own work is left.
        vars(net)["step"] = lambda *_, _out=out: _out
        try:
            t0 = time.perf_counter()
            served.step(state, list(range(batch)), inputs, sessions)
            host_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            del vars(net)["step"]
    host = float(np.median(host_ms))
    total_ops = sum(counter.ops.values())
    return {
        "batch": batch,
        "flops_per_session": flops.get_total_flops() / batch,
        "ops": total_ops,
        "ops_in_heads": total_ops - counter.ops["trunk"],
        "ops_by_part": dict(counter.ops),
        "net_step_ms_cpu": round(float(np.median(net_ms)), 2),
        "host_ms_per_session_cpu": round(host / batch, 3),
    }


def state_bytes(net: InteractionModel) -> dict[str, int]:
    state = net.new_state(1, "cpu", torch.bfloat16)
    total = sum(t.numel() * t.element_size() for t in state.tensors())
    return {"state_bytes_per_session_bf16_cache": total, "kv_cache_bytes": state.cache.nbytes()}


def gpu_check(batches: list[int], steps: int) -> dict[str, Any]:
    """Eager against CUDA graphs on the served step, same inputs, same order (see the docstring)."""
    from inference.engine import Engine, EngineConfig

    capacity = max(batches)
    rng = np.random.default_rng(0)
    inputs = [
        [
            MicroTurnInput(
                i,
                (0.1 * rng.standard_normal(3200)).astype(np.float32),
                rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
                "hello there " if i == 1 else "",
            )
            for i in range(steps + 3)
        ]
        for _ in range(capacity)
    ]
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "rows": []}
    results: dict[str, list[Any]] = {}
    for mode in ("eager", "cudagraph"):
        engine = Engine(
            ReferenceModel.from_checkpoint(None),
            EngineConfig(max_sessions=capacity, device="cuda", step_mode=mode, gc_freeze=False),
        )
        engine.warm_up()
        torch.cuda.reset_peak_memory_stats()
        seen: list[Any] = []
        for batch in batches:
            slots = [engine.open(f"{batch}-{i}") for i in range(batch)]
            times = []
            for i in range(steps + 3):
                t0 = time.perf_counter()
                got = engine.step_sync({s: inputs[s][i] for s in slots})
                if i >= 3:  # the first steps at a new batch size capture its graphs
                    times.append((time.perf_counter() - t0) * 1000)
                seen.append({s: (o.text, o.audio) for s, o in got.items()})
            for s in slots:
                engine.close(s)
            out["rows"].append(
                {
                    "mode": mode,
                    "batch": batch,
                    "step_ms_p50": round(float(np.percentile(times, 50)), 2),
                    "step_ms_p99": round(float(np.percentile(times, 99)), 2),
                }
            )
        out[f"peak_cuda_bytes_{mode}"] = torch.cuda.max_memory_allocated()
        results[mode] = seen
    same = all(
        a.keys() == b.keys()
        and all(a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]) for k in a)
        for a, b in zip(results["eager"], results["cudagraph"], strict=True)
    )
    out["identical_outputs"] = same
    for row in out["rows"]:
        print(
            f"{row['mode']:>9} batch {row['batch']:>4}: {row['step_ms_p50']:.2f} / "
            f"{row['step_ms_p99']:.2f} ms"
        )
    print(f"identical outputs: {same}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step_cost", description=__doc__)
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--gpu", action="store_true", help="the device check (needs CUDA)")
    parser.add_argument("--steps", type=int, default=20, help="--gpu: steps per batch size")
    args = parser.parse_args(argv)
    if args.gpu:
        result = gpu_check([int(b) for b in args.batches.split(",")], args.steps)
        path = args.json or RESULTS / "step_cost_gpu.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
        return 0 if result["identical_outputs"] else 1
    args.json = args.json or RESULTS / "step_cost.json"
    torch.set_num_threads(1)
    served = ReferenceModel.from_checkpoint(None)
    net = served.net
    params = sum(p.numel() for p in net.parameters())
    rows = [measure(served, int(b), args.repeats) for b in args.batches.split(",")]
    result = {
        "model": net.cfg.name,
        "parameters": params,
        "weights_bytes_bf16": params * 2,
        **state_bytes(net),
        "rows": rows,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(
        f"{net.cfg.name}: {params / 1e6:.2f} M parameters; state per session (bf16 cache) "
        f"{result['state_bytes_per_session_bf16_cache'] / 1e6:.2f} MB"
    )
    print(
        "| batch | MFLOP / session-step | ATen ops / step (in the heads) | host ms / session (CPU) |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['flops_per_session'] / 1e6:.1f} | {r['ops']} "
            f"({r['ops_in_heads']}) | {r['host_ms_per_session_cpu']:.3f} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
