"""A media process's connection to one `microturn infer` worker: one WebSocket, many sessions.

    Link.connect(url)   the WebSocket, then the worker's HELLO checked (protocol, model, frame)
    link.open(call_id)  OPEN -> OPENED (the session id) or REFUSED; a late OPENED is given back
    link.send(frame)    APPEND / CLOSE, written at once (uncompressed frames never wait for a lock)
    the reader          OUTPUT, FAILED, CLOSED go to the listener (inference/remote.py); when the
                        connection ends for any reason the listener hears `on_lost` once

Every wait has a timeout; `Lost` and `Refused` (and the errors in TRY_NEXT) mean: try another
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic, Protocol, TypeVar

import aiohttp

from inference import wire

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
OPEN_TIMEOUT_S = 1.0
CLOSE_TIMEOUT_S = 1.0
WS_HEARTBEAT_S = 5.0

S = TypeVar("S")


class Refused(Exception):
    """The worker would not open the session (full, stopping, another model)."""


class Lost(ConnectionError):
    """The connection to the worker is gone."""


TRY_NEXT = (Refused, Lost, TimeoutError, aiohttp.ClientError, OSError, wire.WireError)


class Listener(Protocol[S]):
    def on_output(self, link: Link[S], got: wire.Output) -> None: ...
    def on_failed(self, link: Link[S], session: int, index: int, message: str) -> None: ...
    def on_closed(self, link: Link[S], session: int, reason: str) -> None: ...
    def on_lost(self, link: Link[S], reason: str) -> None: ...


class Link(Generic[S]):
    """One WebSocket to one worker; `sessions` maps this connection's session ids to the
    listener's own session objects."""

    def __init__(
        self,
        hello: wire.Hello,
        url: str,
        ws: aiohttp.ClientWebSocketResponse,
        listener: Listener[S],
    ) -> None:
        self.worker_id = hello.worker_id
        self.hello = hello
        self.url = url
        self.ws = ws
        self.listener = listener
        self.alive = True
        self.lost_reason = "worker_lost"
        self.sessions: dict[int, S] = {}
        self._opens: dict[int, asyncio.Future[int]] = {}
        self._next_req = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"inference-read-{hello.worker_id}"
        )

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        listener: Listener[S],
        *,
        expect: tuple[str, int],
        secret: str = "",
    ) -> Link[S]:
        """Connect and check the worker serves `expect` = (model, frame size)."""
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        ws = await asyncio.wait_for(
            http.ws_connect(
                url,
                heartbeat=WS_HEARTBEAT_S,
                max_msg_size=wire.MAX_MESSAGE_BYTES,
                compress=0,
                headers=headers,
            ),
            CONNECT_TIMEOUT_S,
        )
        try:
            msg = await asyncio.wait_for(ws.receive(), CONNECT_TIMEOUT_S)
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise Lost(f"no HELLO from {url}")
            hello = wire.Hello.decode(msg.data)
            if hello.protocol != wire.PROTOCOL:
                raise Refused(f"the worker speaks protocol {hello.protocol}")
            if (hello.model, hello.frame_size) != expect:
                raise Refused(f"the worker serves {hello.model}, not {expect[0]}")
        except BaseException:
            await ws.close()
            raise
        return cls(hello, url, ws, listener)

    async def send(self, frame: bytes) -> None:
        if not self.alive:
            raise Lost("the connection is closed")
        try:
            await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError) as exc:
            raise Lost(str(exc)) from None

    def send_soon(self, frame: bytes) -> None:
        """Send without waiting for it (a CLOSE from synchronous code); errors are the reader's
        to notice."""
        task = asyncio.get_running_loop().create_task(self._send_quietly(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_quietly(self, frame: bytes) -> None:
        with contextlib.suppress(Lost):
            await self.send(frame)

    async def open(self, call_id: str) -> int:
        """A new session for `call_id` -> its id on this connection. Raises Refused, Lost, or
        TimeoutError."""
        req = self._next_req
        self._next_req += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._opens[req] = future
        try:
            await self.send(wire.encode_id(wire.OPEN, req, call_id))
            return await asyncio.wait_for(future, OPEN_TIMEOUT_S)
        finally:
            self._opens.pop(req, None)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                self._on_frame(msg.data)
        except wire.WireError as exc:
            log.warning("inference worker %s: protocol error (%s)", self.worker_id, exc)
        finally:
            self.drop(self.lost_reason)

    def _on_frame(self, data: bytes) -> None:
        kind = wire.kind_of(data)
        if kind == wire.OUTPUT:
            self.listener.on_output(self, wire.decode_output(data))
        elif kind == wire.FAILED:
            self.listener.on_failed(self, *wire.decode_failed(data))
        elif kind == wire.OPENED:
            req, session = wire.decode_opened(data)
            future = self._opens.get(req)
            if future is not None and not future.done():
                future.set_result(session)
            else:  # opened after we gave up on it: give it back
                self.send_soon(wire.encode_id(wire.CLOSE, session))
        elif kind == wire.REFUSED:
            req, reason = wire.decode_id(data)
            refused = self._opens.get(req)
            if refused is not None and not refused.done():
                refused.set_exception(Refused(reason))
        elif kind == wire.CLOSED:
            self.listener.on_closed(self, *wire.decode_id(data))
        else:
            raise wire.WireError(f"unexpected frame kind {kind}")

    def drop(self, reason: str) -> None:
        """This connection is done (it ended, or the worker is to be left): opens in flight fail,
        the listener hears `on_lost` once, the socket closes in the background."""
        if not self.alive:
            return
        self.alive = False
        self.lost_reason = reason
        for future in self._opens.values():
            if not future.done():
                future.set_exception(Lost(reason))
        try:
            self.listener.on_lost(self, reason)
        finally:
            task = asyncio.get_running_loop().create_task(self.aclose())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop reading, then close; a worker that does not answer the close (stalled) has its
        connection cut when the timeout cancels it (aiohttp closes the transport then)."""
        self.alive = False
        if self.reader is not asyncio.current_task():
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT_S)
