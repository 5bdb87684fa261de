"""OpenAI's Realtime WebRTC shape, live: a client written only from OpenAI's public documentation of
that flow ("Realtime API with WebRTC": create a peer connection, add the microphone, open the
`oai-events` data channel, POST the SDP offer to /v1/realtime/calls with a bearer key, apply the
SDP answer, then exchange JSON events on the channel), against a real server and engine serving
the scripted talker model (tests/signaling/talker.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from infra.config import Config
from media.synthetic import SignalAudioTrack
from signaling.app import create_app
from signaling.keys import CALLS
from signaling.realtime import RealtimeDialect
from tests.signaling.talker import reply_text, talker_engine

CONNECT_S = 30.0
LOUD = 0.1


class RealtimeClient:
    """What OpenAI's WebRTC guide has a browser do, in Python: nothing Microturn-specific."""

    def __init__(self, base_url: str, key: str = "ek_test") -> None:
        self.base_url, self.key = base_url, key
        self.pc = RTCPeerConnection()
        self.speaking = False  # what the microphone sends: silence, or the user's voice
        self.mic = SignalAudioTrack(self.voice)
        self.pc.addTrack(self.mic)
        self.dc = self.pc.createDataChannel("oai-events")
        self.events: list[dict[str, Any]] = []
        self.played_ms = 0.0  # the model's audio this client received (it would play it)
        self.location = ""
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._event_ids = 0

        @self.dc.on("message")
        def on_message(message: str) -> None:
            self.events.append(json.loads(message))
            self._changed.set()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._play(track)))

    def voice(self, t: np.ndarray) -> np.ndarray:
        if not self.speaking:
            return np.zeros(len(t), dtype=np.float32)
        return (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)

    async def _play(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = frame.to_ndarray().astype(np.float32) / 32768  # type: ignore[union-attr]
            if float(np.sqrt(np.mean(pcm**2))) > LOUD:
                self.played_ms += 1000 * frame.samples / frame.sample_rate  # type: ignore[union-attr]
                self._changed.set()

    async def connect(self) -> aiohttp.ClientResponse:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{self.base_url}/v1/realtime/calls",
                data=self.pc.localDescription.sdp,
                headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/sdp"},
            )
            answer = await response.text()
        assert response.status == 201, answer
        self.location = response.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return response

    def send(self, event: dict[str, Any]) -> str:
        self._event_ids += 1
        event_id = f"client_evt_{self._event_ids}"
        self.dc.send(json.dumps({"event_id": event_id, **event}))
        return event_id

    async def until(self, done: Callable[[], Any], timeout: float = CONNECT_S) -> Any:
        async def wait() -> Any:
            while not (found := done()):
                self._changed.clear()
                await self._changed.wait()
            return found

        return await asyncio.wait_for(wait(), timeout)

    async def event(
        self, type_: str, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> dict[str, Any]:
        return await self.until(
            lambda: next((e for e in self.events if e["type"] == type_ and where(e)), None)
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


@pytest.fixture
async def talker_server(redis_url: str) -> AsyncIterator[TestServer]:
    engine = talker_engine()
    config = Config.from_env({}, redis_url=redis_url, agent_workers=0, max_loop_lag_ms=0.0)
    server = TestServer(create_app(config, engine=engine), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        engine.stop()


async def test_an_openai_realtime_client_talks_interrupts_and_truncates(
    talker_server: TestServer,
) -> None:
    base = str(talker_server.make_url("")).rstrip("/")
    client = RealtimeClient(base)
    try:
        response = await client.connect()
        assert response.content_type == "application/sdp"
        assert client.location.startswith("/v1/realtime/calls/")
        created = await client.event("session.created")
        assert created["event_id"] and created["session"]["model"] == "talker"
        assert created["session"]["id"].startswith("sess_")

        client.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "instructions": "be brief", "voice": "marin"},
            }
        )
        updated = await client.event("session.updated")
        assert updated["session"]["instructions"] == "be brief"

        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "talk to me"}],
                },
            }
        )
        added = await client.event("conversation.item.added")
        assert added["item"]["role"] == "user"
        assert added["item"]["content"] == [{"type": "input_text", "text": "talk to me"}]

        started = await client.event("output_audio_buffer.started")
        output = await client.event("response.output_item.added")
        item_id = output["item"]["id"]
        assert (
            output["response_id"] == started["response_id"]
            and output["item"]["role"] == "assistant"
        )
        await client.event("response.output_audio_transcript.delta")
        await client.until(lambda: client.played_ms >= 1000)

        # The user cuts in: the app stops playing at once, as OpenAI's guide has it, and tells the
        # server how much was played; the user's voice reaches the model in the microphone.
        audio_end_ms = 600
        client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
            }
        )
        truncated = await client.event("conversation.item.truncated")
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == audio_end_ms
        client.speaking = True
        done = await client.event("response.done")
        client.speaking = False
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["output"][0]["id"] == item_id
        await client.event("output_audio_buffer.stopped")
        deltas = "".join(
            e["delta"]
            for e in client.events
            if e["type"] == "response.output_audio_transcript.delta"
        )
        assert deltas.startswith(reply_text(5)), "the transcript streamed as it was said"
        assert "w24" not in deltas, "the unheard rest after the cut is not streamed"

        # What the conversation holds is what the client said was heard: 600 ms, three words.
        call = talker_server.app[CALLS].get(client.location.rsplit("/", 1)[-1])
        assert call is not None
        spoken = [t for t in call.transcript if t.role == "model"]
        assert [(t.text, t.truncated) for t in spoken] == [(reply_text(3), True)]
        assert [t.text for t in call.transcript if t.role == "user"] == ["be brief", "talk to me"]

        # Anything else gets a clear error naming the event; the call goes on.
        asked = client.send({"type": "response.create"})
        refused = await client.event("error", lambda e: e["error"]["event_id"] == asked)
        assert refused["error"]["code"] == "unsupported_event"
        assert "response.create" in refused["error"]["message"]
        wrong = client.send(
            {"type": "conversation.item.truncate", "item_id": "item_999999", "audio_end_ms": 1}
        )
        refused = await client.event("error", lambda e: e["error"]["event_id"] == wrong)
        assert refused["error"]["code"] == "item_not_found"
        client.send({"type": "input_audio_buffer.commit"})
        await client.event("error", lambda e: "input_audio_buffer.commit" in e["error"]["message"])
        assert call.state == "active"

        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}{client.location}/hangup") as hung_up:
                assert hung_up.status == 204
        ended = await client.event("session.ended")
        assert ended["reason"] == "deleted by client"
    finally:
        await client.close()


