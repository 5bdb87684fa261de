"""The engine in its own process: `microturn infer` workers (real processes, the echo model) found
through a real Redis, and the RemoteEngine a media process uses to reach them.

Sessions round-trip over the wire; opens go where there is room, a refusal tries the next
worker, none with room refuses; a worker that dies (kill -9), stalls (SIGSTOP) or stops (SIGTERM)
moves its sessions to another worker, each with a restart on its next output and none dropped;
a worker restart loses nothing but state."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from inference import wire
from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput, MicroTurnOutput
from inference.remote import NoWorkerRoom, RemoteConfig, RemoteEngine
from infra.discovery import WorkerInfo, WorkerKeys, list_workers
from infra.embedded_redis import free_port
from infra.processes import InferProcess
from tests.browser.harness import ARTIFACTS

WAIT_S = 60.0


def audio(index: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed * 100_003 + index)
    return (0.1 * rng.standard_normal(MICROTURN_SAMPLES)).astype(np.float32)


def inp(index: int, seed: int = 0, **kw: Any) -> MicroTurnInput:
    return MicroTurnInput(index=index, audio=audio(index, seed), **kw)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = WAIT_S) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


@pytest.fixture
async def workers(redis_url: str, unique: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start `microturn infer --model echo` workers in this test's own pool."""
    started: list[InferProcess] = []

    async def start(max_sessions: int = 4, **kw: Any) -> InferProcess:
        worker = InferProcess(
            redis_url,
            pool=unique,
            model="echo",
            max_sessions=max_sessions,
            log_path=ARTIFACTS / f"infer-{unique}-{len(started)}.log",
            **kw,
        )
        started.append(worker)
        return await worker.astart()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def remote(redis_url: str, unique: str) -> AsyncIterator[Callable[..., RemoteEngine]]:
    engines: list[RemoteEngine] = []

    def make(**kw: Any) -> RemoteEngine:
        engine = RemoteEngine(RemoteConfig(redis_url=redis_url, pool=unique, **kw))
        engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


async def free_of(worker: InferProcess) -> int | None:
    info = await worker.registration()
    return None if info is None else info.free


async def test_wire_round_trips_a_micro_turn_and_refuses_garbage() -> None:
    frame = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    sid, back = wire.decode_append(
        wire.encode_append(7, inp(3, frame=frame, text="héllo", played_ms=120))
    )
    assert sid == 7 and back.index == 3 and back.text == "héllo" and back.played_ms == 120
    assert back.frame is not None and np.array_equal(back.frame, frame)
    assert np.array_equal(back.audio, audio(3))
    out = MicroTurnOutput(3, "hi", audio(3), True, delegate="look it up", step_ms=1.5, batch=4)
    got = wire.decode_output(wire.encode_output(7, out, worker_ms=2.0))
    assert got.session == 7 and got.worker_ms == 2.0
    assert (got.out.text, got.out.delegate, got.out.speaking, got.out.batch) == (
        "hi",
        "look it up",
        True,
        4,
    )
    assert np.array_equal(got.out.audio, out.audio)
    for bad in [b"", wire.encode_append(1, inp(0))[:-1], wire.encode_append(1, inp(0)) + b"x"]:
        with pytest.raises(wire.WireError):
            wire.decode_append(bad)
    with pytest.raises(wire.WireError):
        wire.decode_output(wire.encode_output(7, out, 0.0)[:-3])


