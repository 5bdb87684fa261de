"""The hot step, faster: `--step-mode eager | compile | cudagraph` (the gpt-fast switch).

At the batch sizes a GPU serves calls at (one to a few hundred rows of a d=192 model), a step is
launch-bound, not FLOP-bound: the reference model's step is ~1,500 small kernels (the flow head's
8 Euler steps through its blocks, the text head's byte-by-byte decoder, 8 Griffin-Lim iterations
of FFTs), each a few microseconds of GPU work behind ~5-10 us of launch from Python. Those three
heads are pure functions of their inputs (no state is written inside them; the noise is an
input), so they can be replayed:

    cudagraph  each head captured as a CUDA graph per (batch size, shapes, dtypes, autocast) at
               its first call, then replayed: inputs copied into the graph's static buffers, one
               launch, outputs copied out. Capture runs with autocast's weight cache off (a cached
               cast would be freed behind the graph) and never in a step that others wait on
               twice: the first step at each batch size pays it (a few ms). CUDA only.
    compile    each head through `torch.compile` (inductor; dynamic batch sizes); on CUDA
               inductor fuses the elementwise work. Works on CPU too, after a compile of about a
               minute.
    eager      as written (the default).

The trunk (attention over the KV cache, pins found with `nonzero`, the pitch tracker's numpy
recurrence) is left eager: its shapes and its writes depend on the data. `accelerate()` applies a
mode to a served model whose network is the reference `InteractionModel`; other models are served
eagerly (with a warning). `GraphedFunction(..., capture=False)` runs the cudagraph mode's exact
copy-in / call / copy-out path without capturing: how CPU tests check it gives identical outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from inference.model import InteractionModel

log = logging.getLogger(__name__)

STEP_MODES = ("eager", "compile", "cudagraph")
HEADS = (("flow", "sample"), ("text_head", "generate"), ("vocoder", "stream"))
WARMUP_CALLS = 3  # eager calls on a side stream before capture (cuBLAS / cuFFT plans)
MAX_GRAPHS = 512  # per head: batch sizes x input variants; past it, calls run eagerly


@dataclass
class _Graph:
    inputs: list[Tensor]  # static buffers, in argument order (tensors only)
    output: Any  # the static outputs: a tensor or a tuple of tensors
    graph: torch.cuda.CUDAGraph | None  # None: the dry run (capture=False)
    call: Callable[[], Any]  # runs the function on the static inputs (the dry run's replay)


def _key(args: tuple[Any, ...]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(("t", tuple(a.shape), a.dtype, a.device))
        else:
            parts.append(("v", a))  # None, step counts: part of what is captured
    device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
    autocast = torch.is_autocast_enabled(device)
    dtype = torch.get_autocast_dtype(device) if autocast else None
    return (*parts, autocast, dtype)


def _clone(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output.clone()
    return type(output)(t.clone() for t in output)


class GraphedFunction:
    """`fn(*args)` replayed from a graph captured per input signature (module docstring).

    `fn` must be pure: tensors in, tensors out (or a tuple of them), nothing else written, no
    host sync, no randomness; its non-tensor arguments are baked into the graph."""

    def __init__(self, fn: Callable[..., Any], *, capture: bool = True, name: str = "") -> None:
        self.fn = fn
        self.capture = capture
        self.name = name or getattr(fn, "__qualname__", "fn")
        self.graphs: dict[tuple[Any, ...], _Graph] = {}
        self.pool: Any = None

    def __call__(self, *args: Any) -> Any:
        key = _key(args)
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= MAX_GRAPHS:
                return self.fn(*args)
            entry = self.graphs[key] = self._record(args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        for static, given in zip(entry.inputs, tensors, strict=True):
            static.copy_(given)
        if entry.graph is not None:
            entry.graph.replay()
            return _clone(entry.output)
        return _clone(entry.call())

    def _record(self, args: tuple[Any, ...]) -> _Graph:
        inputs = [a.clone() for a in args if isinstance(a, Tensor)]
        slots = iter(inputs)
        static_args = tuple(next(slots) if isinstance(a, Tensor) else a for a in args)

        def call() -> Any:
            return self.fn(*static_args)

        if not self.capture:
            return _Graph(inputs, None, None, call)
        device = inputs[0].device
        assert device.type == "cuda", "CUDA graphs need CUDA tensors"
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda")
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        # Autocast's cast cache off: a weight cast cached before capture would be freed when the
        # caller's autocast region ends, and the graph would read freed memory.
        with torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    call()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                output = call()
        log.info("captured %s for %s", self.name, [tuple(t.shape) for t in inputs])
        return _Graph(inputs, output, graph, call)


def accelerate(model: Any, mode: str, device: torch.device, *, capture: bool = True) -> str:
    """Switch the served model's hot heads to `mode`; returns the mode in effect."""
    if mode not in STEP_MODES:
        raise ValueError(f"step mode must be one of {STEP_MODES}, not {mode!r}")
    if mode == "eager":
        return mode
    net = getattr(model, "net", None)
    if not isinstance(net, InteractionModel):
        log.warning("step mode %s applies to the reference model only; serving eagerly", mode)
        return "eager"
    if mode == "cudagraph" and capture and device.type != "cuda":
        raise ValueError("--step-mode cudagraph needs a CUDA device")
    for part, method in HEADS:
        module = getattr(net, part)
        fn = getattr(module, method)
        if method in vars(module):  # switched already (a second engine on the same network)
            continue
        if mode == "compile":
            fast: Callable[..., Any] = torch.compile(fn, dynamic=True)
        else:
            fast = GraphedFunction(fn, capture=capture, name=f"{part}.{method}")
        setattr(module, method, fast)  # this instance only; the class keeps the eager method
    log.info("hot step: %s (%s)", mode, ", ".join(f"{p}.{m}" for p, m in HEADS))
    return mode
