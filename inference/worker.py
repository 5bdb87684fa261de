"""`microturn infer`: the engine in its own process, serving streaming sessions over WebSockets.

    media process A ──┐ one WebSocket each, every session of that process multiplexed on it
    media process B ──┼──► GET /v1/sessions ──► Engine (inference/engine.py: its thread, one
    media process C ──┘    (inference/wire.py)   batched step for every due session of A, B, C)
                                 │
                                 └── Redis: microturn:infer:{pool}:worker:{id} (infra/discovery.py)
                                     address, model, free slots; heartbeat, TTL

A session here is an engine slot owned by one connection: OPEN takes a slot (REFUSED when full),
APPEND is `Engine.append` (the engine bounds what each session has waiting and drops the oldest
when behind), CLOSE frees it; a connection that drops frees all of its slots at once. Nothing runs
on this event loop but framing: steps are on the engine thread.

Stopping (SIGTERM, Ctrl-C): the registration is deleted (no new sessions come), every session
gets CLOSED (its media process reopens it on another worker at once), then the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from inference import wire
from inference.engine import Engine, EngineConfig, EngineFull, EngineStopped
from infra.discovery import HEARTBEAT_S, TTL_S, Registration, WorkerInfo, WorkerKeys
from infra.logs import setup_logging

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090
DEFAULT_MAX_SESSIONS = 32
WS_HEARTBEAT_S = 5.0  # pings on idle connections: a vanished media process is noticed
SECRET_ENV = "MICROTURN_INFERENCE_SECRET"


class Connection:
    """One media process's WebSocket and the sessions it holds here."""

    def __init__(self, server: WorkerServer, ws: web.WebSocketResponse, peer: str) -> None:
        self.server = server
        self.ws = ws
        self.peer = peer
        self.slots: dict[int, int] = {}  # session id (this connection's) -> engine slot
        self._next_session = 1
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        engine = self.server.engine
        await self.ws.send_bytes(self.server.hello().encode())
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.ERROR:
                    break
                raise wire.WireError(f"unexpected {msg.type.name} message")
            data: bytes = msg.data
            kind = wire.kind_of(data)
            if kind == wire.APPEND:
                session, inp = wire.decode_append(data)
                slot = self.slots.get(session)
                if slot is None:  # closed meanwhile: nobody waits for it
                    continue
                task = asyncio.create_task(self._answer(session, slot, inp, time.perf_counter()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif kind == wire.OPEN:
                req, call_id = wire.decode_id(data)
                try:
                    slot = engine.open(call_id)
                except (EngineFull, EngineStopped) as exc:
                    await self._send(wire.encode_id(wire.REFUSED, req, str(exc)))
                    continue
                session = self._next_session
                self._next_session += 1
                self.slots[session] = slot
                self.server.changed()
                await self._send(wire.encode_opened(req, session))
            elif kind == wire.CLOSE:
                session, _ = wire.decode_id(data)
                slot = self.slots.pop(session, None)
                if slot is not None:
                    engine.close(slot)
                    self.server.changed()
            else:
                raise wire.WireError(f"unexpected frame kind {kind}")

    async def _answer(self, session: int, slot: int, inp: Any, t_recv: float) -> None:
        try:
            out = await self.server.engine.append(slot, inp)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return  # the session was closed: its pending appends are cancelled
        except (
            Exception
        ) as exc:  # the model step failed: that micro-turn fails, the session goes on
            await self._send(wire.encode_failed(session, inp.index, f"{exc}"))
            return
        worker_ms = (time.perf_counter() - t_recv) * 1000.0
        await self._send(wire.encode_output(session, out, worker_ms))

    async def _send(self, frame: bytes) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(frame)

    async def goodbye(self, reason: str) -> None:
        """The worker stops: each session is told (its media process moves it), then closed."""
        for session in list(self.slots):
            await self._send(wire.encode_id(wire.CLOSED, session, reason))
        self.release()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 1.0)

    def release(self) -> None:
        """Free every slot this connection holds (it closed, or the worker stops)."""
        slots, self.slots = list(self.slots.values()), {}
        for slot in slots:
            self.server.engine.close(slot)
        for task in list(self._tasks):
            task.cancel()
        if slots:
            self.server.changed()
            log.info("connection %s: released %d session(s)", self.peer, len(slots))


class WorkerServer:
    """The WebSocket endpoint over an engine, and its registration."""

    def __init__(
        self,
        engine: Engine,
        *,
        worker_id: str | None = None,
        secret: str = "",
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.secret = secret
        self.url = ""  # set once bound (advertised in the registration)
        self.registration: Registration | None = None
        self.connections: set[Connection] = set()

    def hello(self) -> wire.Hello:
        return wire.Hello(
            self.worker_id, self.engine.model_name, self.engine.frame_size, self.engine.capacity
        )

    def describe(self) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id,
            url=self.url,
            model=self.engine.model_name,
            frame_size=self.engine.frame_size,
            capacity=self.engine.capacity,
            free=self.engine.capacity - self.engine.active,
            pid=os.getpid(),
            host=socket.gethostname(),
            updated_at=time.time(),
        )

    def changed(self) -> None:
        if self.registration is not None:
            self.registration.nudge()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(wire.PATH, self.sessions)
        app.router.add_get("/healthz", self.health)
        return app

    def authorized(self, request: web.Request) -> bool:
        if not self.secret:
            return True
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        return hmac.compare_digest(given, self.secret.encode())

    async def sessions(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            raise web.HTTPUnauthorized(text="bad or missing inference secret")
        ws = web.WebSocketResponse(
            heartbeat=WS_HEARTBEAT_S, max_msg_size=wire.MAX_MESSAGE_BYTES, compress=False
        )
        await ws.prepare(request)
        conn = Connection(self, ws, request.remote or "?")
        self.connections.add(conn)
        log.info("connection %s: open", conn.peer)
        try:
            await conn.serve()
        except wire.WireError as exc:
            log.warning("connection %s: protocol error (%s); closing it", conn.peer, exc)
            await ws.close(code=1002, message=b"protocol error")
        finally:
            conn.release()
            self.connections.discard(conn)
            log.info("connection %s: closed", conn.peer)
        return ws

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"worker_id": self.worker_id, "url": self.url, **self.engine.stats().as_dict()}
        )

    async def stop(self, reason: str = "worker stopping") -> None:
        if self.registration is not None:
            await self.registration.withdraw()
        await asyncio.gather(
            *(c.goodbye(reason) for c in list(self.connections)), return_exceptions=True
        )


