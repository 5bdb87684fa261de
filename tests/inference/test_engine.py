"""The engine: sessions through asyncio, batching, isolation, back-pressure, memory."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings

import numpy as np
import psutil
import pytest
import torch

from inference.checkpoint import init_model
from inference.config import preset
from inference.echo import EchoModel
from inference.engine import Engine, EngineConfig, EngineFull, EngineStopped
from inference.model import InteractionModel
from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput, MicroTurnOutput
from inference.reference import ReferenceModel
from tests.inference.conftest import make_inputs


def engine_of(model: InteractionModel, delegate_cooldown: int = 25, **kw: object) -> Engine:
    served = ReferenceModel(model, delegate_cooldown=delegate_cooldown)
    return Engine(served, EngineConfig(num_threads=1, **kw))  # type: ignore[arg-type]


def run_alone(
    model: InteractionModel, call_id: str, inps: list[MicroTurnInput]
) -> list[MicroTurnOutput]:
    engine = engine_of(model, max_sessions=1)
    slot = engine.open(call_id)
    return [engine.step_sync({slot: inp})[slot] for inp in inps]


def same(a: MicroTurnOutput, b: MicroTurnOutput) -> bool:
    return a.index == b.index and a.text == b.text and np.allclose(a.audio, b.audio, atol=1e-4)


async def test_open_append_close_through_asyncio(tiny_random: InteractionModel) -> None:
    engine = engine_of(tiny_random, max_sessions=3)
    engine.start()
    try:
        slots = [engine.open(f"call-{i}") for i in range(3)]
        assert engine.active == 3 and engine.capacity == 3 and engine.frame_size == 40

        async def call(slot: int, seed: int) -> list[MicroTurnOutput]:
            return [await engine.append(slot, inp) for inp in make_inputs(6, seed=seed)]

        results = await asyncio.gather(*(call(s, s) for s in slots))
        for outs in results:
            assert [o.index for o in outs] == list(range(6))
            for o in outs:
                assert o.audio.shape == (MICROTURN_SAMPLES,) and o.audio.dtype == np.float32
                assert np.abs(o.audio).max() <= 1.0 and o.step_ms > 0
        stats = engine.stats()
        assert stats.steps >= 6 and stats.active == 3
        assert stats.step_ms_p99 >= stats.step_ms_p50 > 0
        assert engine.session_stats(slots[0])["microturns"] == 6
        engine.close(slots[0])
        assert engine.active == 2
        with pytest.raises(KeyError):
            await engine.append(slots[0], make_inputs(1, seed=0)[0])
        with pytest.raises(ValueError, match="frame"):
            bad = MicroTurnInput(
                0, np.zeros(MICROTURN_SAMPLES, np.float32), np.zeros((8, 8, 3), np.uint8)
            )
            await engine.append(slots[1], bad)
    finally:
        engine.stop()


async def test_engine_full_refuses_then_frees_a_slot(tiny: InteractionModel) -> None:
    engine = engine_of(tiny, max_sessions=2)
    a, b = engine.open("a"), engine.open("b")
    with pytest.raises(EngineFull):
        engine.open("c")
    engine.close(a)
    assert engine.open("c") == a
    assert {a, b} == {0, 1}


def test_batched_step_equals_each_session_alone(tiny_random: InteractionModel) -> None:
    n = 8
    calls = {
        "x": make_inputs(n + 5, seed=11),
        "y": make_inputs(n, seed=12),
        "z": make_inputs(n, seed=13),
    }
    engine = engine_of(tiny_random, max_sessions=4)
    slots = {name: engine.open(name) for name in calls}
    got: dict[str, list[MicroTurnOutput]] = {name: [] for name in calls}
    for _ in range(5):  # x is older than the others
        got["x"].append(engine.step_sync({slots["x"]: calls["x"][len(got["x"])]})[slots["x"]])
    for _ in range(n):
        batch = {slots[k]: calls[k][len(got[k])] for k in calls}
        outs = engine.step_sync(batch)
        for k in calls:
            got[k].append(outs[slots[k]])
    for k, inps in calls.items():
        ref = run_alone(tiny_random, k, inps)
        assert all(same(g, r) for g, r in zip(got[k], ref, strict=True)), k
    assert any(o.text for o in got["x"]), "the random model should say something"


def test_slot_isolation_when_others_join_leave_or_reset(tiny_random: InteractionModel) -> None:
    n = 10
    mine = make_inputs(n, seed=21)
    ref = run_alone(tiny_random, "mine", mine)
    engine = engine_of(tiny_random, max_sessions=4)
    other = engine.open("other-1")  # slot 0
    me = engine.open("mine")  # slot 1
    others = {other: make_inputs(n, seed=22)}
    got = []
    for t in range(n):
        if t == 3:
            others[engine.open("joiner")] = make_inputs(n, seed=23)  # joins (slot 2)
        if t == 5:
            engine.close(other)  # leaves
            del others[other]
        if t == 7:  # a new call takes the freed slot 0 and is reset there
            others[engine.open("reused")] = make_inputs(n, seed=24)
        batch = {me: mine[t], **{s: inps[t] for s, inps in others.items()}}
        got.append(engine.step_sync(batch)[me])
    assert all(same(g, r) for g, r in zip(got, ref, strict=True))


def test_slot_reused_after_close_is_a_fresh_session(tiny_random: InteractionModel) -> None:
    inps = make_inputs(5, seed=31)
    engine = engine_of(tiny_random, max_sessions=1)
    slot = engine.open("again")
    first = [engine.step_sync({slot: inp})[slot] for inp in inps]
    engine.close(slot)
    assert engine.open("again") == slot
    second = [engine.step_sync({slot: inp})[slot] for inp in inps]
    assert all(same(a, b) for a, b in zip(first, second, strict=True))
    assert engine.session_stats(slot)["microturns"] == 5


async def test_a_flooding_session_drops_its_oldest_inputs_and_reports_them(
    tiny: InteractionModel,
) -> None:
    engine = engine_of(tiny, max_sessions=2, max_pending=2)
    engine.start()
    try:
        slot = engine.open("flood")
        tasks = [
            asyncio.ensure_future(engine.append(slot, inp)) for inp in make_inputs(12, seed=41)
        ]
        outs = await asyncio.gather(*tasks)
        dropped = [o for o in outs if o.dropped]
        assert [o.index for o in outs] == list(range(12))
        assert len(dropped) >= 12 - 2 - 2  # at most max_pending waiting + about one in flight
        assert all(o.late and not o.speaking and not o.audio.any() for o in dropped)
        assert engine.session_stats(slot)["dropped_inputs"] == len(dropped)
        assert engine.stats().dropped_inputs == len(dropped)
        assert engine.stats().steps == 12 - len(dropped)
    finally:
        engine.stop()


async def test_late_steps_are_counted(tiny: InteractionModel) -> None:
    engine = engine_of(tiny, max_sessions=1, deadline_ms=0.0)  # every output is late
    engine.start()
    try:
        slot = engine.open("slow")
        outs = [await engine.append(slot, inp) for inp in make_inputs(3, seed=51)]
        assert all(o.late for o in outs)
        assert engine.stats().late_steps == 3
        assert engine.session_stats(slot)["late_steps"] == 3
    finally:
        engine.stop()
    engine = engine_of(tiny, max_sessions=1, deadline_ms=60_000.0)
    engine.start()
    try:
        slot = engine.open("fast")
        outs = [await engine.append(slot, inp) for inp in make_inputs(3, seed=51)]
        assert not any(o.late for o in outs) and engine.stats().late_steps == 0
    finally:
        engine.stop()


async def test_close_cancels_pending_and_stop_fails_them(tiny: InteractionModel) -> None:
    engine = engine_of(tiny, max_sessions=2, max_pending=8)
    engine.start()
    slot = engine.open("closing")
    tasks = [asyncio.ensure_future(engine.append(slot, inp)) for inp in make_inputs(6, seed=61)]
    await asyncio.sleep(0)
    engine.close(slot)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert any(isinstance(r, asyncio.CancelledError) for r in results)
    other = engine.open("stopping")
    tasks = [asyncio.ensure_future(engine.append(other, inp)) for inp in make_inputs(6, seed=62)]
    await asyncio.sleep(0)
    engine.stop()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(r, MicroTurnOutput | EngineStopped) for r in results)
    assert any(isinstance(r, EngineStopped) for r in results)
    with pytest.raises(EngineStopped):
        await engine.append(other, make_inputs(1, seed=0)[0])


def test_delegation_carries_the_recent_user_text() -> None:
    model = init_model(preset("tiny"), seed=0)
    with torch.no_grad():
        model.control_head.bias.copy_(torch.tensor([0.0, 9.0]))  # the control head always fires
    engine = engine_of(model, max_sessions=1, delegate_cooldown=3)
    slot = engine.open("delegating")
    silent = make_inputs(8, seed=71, text_every=10**6)
    outs = [engine.step_sync({slot: silent[0]})[slot]]  # nothing to hand over yet
    typed = MicroTurnInput(1, silent[1].audio, text="book a table for two")
    outs += [engine.step_sync({slot: typed})[slot]]
    outs += [engine.step_sync({slot: inp})[slot] for inp in silent[2:]]
    assert [o.delegate for o in outs] == [None, "book a table for two"] + [None] * 6
    assert engine.session_stats(slot)["delegations"] == 1


def test_a_thousand_steps_allocate_nothing_new(tiny: InteractionModel) -> None:
    engine = engine_of(tiny, max_sessions=3)
    slots = [engine.open(f"long-{i}") for i in range(2)]
    inps = make_inputs(16, seed=81)
    state_ptrs = [t.data_ptr() for t in engine.state.tensors()]

    def run(steps: int, start: int) -> None:
        for t in range(start, start + steps):
            inp = inps[t % 16]
            inp = MicroTurnInput(t, inp.audio, inp.frame, inp.text)
            engine.step_sync({s: inp for s in slots})

    def live_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():  # isinstance() pokes deprecated torch.distributed objects
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    proc = psutil.Process(os.getpid())
    run(100, 0)
    tensors_before, rss_before = live_tensors(), proc.memory_info().rss
    run(1000, 100)
    tensors_after, rss_after = live_tensors(), proc.memory_info().rss
    assert tensors_after == tensors_before
    assert rss_after - rss_before < 16 * 2**20, (
        f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MiB"
    )
    assert [t.data_ptr() for t in engine.state.tensors()] == state_ptrs, "state was reallocated"
    assert engine.session_stats(slots[0])["microturns"] == 1100


async def test_echo_engine_returns_the_input_audio() -> None:
    echo = Engine(EchoModel(), EngineConfig(max_sessions=1, num_threads=1, gc_freeze=False))
    echo.start()
    slot = echo.open("echo")
    with pytest.raises(EngineFull):
        echo.open("another")
    inp = make_inputs(1, seed=91)[0]
    out = await echo.append(slot, inp)
    assert np.array_equal(out.audio, inp.audio) and out.speaking and out.index == inp.index
    assert echo.model_name == "echo" and echo.session_stats(slot)["microturns"] == 1
    echo.close(slot)
    echo.stop()
