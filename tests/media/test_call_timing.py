"""Timing through real aiortc calls: synthetic tracks whose capture times are known.

Client and server run in one process on one monotonic clock, so the test can compare when a frame
was captured by the client with the micro-turn slice the server attached it to.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av
import numpy as np
from aiohttp.test_utils import TestServer

from inference.protocol import Engine as EngineLike
from inference.protocol import EngineStats, MicroTurnInput, MicroTurnOutput
from media.clock import SessionClock
from media.synthetic import VIDEO_TIME_BASE, SignalAudioTrack, _Paced
from signaling.client import CallClient
from signaling.keys import CALLS

LEVELS = [30 + 20 * i for i in range(10)]  # frame n is a flat grey of LEVELS[n % 10]
TRANSPORT_S = 0.120  # encode + loopback + decode: a captured frame arrives within this


class NumberedFrames(_Paced):
    """Flat grey frames whose level encodes the frame number; remembers each capture time."""

    kind = "video"

    def __init__(self, fps: float = 15.0) -> None:
        super().__init__()
        self.period_s = 1 / fps
        self.fps = fps
        self.captured: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        n = await self._wait()
        self.captured[n] = time.monotonic()
        img = np.full((240, 320, 3), LEVELS[n % 10], dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = int(n * 90_000 / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame


class Recording:
    """The shipped engine with a tap: every micro-turn input it is given is kept."""

    def __init__(self, inner: EngineLike) -> None:
        self.inner = inner
        self.inputs: list[MicroTurnInput] = []
        self.model_name = inner.model_name
        self.frame_size = inner.frame_size

    def warm_up(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

    def open(self, call_id: str) -> int:
        return self.inner.open(call_id)

    async def open_async(self, call_id: str) -> int:
        return await self.inner.open_async(call_id)

    async def append(self, slot: int, inp: MicroTurnInput) -> MicroTurnOutput:
        self.inputs.append(inp)
        return await self.inner.append(slot, inp)

    def close(self, slot: int) -> None:
        self.inner.close(slot)

    def session_stats(self, slot: int) -> dict[str, Any]:
        return self.inner.session_stats(slot)

    def stats(self) -> EngineStats:
        return self.inner.stats()


async def serve_recording(
    audible_engine: EngineLike, redis_url: str
) -> tuple[TestServer, Recording]:
    from infra.config import Config
    from signaling.app import create_app

    recording = Recording(audible_engine)
    config = Config.from_env({}, redis_url=redis_url, agent_workers=0)
    server = TestServer(create_app(config, engine=recording), host="127.0.0.1")
    await server.start_server()
    return server, recording


async def record_call(
    server: TestServer, recording: Recording, *, first: Any = None, **tracks: Any
) -> tuple[SessionClock, list[MicroTurnInput]]:
    """One call with these tracks until the engine has seen 30 micro-turns (and `first()` holds);
    the call's session clock and every input the engine was given."""
    try:
        async with CallClient(str(server.make_url("")).rstrip("/"), **tracks) as call:
            await call.wait_event("session.created", timeout=60)
            if first is not None:
                await wait_for(first)
            await wait_for(lambda: len(recording.inputs) >= 30)
            assert call.call_id is not None
            served = server.app[CALLS].get(call.call_id)
            assert served is not None and served.clock is not None
            clock = served.clock
            inputs = list(recording.inputs)
            await call.hang_up()
    finally:
        await server.close()
    return clock, inputs


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(loop(), timeout)


async def test_the_frame_of_microturn_k_was_captured_in_slice_k(
    audible_engine: EngineLike, redis_url: str
) -> None:
    server, recording = await serve_recording(audible_engine, redis_url)
    video = NumberedFrames()
    quiet = SignalAudioTrack(lambda t: 0.0 * t)
    clock, inputs = await record_call(server, recording, audio=quiet, video=video)
    with_frames = [inp for inp in inputs if inp.frame is not None]
    assert len(with_frames) >= 0.8 * len(inputs), "15 fps gives every 200 ms slice a frame"
    for inp in with_frames:
        assert inp.frame is not None
        level = float(inp.frame.mean())
        digit = int(np.argmin([abs(level - lv) for lv in LEVELS]))
        start, end = clock.slice_start(inp.index), clock.slice_end(inp.index)
        candidates = [
            t for n, t in video.captured.items() if n % 10 == digit and start - 1 < t < end + 1
        ]
        assert candidates, f"micro-turn {inp.index}: no captured frame with level {level:.0f}"
        assert any(start - TRANSPORT_S <= t < end for t in candidates), (
            f"micro-turn {inp.index} [{start:.3f}, {end:.3f}) got a frame captured at "
            f"{[round(t, 3) for t in candidates]}"
        )


class LateTone(SignalAudioTrack):
    """A microphone that sends nothing for its first `delay_s`, then a tone."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(lambda t: 0.3 * np.sin(2 * np.pi * 440 * t))
        self.delay_s = delay_s
        self.first_sent: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.first_sent is None:
            await asyncio.sleep(self.delay_s)
            self.first_sent = time.monotonic()
        return await super().recv()


async def test_a_mic_that_starts_2s_late_joins_on_time(
    audible_engine: EngineLike, redis_url: str
) -> None:
    server, recording = await serve_recording(audible_engine, redis_url)
    mic = LateTone(2.0)
    clock, inputs = await record_call(
        server, recording, audio=mic, first=lambda: mic.first_sent is not None
    )
    assert mic.first_sent is not None
    first_audio_turn = clock.microturn_at(mic.first_sent)
    rms = {inp.index: float(np.sqrt(np.mean(inp.audio**2))) for inp in inputs}
    before = [k for k in rms if k < first_audio_turn]
    after = [k for k in rms if k > first_audio_turn + 1]
    assert before and after
    assert all(rms[k] < 0.01 for k in before), "silence until the mic starts"
    # The tone fills the micro-turns once it arrives (the median: a stall of a loaded CI machine
    # may cost a micro-turn or two some of its audio).
    assert float(np.median([rms[k] for k in after])) > 0.18, {
        k: round(v, 3) for k, v in rms.items()
    }
    # the micro-turn count never waited for the mic: it follows the session clock
    assert [inp.index for inp in inputs] == list(range(len(inputs)))