# ---- the command ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="microturn infer",
        description="Serve the model's streaming sessions to media processes "
        "(`microturn serve --inference remote`) over WebSockets; registers in Redis. "
        f"A shared secret, if any, comes from {SECRET_ENV} (never a flag).",
    )
    p.add_argument("--redis-url", default=env("REDIS_URL"), help="Redis URL [REDIS_URL]")
    p.add_argument("--host", default=env("MICROTURN_INFER_HOST", "127.0.0.1"), help="bind address")
    p.add_argument(
        "--port",
        type=int,
        default=int(env("MICROTURN_INFER_PORT", DEFAULT_PORT)),
        help=f"port (0: any free one) [MICROTURN_INFER_PORT; default {DEFAULT_PORT}]",
    )
    p.add_argument(
        "--advertise-url",
        default=env("MICROTURN_INFER_ADVERTISE_URL"),
        help="the URL media processes reach this worker at; default ws://HOST:PORT/v1/sessions "
        "(with the machine's host name when HOST is a wildcard)",
    )
    p.add_argument("--model", default=env("MICROTURN_MODEL"), help="checkpoint dir, or `echo`")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=int(env("MICROTURN_INFER_MAX_SESSIONS", DEFAULT_MAX_SESSIONS)),
        help=f"engine slots [MICROTURN_INFER_MAX_SESSIONS; default {DEFAULT_MAX_SESSIONS}]",
    )
    p.add_argument("--device", default=env("MICROTURN_DEVICE"), help="torch device")
    p.add_argument(
        "--threads",
        type=int,
        default=int(env("MICROTURN_ENGINE_THREADS", "0")) or None,
        help="torch threads of the engine",
    )
    p.add_argument(
        "--step-mode",
        default=env("MICROTURN_STEP_MODE", "eager"),
        choices=("eager", "compile", "cudagraph"),
        help="the hot step: eager, torch.compile, or CUDA graphs (CUDA only) [MICROTURN_STEP_MODE]",
    )
    p.add_argument(
        "--pool",
        default=env("MICROTURN_INFERENCE_POOL", "default"),
        help="worker pool name in Redis (media processes use the same)",
    )
    p.add_argument("--heartbeat-s", type=float, default=HEARTBEAT_S)
    p.add_argument("--ttl-s", type=float, default=TTL_S)
    p.add_argument("--log-level", default=env("MICROTURN_LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", default=env("MICROTURN_LOG_FORMAT", "text"))
    return p


def advertised_url(host: str, port: int) -> str:
    if host in {"", "0.0.0.0", "::"}:
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}{wire.PATH}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(args.log_level, args.log_format)
    if not args.redis_url:
        parser.error("--redis-url URL (or REDIS_URL) is required: workers register in Redis")
    if args.max_sessions < 1:
        parser.error("--max-sessions must be at least 1")
    from inference.loading import load_model

    config = EngineConfig(
        max_sessions=args.max_sessions,
        device=args.device,
        num_threads=args.threads,
        step_mode=args.step_mode,
    )
    engine = Engine(load_model(args.model), config)
    engine.warm_up()  # before registering: the first session's first step is not late
    try:
        asyncio.run(_serve(engine, args))
    except KeyboardInterrupt:
        return 130
    finally:
        engine.stop()
    return 0


async def _serve(engine: Engine, args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    engine.start()
    server = WorkerServer(engine, secret=os.environ.get(SECRET_ENV, ""))
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    server.url = args.advertise_url or advertised_url(args.host, port)
    redis = aioredis.Redis.from_url(args.redis_url, socket_connect_timeout=2.0)
    registration = Registration(
        redis,
        WorkerKeys(args.pool),
        server.describe,
        heartbeat_s=args.heartbeat_s,
        ttl_s=args.ttl_s,
    )
    server.registration = registration
    registration.start()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    print(
        f"microturn infer {server.worker_id}: serving {engine.model_name} on {server.url} "
        f"({engine.capacity} sessions, pool {args.pool}); Ctrl-C to stop",
        flush=True,
    )
    try:
        await stop.wait()
        log.info("inference worker %s: stopping", server.worker_id)
    finally:
        await server.stop()
        await runner.cleanup()
        await redis.aclose()


if __name__ == "__main__":
    from inference.worker import main as _main

    sys.exit(_main())
