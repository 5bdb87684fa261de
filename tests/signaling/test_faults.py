"""Faults: a model step that raises for one call fails that call's micro-turn, nobody else's."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp.test_utils import TestServer

from inference.checkpoint import init_model
from inference.config import preset
from inference.engine import Engine, EngineConfig
from inference.kvcache import Rows
from inference.model import InteractionModel, StepInput, StepOutput
from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput
from inference.reference import ReferenceModel
from infra.embedded_redis import EmbeddedRedis
from media.synthetic import tone
from signaling.client import CallClient
from signaling.keys import CALLS
from tests.conftest import MakeServer


class Poisoned(InteractionModel):
    """The tiny model, except that stepping a poisoned slot raises (as a bug or a bad input would)."""

    poisoned: set[int]

    def step(self, state, rows: Rows, inp: StepInput) -> StepOutput:
        if self.poisoned & set(rows.index.tolist()):
            raise RuntimeError("injected fault")
        return super().step(state, rows, inp)


def poisoned_engine(max_sessions: int = 4) -> tuple[Engine, Poisoned]:
    model = init_model(preset("tiny"), seed=0)
    model.__class__ = Poisoned
    assert isinstance(model, Poisoned)
    model.poisoned = set()
    served = ReferenceModel(model)
    return Engine(served, EngineConfig(max_sessions=max_sessions, gc_freeze=False)), model


def turn(k: int) -> MicroTurnInput:
    return MicroTurnInput(index=k, audio=np.zeros(MICROTURN_SAMPLES, dtype=np.float32))


async def test_engine_fails_only_the_culprit_of_a_batch() -> None:
    engine, model = poisoned_engine()
    engine.start()
    try:
        good, bad = engine.open("good"), engine.open("bad")
        model.poisoned = {bad}
        for k in range(5):  # appended together: they are stepped in one batch first
            results = await asyncio.gather(
                engine.append(good, turn(k)), engine.append(bad, turn(k)), return_exceptions=True
            )
            assert not isinstance(results[0], BaseException), results[0]
            assert isinstance(results[1], RuntimeError)
        model.poisoned = set()
        recovered = await engine.append(bad, turn(5))
        assert recovered.index == 5, "the failed call steps again once the fault is gone"
        assert engine.session_stats(good)["microturns"] == 5
    finally:
        engine.stop()


async def test_a_failing_call_gets_error_events_while_another_call_runs(redis_url: str) -> None:
    from infra.config import Config
    from signaling.app import create_app

    engine, model = poisoned_engine()
    config = Config.from_env({}, redis_url=redis_url, agent_workers=0)
    server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with (
            CallClient(base, audio=tone()) as healthy,
            CallClient(base, audio=tone()) as sick,
        ):
            await healthy.wait_event("session.created", timeout=60)
            await sick.wait_event("session.created", timeout=60)
            assert sick.call_id is not None
            served = server.app[CALLS].get(sick.call_id)
            assert served is not None
            model.poisoned = {served.slot}
            error = await sick.wait_event("error", lambda e: e["code"] == "step_failed", timeout=60)
            assert "injected fault" in error["message"]
            before = (await healthy.status())["microturns"]

            async def healthy_advances() -> None:
                while (await healthy.status())["microturns"] < before + 10:
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(healthy_advances(), 60)
            assert not [e for e in healthy.events if e.get("type") == "error"]
            assert (await sick.status())["state"] == "active", "the failing call stays up"
    finally:
        await server.close()
        engine.stop()


async def test_redis_lost_mid_call_the_call_runs_on_and_background_work_resumes(
    make_server: MakeServer,
) -> None:
    with EmbeddedRedis(tcp=True, persist=True) as redis_server:
        server = await make_server(redis_url=redis_server.url, agent_workers=1)
        base = str(server.make_url("")).rstrip("/")
        async with CallClient(base, audio=tone()) as call:
            await call.wait_event("session.created", timeout=60)
            redis_server.kill()  # Redis dies abruptly
            before = (await call.status())["microturns"]
            call.send("input_text", text="/ask what is 12*7")
            await call.wait_event("agent.task", lambda e: e["status"] == "queued", timeout=30)

            async def advanced() -> None:
                while (await call.status())["microturns"] < before + 10:
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(advanced(), 60)  # the call does not need Redis to go on
            assert (await call.status())["state"] == "active"
            assert not [
                e for e in call.events if e.get("type") == "agent.task" and e["status"] == "done"
            ]

            redis_server.start()  # back, on the same port, with its data
            done = await call.wait_event("agent.task", lambda e: e["status"] == "done", timeout=90)
            assert "84" in done["text"], "the package queued while Redis was away was not lost"
            await call.hang_up()
