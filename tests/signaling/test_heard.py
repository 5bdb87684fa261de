"""What the user heard is what the conversation holds: a live call (real aiortc peer, real engine,
real Redis) with the scripted talker model, barged in on a second into a long reply; the context
package delegated after it holds the model's turn cut to the words whose audio was played."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from agent.bus import StreamKeys
from agent.types import ContextPackage
from infra.config import Config
from media.synthetic import SignalAudioTrack
from signaling.app import create_app
from signaling.client import CallClient
from tests.signaling.talker import REPLY_WORDS, reply_text, talker_engine

CONNECT_S = 30.0
LOUD_FRAME_RMS = 0.1  # the talker's voice (0.3 amplitude) after Opus; silence is ~0
FRAME_MS = 20


class Mic:
    """A microphone that is silent until the test speaks into it (a 200 Hz tone)."""

    def __init__(self) -> None:
        self.loud = False
        self.track = SignalAudioTrack(self.signal)

    def signal(self, t: np.ndarray) -> np.ndarray:
        if not self.loud:
            return np.zeros(len(t), dtype=np.float32)
        return (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)


def heard_ms(call: CallClient) -> int:
    """The model's voice this client received (and so would have played), in ms."""
    loud = sum(
        float(np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2))) > LOUD_FRAME_RMS
        for _, pcm in list(call.received)
    )
    return loud * FRAME_MS


async def until(predicate: Callable[[], bool], timeout: float = CONNECT_S) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def package_of(redis: aioredis.Redis, package_id: str) -> ContextPackage:
    """The context package the call published (no workers run here: it stays in the stream)."""

    async def find() -> ContextPackage:
        while True:
            entries: Any = await redis.xrange(StreamKeys().ctx)
            for _entry_id, fields in entries:
                package = ContextPackage.decode(fields[b"package"])
                if package.package_id == package_id:
                    return package
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(find(), CONNECT_S)


@pytest.fixture
async def talker_server(redis_url: str) -> AsyncIterator[str]:
    engine = talker_engine()
    config = Config.from_env({}, redis_url=redis_url, agent_workers=0, max_loop_lag_ms=0.0)
    server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        engine.stop()


async def ask(call: CallClient, redis: aioredis.Redis) -> ContextPackage:
    after = len(call.events)
    call.send("input_text", text="/ask what did you just say")
    queued = await call.wait_event("agent.task", lambda e: e["status"] == "queued", after=after)
    return await package_of(redis, queued["task_id"])


async def quiet_for(call: CallClient, seconds: float) -> None:
    """Until the last `seconds` of received audio are silent: all that was sent has arrived."""

    def quiet() -> bool:
        audio = call.received_audio(last_s=seconds)
        return audio.size > 0 and float(np.max(np.abs(audio))) < LOUD_FRAME_RMS

    await until(quiet)


async def test_a_barge_in_a_second_into_a_reply_leaves_only_the_heard_part_in_the_conversation(
    talker_server: str, redis_client: aioredis.Redis
) -> None:
    mic = Mic()
    async with CallClient(talker_server, audio=mic.track) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        call.send("input_text", text="talk to me")
        started = await call.wait_event("output_audio.started", timeout=CONNECT_S)
        await until(lambda: heard_ms(call) >= 1000)
        mic.loud = True  # the user cuts in a second into the 5 s reply
        await call.wait_event("output_audio.stopped", timeout=CONNECT_S)
        mic.loud = False
        await quiet_for(call, 0.4)
        heard = heard_ms(call)

        package = await ask(call, redis_client)
        spoken = [t for t in package.conversation if t.role == "model"]
        assert len(spoken) == 1, spoken
        turn = spoken[0]
        assert turn.kind == "speech" and turn.microturn == started["microturn"]
        assert turn.truncated, "the cut turn is marked as cut"
        words = turn.text.split()
        assert turn.text == reply_text(len(words)), "a prefix of what the model said, whole words"
        assert 5 <= len(words) < REPLY_WORDS
        # the words are those whose audio this client received (one word = 200 ms), to a word
        assert abs(len(words) * 200 - heard) <= 200, (words, heard)
        user = [t.text for t in package.conversation if t.role == "user"]
        assert user == ["talk to me", "/ask what did you just say"]
        wire = json.loads(package.encode())["conversation"]
        assert [t.get("truncated") for t in wire if t["role"] == "model"] == [True]
        assert all("truncated" not in t for t in wire if t["role"] == "user")
        await call.hang_up()


async def test_a_reply_heard_to_its_end_is_kept_whole(
    talker_server: str, redis_client: aioredis.Redis
) -> None:
    mic = Mic()
    async with CallClient(talker_server, audio=mic.track) as call:
        await call.wait_event("session.created", timeout=CONNECT_S)
        call.send("input_text", text="talk to me")
        await call.wait_event("output_audio.stopped", timeout=CONNECT_S)
        package = await ask(call, redis_client)
        spoken = [t for t in package.conversation if t.role == "model"]
        assert [(t.kind, t.text, t.truncated) for t in spoken] == [("speech", reply_text(), False)]
        await call.hang_up()
