"""Bring your own model: a class that is not the reference model (its own state layout, no text)
is loaded from a checkpoint directory by the class its config.json names, stepped by the same
engine, and serves a live call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from examples.delay_model import DELAY, DelayModel
from inference.engine import Engine, EngineConfig
from inference.loading import load_model
from inference.protocol import StreamingModel
from infra.embedded_redis import free_port
from media.synthetic import tone
from signaling.client import CallClient
from tests.browser.harness import ARTIFACTS, ServerProcess
from tests.inference.conftest import make_inputs


def checkpoint(tmp_path: Path, gain: float = 0.5) -> Path:
    out = tmp_path / "delay"
    out.mkdir()
    DelayModel(gain).save(out)
    return out


def test_the_checkpoint_names_its_class_and_the_engine_steps_it(tmp_path: Path) -> None:
    model = load_model(checkpoint(tmp_path))
    assert isinstance(model, DelayModel) and isinstance(model, StreamingModel)
    engine = Engine(model, EngineConfig(max_sessions=2, num_threads=1, gc_freeze=False))
    a, b = engine.open("a"), engine.open("b")
    ins_a, ins_b = make_inputs(12, seed=1), make_inputs(12, seed=2)
    outs_a, outs_b = [], []
    for k in range(12):
        step = engine.step_sync({a: ins_a[k], b: ins_b[k]})  # one batch, two calls
        outs_a.append(step[a])
        outs_b.append(step[b])
    for k in range(DELAY, 12):
        assert np.allclose(outs_a[k].audio, np.clip(0.5 * ins_a[k - DELAY].audio, -1, 1))
        assert np.allclose(outs_b[k].audio, np.clip(0.5 * ins_b[k - DELAY].audio, -1, 1))
    assert all(not o.speaking for o in outs_a[:DELAY]), "silence until it has heard a second"
    assert engine.model_name == "delay-echo" and engine.frame_size == 16
    assert engine.session_stats(a)["heard"] == 12


async def test_a_live_call_is_served_by_the_model_of_the_checkpoint(tmp_path: Path) -> None:
    server = ServerProcess(
        free_port(),
        args=["--model", str(checkpoint(tmp_path))],
        log_path=ARTIFACTS / "own-model.log",
    )
    server.start()
    try:
        async with CallClient(server.url, audio=tone(amplitude=0.3)) as call:
            created = await call.wait_event("session.created", timeout=60)
            assert created["model"] == "delay-echo"

            async def heard() -> None:
                while True:
                    audio = call.received_audio(last_s=0.5)
                    if audio.size and float(np.sqrt(np.mean(audio**2))) > 0.05:
                        return
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(heard(), 30)  # our tone, a second later, at half the level
            status = await call.status()
            assert status["state"] == "active" and status["microturns"] > DELAY
            await call.hang_up()
    finally:
        server.stop()