async def test_the_unified_form_carries_the_offer_and_the_sessions_instructions(
    talker_server: TestServer,
) -> None:
    base = str(talker_server.make_url("")).rstrip("/")
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    dc = pc.createDataChannel("oai-events")
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
    dc.on("message", lambda m: got.put_nowait(json.loads(m)))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        form = aiohttp.FormData(default_to_multipart=True)  # as a browser's FormData, curl -F
        form.add_field("sdp", pc.localDescription.sdp)
        form.add_field("session", json.dumps({"type": "realtime", "instructions": "be kind"}))
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/v1/realtime/calls", data=form) as response:
                answer = await response.text()
                assert response.status == 201, answer
            async with http.post(f"{base}/v1/realtime/calls", data={"nosdp": "x"}) as bad:
                assert bad.status in (400, 415)
                assert (await bad.json())["error"]["code"] in (
                    "invalid_sdp",
                    "unsupported_media_type",
                )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        created = await asyncio.wait_for(got.get(), CONNECT_S)
        assert created["type"] == "session.created"
        assert created["session"]["instructions"] == "be kind"
    finally:
        await pc.close()


def test_silent_text_becomes_a_text_response_and_unheard_rest_is_not_sent() -> None:
    dialect = RealtimeDialect("c1")
    opened = [json.loads(m) for m in dialect.encode("output_text.delta", {"microturn": 4, "text": "hi", "_part": "text"})]  # fmt: skip
    assert [e["type"] for e in opened] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    closed = [json.loads(m) for m in dialect.encode("_text.ended", {"microturn": 5})]
    assert [e["type"] for e in closed][-1] == "response.done"
    assert closed[0] == {**closed[0], "type": "response.output_text.done", "text": "hi"}
    assert dialect.encode("output_text.delta", {"microturn": 6, "text": "x", "_part": "rest"}) == []
    ids = [e["event_id"] for e in opened + closed]
    assert len(set(ids)) == len(ids), "every server event has its own id"
