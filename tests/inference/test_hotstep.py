"""The hot-step switch (inference/hotstep.py) changes no output, on CPU: the CUDA-graph mode's
copy-in / call / copy-out path run without capture gives bit-identical steps, and torch.compile
gives the same text and audio within float rounding, for calls of any ages in batches of any size
and rows. The capture itself needs CUDA (a GPU check, not run here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.engine import Engine, EngineConfig
from inference.hotstep import HEADS, GraphedFunction, accelerate
from inference.protocol import MicroTurnInput, MicroTurnOutput
from inference.reference import ReferenceModel
from tests.inference.conftest import make_inputs, random_tiny

# (slots due) per step: batches of 1, 2 and 3 rows, contiguous and not, calls of different ages
SCHEDULE = [[0], [0, 1], [0, 1, 2], [2], [0, 2], [1, 2], [0, 1, 2], [1], [0, 1, 2], [0, 2]]


def engine(mode: str | None, capture: bool = False) -> Engine:
    # the copy pointer's memory and the voice tape go through the graphs too
    net = random_tiny(copy_memory=8, voice_window=6)
    assert net.text_head.copy is not None
    with torch.no_grad():
        net.text_head.copy.gate.bias.fill_(-1.0)
    served = ReferenceModel(net)
    if mode is not None:
        accelerate(served, mode, torch.device("cpu"), capture=capture)
    return Engine(served, EngineConfig(max_sessions=3, num_threads=1, gc_freeze=False))


def run(e: Engine) -> list[dict[int, MicroTurnOutput]]:
    slots = [e.open(f"call-{i}") for i in range(3)]
    inputs = {s: make_inputs(len(SCHEDULE), seed=s) for s in slots}
    taken = dict.fromkeys(slots, 0)
    outs = []
    for due in SCHEDULE:
        batch: dict[int, MicroTurnInput] = {}
        for s in due:
            batch[s] = inputs[s][taken[s]]
            taken[s] += 1
        outs.append(e.step_sync(batch))
    return outs


def test_the_cuda_graph_path_without_capture_gives_identical_steps() -> None:
    eager, graphed = run(engine(None)), engine("cudagraph")
    assert any(o.text for step in eager for o in step.values()), "text is exercised"
    for a, b in zip(eager, run(graphed), strict=True):
        assert a.keys() == b.keys()
        for slot in a:
            assert a[slot].text == b[slot].text and a[slot].speaking == b[slot].speaking
            assert np.array_equal(a[slot].audio, b[slot].audio), slot
    net = graphed.model.net  # type: ignore[attr-defined]
    for part, method in HEADS:
        fn = getattr(getattr(net, part), method)
        assert isinstance(fn, GraphedFunction)
        # one recording per batch size (and text head variant), reused by every later step
        assert 3 <= len(fn.graphs) <= 6, (part, list(fn.graphs))


def test_cuda_graphs_need_cuda_and_other_models_stay_eager() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        accelerate(ReferenceModel(random_tiny()), "cudagraph", torch.device("cpu"))
    from inference.echo import EchoModel

    assert accelerate(EchoModel(), "compile", torch.device("cpu")) == "eager"
    with pytest.raises(ValueError):
        accelerate(EchoModel(), "fast", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_heads_give_the_same_steps() -> None:
    """torch.compile on CPU (inductor: about a minute the first time, then cached on disk)."""
    eager = run(engine(None))
    compiled = engine(None)
    assert accelerate(compiled.model, "compile", torch.device("cpu")) == "compile"
    for a, b in zip(eager, run(compiled), strict=True):
        for slot in a:
            assert a[slot].text == b[slot].text and a[slot].speaking == b[slot].speaking
            # float32 sums in another order: differences of ~1e-6, up to ~1e-5 through the recurrence
            assert np.allclose(a[slot].audio, b[slot].audio, atol=1e-4), slot
