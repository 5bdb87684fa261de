"""A Python peer for a Microturn server: what a browser does, from aiortc.

    async with CallClient("http://127.0.0.1:8080", audio=tone(), video=MovingSquareTrack()) as call:
        await call.wait_event("session.created")
        call.send("input_text", text="hello")
        ...

Used by tests, load benchmarks and QA scripts. It records the server's audio (bounded) so a script
can check what it heard. `drop()` then `resume()` is a client whose network path died: a new peer
connection for the same call, with the resume token of the latest `session.created`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from signaling.events import EVENTS_LABEL

RECORD_SECONDS = 30


class CallRefused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers


class CallClient:
    def __init__(
        self,
        base_url: str,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        token: str | None = None,
        origin: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.audio, self.video = audio, video
        self.token, self.origin = token, origin
        self.events: list[dict[str, Any]] = []
        self._event_added = asyncio.Condition()
        self.location: str | None = None
        self.call_id: str | None = None
        # received audio: (arrival monotonic, 16-bit mono samples at 48 kHz) per frame, bounded
        self.received: deque[tuple[float, np.ndarray]] = deque(maxlen=RECORD_SECONDS * 50)
        self.received_sample_rate = 48_000
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._notifiers: set[asyncio.Future[None]] = set()
        self._new_peer()

    def _new_peer(self) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel(EVENTS_LABEL, ordered=True)

        @self.channel.on("message")
        def on_message(message: str | bytes) -> None:
            try:
                event = json.loads(message)
            except (TypeError, ValueError):
                return
            self.events.append(event)
            task = asyncio.ensure_future(self._notify())
            self._notifiers.add(task)
            task.add_done_callback(self._notifiers.discard)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._record(track)))

    def _add_media(self) -> None:
        if self.audio is not None:
            self.pc.addTrack(self.audio)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        if self.video is not None:
            self.pc.addTrack(self.video)

    async def _notify(self) -> None:
        async with self._event_added:
            self._event_added.notify_all()

    async def _record(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind != "audio":
                continue
            pcm = frame.to_ndarray().reshape(-1)  # type: ignore[union-attr]
            channels = len(frame.layout.channels)  # type: ignore[union-attr]
            self.received_sample_rate = frame.sample_rate  # type: ignore[union-attr]
            self.received.append((time.monotonic(), pcm[::channels].copy()))

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.origin:
            headers["Origin"] = self.origin
        return headers

    async def connect(self) -> CallClient:
        self._add_media()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._session = aiohttp.ClientSession()
        async with self._session.post(
            f"{self.base_url}/v1/calls",
            data=self.pc.localDescription.sdp,
            headers=self._headers("application/sdp"),
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                try:
                    err = json.loads(body)["error"]
                except (ValueError, KeyError, TypeError):
                    err = {"code": "http_error", "message": body[:200]}
                await self.close()
                raise CallRefused(resp.status, err["code"], err["message"], dict(resp.headers))
            # a path, or the absolute URL of the node the call sticks to (--public-url)
            self.location = urljoin(self.base_url + "/", resp.headers["Location"])
        self.call_id = self.location.rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return self

    async def drop(self) -> None:
        """The network path dies: the peer connection closes, no DELETE; the call waits for a
        resume (the server's resume window)."""
        for task in self._tasks:
            task.cancel()
        await self.pc.close()

    async def resume(self) -> CallClient:
        """Re-offer on a new peer connection with the latest resume token: the same call goes on
        (same engine session); raises CallRefused when the server will not have it."""
        assert self._session is not None and self.location is not None
        token = next(
            (
                e["resume_token"]
                for e in reversed(self.events)
                if e.get("type") == "session.created"
            ),
            None,
        )
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._new_peer()
        self._add_media()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
        if self.origin:
            headers["Origin"] = self.origin
        async with self._session.post(
            f"{self.location}/resume", data=self.pc.localDescription.sdp, headers=headers
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                try:
                    err = json.loads(body)["error"]
                except (ValueError, KeyError, TypeError):
                    err = {"code": "http_error", "message": body[:200]}
                raise CallRefused(resp.status, err["code"], err["message"], dict(resp.headers))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return self

    def send(self, type_: str, **fields: Any) -> None:
        self.channel.send(json.dumps({"type": type_, **fields}))

    def send_raw(self, message: str | bytes) -> None:
        self.channel.send(message)

    async def wait_event(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 30.0,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first event of `type_` (from index `after` on) that satisfies `predicate`."""

        def find() -> dict[str, Any] | None:
            for event in self.events[after:]:
                if event.get("type") == type_ and predicate(event):
                    return event
            return None

        async def wait() -> dict[str, Any]:
            async with self._event_added:
                while (found := find()) is None:
                    await self._event_added.wait()
                return found

        return await asyncio.wait_for(wait(), timeout)

    def received_audio(self, last_s: float | None = None) -> np.ndarray:
        """The server's audio we received, mono float32 (at `received_sample_rate`)."""
        frames = list(self.received)
        if last_s is not None:
            cutoff = time.monotonic() - last_s
            frames = [f for f in frames if f[0] >= cutoff]
        if not frames:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([pcm for _, pcm in frames]).astype(np.float32) / 32768

    async def status(self) -> dict[str, Any]:
        assert self._session is not None and self.location is not None
        async with self._session.get(self.location, headers=self._headers()) as resp:
            resp.raise_for_status()
            result: dict[str, Any] = await resp.json()
            return result

    async def hang_up(self) -> int:
        """DELETE the call; returns the HTTP status."""
        assert self._session is not None and self.location is not None
        async with self._session.delete(self.location, headers=self._headers()) as resp:
            return resp.status

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> CallClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
