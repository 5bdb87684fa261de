"""A live call through `microturn serve --inference remote`: the server process, two `microturn
infer` workers (the echo model), a real Redis and a real aiortc peer. Its worker is killed (-9)
mid-call: the call goes on, on the other worker, with a `session.restarted` event, the model's
output again after it and the failover counted; with no worker left with room, a new call gets
503."""

from __future__ import annotations

import asyncio
import urllib.request

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.embedded_redis import free_port
from infra.processes import InferProcess
from media.synthetic import SignalAudioTrack, tone
from signaling.client import CallClient, CallRefused
from tests.browser.harness import ARTIFACTS, ServerProcess

WAIT_S = 60.0


def strongest_hz(call: CallClient, frames: int = 10) -> float | None:
    """The loudest frequency of the last `frames` 20 ms frames the client received (None while
    they are fewer, or quiet)."""
    recent = [pcm for _, pcm in list(call.received)[-frames:]]
    if len(recent) < frames:
        return None
    audio = np.concatenate(recent).astype(np.float32) / 32768
    if float(np.sqrt(np.mean(audio**2))) < 0.05:
        return None
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / call.received_sample_rate)[spectrum.argmax()])


async def hear(call: CallClient, hz: float) -> None:
    while (heard := strongest_hz(call)) is None or abs(heard - hz) > 20:
        await asyncio.sleep(0.05)


def metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_a_call_survives_its_inference_worker_being_killed(
    redis_url: str, unique: str
) -> None:
    def worker(n: int) -> InferProcess:
        return InferProcess(
            redis_url,
            pool=unique,
            model="echo",
            max_sessions=1,
            log_path=ARTIFACTS / f"remote-call-infer-{n}.log",
        )

    doomed, standby = worker(0), worker(1)
    server = ServerProcess(
        free_port(),
        args=[
            "--inference",
            "remote",
            "--redis-url",
            redis_url,
            "--inference-pool",
            unique,
            "--agent-workers",
            "0",
        ],
        log_path=ARTIFACTS / "remote-inference-server.log",
    )
    loop = asyncio.get_running_loop()
    try:
        await doomed.astart()
        await loop.run_in_executor(None, server.start)  # ready: a worker has room
        # the supervisor announces once it has seen every media process's socket, which may come
        # after the first process answered /readyz
        while "inference: remote pool" not in server.log():
            assert server.proc is not None and server.proc.poll() is None, server.log()[-2000:]
            await asyncio.sleep(0.1)
        mic_hz = [440.0]
        mic = SignalAudioTrack(lambda t: 0.3 * np.sin(2 * np.pi * mic_hz[0] * t))
        async with CallClient(server.url, audio=mic) as call:
            created = await call.wait_event("session.created", timeout=WAIT_S)
            assert created["model"] == "echo"
            await asyncio.wait_for(hear(call, 440.0), WAIT_S)  # the tone, echoed
            await standby.astart()  # after the call opened: the call is on `doomed`
            mark = len(call.events)
            doomed.kill()
            restarted = await call.wait_event("session.restarted", timeout=WAIT_S, after=mark)
            assert restarted["reason"] == "worker_lost"
            # The model's output again: the microphone changed its tone after the kill, so only
            # the standby can have echoed the new one.
            mic_hz[0] = 880.0
            await asyncio.wait_for(hear(call, 880.0), WAIT_S)
            assert not [e for e in call.events[mark:] if e.get("type") == "session.ended"]
            status = await call.status()
            assert status["state"] == "active" and status["model_restarts"] == 1
            assert (
                metric(server.url, "microturn_inference_failovers_total", reason="worker_lost") == 1
            )

            # The standby (one session) holds this call; the killed one is gone: no room.
            with pytest.raises(CallRefused) as refused:
                async with CallClient(server.url, audio=tone()):
                    pass
            assert refused.value.status == 503 and refused.value.code == "at_capacity"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.url}/readyz") as resp:
                    assert resp.status == 503
                    reasons = (await resp.json())["reasons"]
            assert "no inference worker has a free session" in reasons
            assert await call.hang_up() == 204
    finally:
        await loop.run_in_executor(None, server.stop)
        for w in (doomed, standby):
            w.stop()