async def test_sessions_round_trip_through_a_worker_and_free_their_slots(
    workers: Callable[..., Awaitable[InferProcess]],
    remote: Callable[..., RemoteEngine],
    redis_url: str,
    unique: str,
) -> None:
    worker = await workers(max_sessions=2)
    engine = remote()
    a, b = await engine.open_async("call-a"), await engine.open_async("call-b")
    assert engine.model_name == "echo" and engine.frame_size == 40
    assert engine.session_stats(a)["worker"] == worker.info.worker_id  # type: ignore[union-attr]

    async def run(slot: int, seed: int) -> list[MicroTurnOutput]:
        return list(await asyncio.gather(*(engine.append(slot, inp(i, seed)) for i in range(5))))

    outs_a, outs_b = await asyncio.gather(run(a, 1), run(b, 2))
    for outs, seed in ((outs_a, 1), (outs_b, 2)):
        assert [o.index for o in outs] == list(range(5))
        for o in outs:
            if not o.dropped:  # the echo model: its output is its input, bit for bit
                assert np.array_equal(o.audio, audio(o.index, seed)) and o.restart is None
        assert not outs[-1].dropped
    assert engine.stats().steps >= 2 and engine.wire_ms().size >= 2
    await until(lambda: _is(free_of(worker), 0))
    engine.close(a)
    engine.close(b)
    await until(lambda: _is(free_of(worker), 2))


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def test_opens_try_the_next_worker_when_one_refuses_and_503_only_when_none_has_room(
    workers: Callable[..., Awaitable[InferProcess]],
    remote: Callable[..., RemoteEngine],
    redis_client: aioredis.Redis,
    unique: str,
) -> None:
    full = await workers(max_sessions=1)
    other = remote()
    await other.open_async("holds-the-first-worker")
    spare = await workers(max_sessions=1)
    assert full.info is not None and spare.info is not None
    # Two stale registrations that promise room first: one is the full worker under another
    # name (it refuses), one is a worker that is gone (nothing listens on its port).
    keys = WorkerKeys(unique)
    for ghost_id, url in [
        ("ghost-full", full.info.url),
        ("ghost-gone", f"ws://127.0.0.1:{free_port()}{wire.PATH}"),
    ]:
        ghost = WorkerInfo(ghost_id, url, "echo", 40, capacity=100, free=100)
        await redis_client.set(keys.worker(ghost_id), ghost.encode(), ex=60)
        await redis_client.sadd(keys.index, ghost_id)
    engine = remote()
    slot = await engine.open_async("call")
    assert engine.session_stats(slot)["worker"] == spare.info.worker_id
    assert not (await engine.append(slot, inp(0))).dropped
    with pytest.raises(NoWorkerRoom):
        await engine.open_async("one too many")
    assert engine.active == 1
    listed = {w.worker_id for w in await list_workers(redis_client, keys)}
    assert {full.info.worker_id, spare.info.worker_id} <= listed


async def paced(
    engine: RemoteEngine, slots: list[int], outputs: dict[int, list[MicroTurnOutput]]
) -> None:
    """Each session appends a micro-turn every 200 ms, as a call does, until cancelled."""

    async def answer(slot: int, index: int) -> None:
        outputs[slot].append(await engine.append(slot, inp(index, slot)))

    async def one(slot: int) -> None:
        index, pending = 0, set()
        while True:
            task = asyncio.ensure_future(answer(slot, index))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
            await asyncio.sleep(0.2)

    await asyncio.gather(*(one(slot) for slot in slots))


def restarted(outs: list[MicroTurnOutput], reason: str) -> bool:
    return any(o.restart == reason for o in outs)


async def test_a_killed_worker_moves_its_eight_sessions_none_dropped(
    workers: Callable[..., Awaitable[InferProcess]], remote: Callable[..., RemoteEngine]
) -> None:
    doomed = await workers(max_sessions=8)
    engine = remote(max_sessions=8, stall_s=5.0)  # the kill is seen as a closed connection
    slots = [await engine.open_async(f"call-{i}") for i in range(8)]
    standby = await workers(max_sessions=8)
    assert doomed.info is not None and standby.info is not None
    assert {engine.session_stats(s)["worker"] for s in slots} == {doomed.info.worker_id}
    outputs: dict[int, list[MicroTurnOutput]] = {s: [] for s in slots}
    pacing = asyncio.ensure_future(paced(engine, slots, outputs))
    try:
        await until(lambda: _true(all(not o.dropped for o in outputs[s][-1:]) for s in slots))
        doomed.kill()
        await until(lambda: _true(restarted(outputs[s], "worker_lost") for s in slots))
        after = {s: len(outputs[s]) for s in slots}
        await until(lambda: _true(len(outputs[s]) > after[s] + 2 for s in slots))
    finally:
        pacing.cancel()
        await asyncio.gather(pacing, return_exceptions=True)
    for s in slots:
        assert engine.session_stats(s)["worker"] == standby.info.worker_id
        first = next(i for i, o in enumerate(outputs[s]) if o.restart)
        assert not outputs[s][first].dropped  # the restart comes with model output
        assert np.array_equal(outputs[s][first].audio, audio(outputs[s][first].index, s))
        assert all(not o.dropped for o in outputs[s][first:])
    assert engine.failovers == 8 and engine.active == 8


async def _true(values: Any) -> bool:
    return all(values)


async def test_a_stalled_worker_moves_its_session_and_frees_it_when_it_wakes(
    workers: Callable[..., Awaitable[InferProcess]],
    remote: Callable[..., RemoteEngine],
    redis_url: str,
    unique: str,
) -> None:
    stalled = await workers(max_sessions=2)
    engine = remote(stall_s=0.5)
    slot = await engine.open_async("call")
    spare = await workers(max_sessions=2)
    outputs: dict[int, list[MicroTurnOutput]] = {slot: []}
    pacing = asyncio.ensure_future(paced(engine, [slot], outputs))
    try:
        await until(lambda: _true([outputs[slot] and not outputs[slot][-1].dropped]))
        stalled.signal(signal.SIGSTOP)
        await until(lambda: _true([restarted(outputs[slot], "worker_stalled")]))
        assert spare.info is not None
        assert engine.session_stats(slot)["worker"] == spare.info.worker_id
        stalled.signal(signal.SIGCONT)
        # Awake, it finds the connection gone and frees the session's slot.
        await until(lambda: _is(free_of(stalled), 2))
    finally:
        pacing.cancel()
        await asyncio.gather(pacing, return_exceptions=True)


async def test_a_restarted_worker_takes_the_sessions_back_and_a_stopping_one_hands_them_on(
    workers: Callable[..., Awaitable[InferProcess]], remote: Callable[..., RemoteEngine]
) -> None:
    first = await workers(max_sessions=2)
    engine = remote(stall_s=5.0)
    slot = await engine.open_async("call")
    outputs: dict[int, list[MicroTurnOutput]] = {slot: []}
    pacing = asyncio.ensure_future(paced(engine, [slot], outputs))
    try:
        await until(lambda: _true([outputs[slot] and not outputs[slot][-1].dropped]))
        first.kill()  # the only worker: the session waits (silence) until one is back
        await until(lambda: _true([outputs[slot] and outputs[slot][-1].dropped]))
        second = await workers(max_sessions=2)
        await until(lambda: _true([restarted(outputs[slot], "worker_lost")]))
        assert second.info is not None
        assert engine.session_stats(slot)["worker"] == second.info.worker_id
        third = await workers(max_sessions=2)
        second.stop()  # SIGTERM: it says goodbye to each session, which moves at once
        await until(lambda: _true([restarted(outputs[slot], "worker_stopped")]))
        assert third.info is not None
        assert engine.session_stats(slot)["worker"] == third.info.worker_id
    finally:
        pacing.cancel()
        await asyncio.gather(pacing, return_exceptions=True)
    assert engine.active == 1 and engine.failovers == 2


async def test_a_worker_with_a_secret_serves_only_media_processes_that_know_it(
    workers: Callable[..., Awaitable[InferProcess]], remote: Callable[..., RemoteEngine]
) -> None:
    await workers(max_sessions=1, env={"MICROTURN_INFERENCE_SECRET": "s3cret"})
    with pytest.raises(NoWorkerRoom):
        await remote().open_async("no secret")
    with pytest.raises(NoWorkerRoom):
        await remote(secret="guess").open_async("wrong secret")
    engine = remote(secret="s3cret")
    slot = await engine.open_async("the right one")
    assert not (await engine.append(slot, inp(0))).dropped
