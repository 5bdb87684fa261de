"""`RemoteEngine`: the `Engine` protocol over `microturn infer` workers (inference/worker.py).

    Call ── open_async / append / close ──► RemoteEngine ── one Link (inference/link.py: a
                                             │  WebSocket, inference/wire.py) per worker in use,
                                             │  every call of this process there multiplexed on it
                                             └── Redis: the workers, their free slots (infra/
                                                 discovery.py), read at each open and every 0.5 s

Opening: the workers of the pool serving the same model, most free slots first; a worker that
refuses (full, or gone) is skipped for the next; none left: `NoWorkerRoom` (the server's 503).

Faults. A session's worker is lost when its connection drops (the process died: kill -9 closes
its sockets at once), when an append goes unanswered for `stall_s` (the worker stalled; the
connection is dropped), or when the worker says it is stopping. Every session on it then moves:
the appends it had in flight are answered at once as dropped (silence, counted), the next ones
wait (at most `max_pending`, the oldest dropped), and the session reopens on another worker
(retried every 0.2 s until one has room: a restarted worker is as good as any). The model's state
restarts there; the first output from the new worker carries `restart` = why, which the call turns
into a `session.restarted` event and a counter. A lost worker is avoided for 30 s (infra/
discovery.py's Directory, which also says which workers may take a session).

Everything here runs on the event loop and never blocks it: sends are uncompressed WebSocket
frames written at once; every network wait has a timeout; queues are bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import redis.asyncio as aioredis

from inference import wire
from inference.link import TRY_NEXT, Link, Lost
from inference.protocol import EngineStats, MicroTurnInput, MicroTurnOutput, silence
from infra.discovery import DEFAULT_POOL, Directory, WorkerInfo, WorkerKeys

log = logging.getLogger(__name__)

DEFAULT_STALL_S = 0.5  # an append unanswered this long: the worker stalled (steps take < 200 ms)
RETRY_S = 0.2  # a session with no worker tries again this often
WATCH_S = 0.05  # stall checks
HISTORY = 1000

WORKER_LOST = "worker_lost"
WORKER_STALLED = "worker_stalled"
WORKER_STOPPED = "worker_stopped"


class NoWorkerRoom(Exception):
    """No inference worker of the pool has a free session (or this process is full): 503."""


class RemoteStopped(RuntimeError):
    """The remote engine is not running."""


class StepFailed(RuntimeError):
    """The worker's model step raised for this micro-turn (the session goes on)."""


@dataclass
class RemoteConfig:
    redis_url: str
    max_sessions: int = 8  # sessions this media process holds at once
    pool: str = DEFAULT_POOL
    secret: str = ""  # the workers' MICROTURN_INFERENCE_SECRET
    stall_s: float = DEFAULT_STALL_S
    deadline_ms: float = 200.0
    max_pending: int = 2  # appends held per session while it has no worker


def dropped(index: int) -> MicroTurnOutput:
    return MicroTurnOutput(index, "", silence(), False, late=True, dropped=True)


@dataclass
class _Sent:
    future: asyncio.Future[MicroTurnOutput]
    t_append: float  # perf_counter at append()
    t_sent: float = 0.0


@dataclass
class _Session:
    call_id: str
    slot: int
    link: Link[_Session] | None = None
    sid: int = 0
    sent: dict[int, _Sent] = field(default_factory=dict)  # by micro-turn, oldest first
    waiting: deque[tuple[MicroTurnInput, _Sent]] = field(default_factory=deque)
    restart: str | None = None  # why the next output's model state is fresh
    reopening: asyncio.Task[None] | None = None
    closed: bool = False
    microturns: int = 0
    late: int = 0
    dropped: int = 0
    failovers: int = 0


class RemoteEngine:
    """What a call needs of the engine, served by the pool's workers (module docstring)."""

    def __init__(self, config: RemoteConfig) -> None:
        assert config.max_sessions >= 1 and config.max_pending >= 1
        self.config = config
        self.keys = WorkerKeys(config.pool)
        self.model_name = ""  # the pool's model, from the first worker seen (the Directory's)
        self.frame_size = 0
        self._slots: list[_Session | None] = [None] * config.max_sessions
        self._links: dict[str, Link[_Session]] = {}
        self._connecting: dict[str, asyncio.Task[Link[_Session]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._redis: aioredis.Redis | None = None
        self.directory: Directory | None = None
        self._http: aiohttp.ClientSession | None = None
        self._rtt_ms: deque[float] = deque(maxlen=HISTORY)
        self._wire_ms: deque[float] = deque(maxlen=HISTORY)
        self._batch: deque[int] = deque(maxlen=HISTORY)
        self.outputs = 0
        self.late_outputs = 0
        self.dropped_inputs = 0
        self.failovers = 0

    # ---- lifetime ---------------------------------------------------------------------------------
    def warm_up(self) -> None:
        return None  # the workers warm up before they register

    def start(self) -> None:
        """Start on the running event loop (idempotent)."""
        if self._running:
            return
        self._running = True
        self._redis = aioredis.Redis.from_url(
            self.config.redis_url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        self._http = aiohttp.ClientSession()
        self.directory = Directory(self._redis, self.keys)
        self._spawn(self.directory.run(), "inference-directory")
        self._spawn(self._watch_loop(), "inference-stalls")

    def stop(self) -> None:
        """Stop taking work; `aclose()` then closes the connections."""
        self._running = False
        for slot, session in enumerate(self._slots):
            if session is not None:
                self.close(slot)
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        self.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.aclose()
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- the workers ------------------------------------------------------------------------------
    async def _candidates(self) -> list[WorkerInfo]:
        assert self.directory is not None
        workers = await self.directory.candidates()
        self.model_name, self.frame_size = self.directory.model, self.directory.frame_size
        return workers

    async def _link_to(self, worker: WorkerInfo) -> Link[_Session]:
        link = self._links.get(worker.worker_id)
        if link is not None and link.alive:
            return link
        task = self._connecting.get(worker.worker_id)
        if task is None:
            task = self._spawn(self._connect(worker), f"inference-connect-{worker.worker_id}")
            self._connecting[worker.worker_id] = task
            task.add_done_callback(lambda _: self._connecting.pop(worker.worker_id, None))
        return await asyncio.shield(task)  # one connection, however many sessions wait for it

    async def _connect(self, worker: WorkerInfo) -> Link[_Session]:
        assert self._http is not None
        link = await Link.connect(
            self._http,
            worker.url,
            self,
            expect=(self.model_name, self.frame_size),
            secret=self.config.secret,
        )
        self._links[worker.worker_id] = link
        log.info("inference worker %s: connected (%s)", worker.worker_id, worker.url)
        return link

    # ---- what the workers say (Link's listener) ---------------------------------------------------
    def on_output(self, link: Link[_Session], got: wire.Output) -> None:
        session = link.sessions.get(got.session)
        sent = session.sent.pop(got.out.index, None) if session is not None else None
        if session is None or sent is None:
            return
        now = time.perf_counter()
        rtt_ms = (now - sent.t_append) * 1000.0
        out = got.out
        late = out.late or rtt_ms > self.config.deadline_ms
        restart = None
        if session.restart is not None and not out.dropped:
            restart, session.restart = session.restart, None
        session.microturns += 1
        session.late += late
        session.dropped += out.dropped
        self.outputs += 1
        self.late_outputs += late
        self.dropped_inputs += out.dropped
        self._rtt_ms.append(rtt_ms)
        self._wire_ms.append((now - sent.t_sent) * 1000.0 - got.worker_ms)
        self._batch.append(out.batch)
        if not sent.future.done():
            sent.future.set_result(dataclasses.replace(out, late=late, restart=restart))

    def on_failed(self, link: Link[_Session], session: int, index: int, message: str) -> None:
        found = link.sessions.get(session)
        sent = found.sent.pop(index, None) if found is not None else None
        if sent is not None and not sent.future.done():
            sent.future.set_exception(StepFailed(message))

    def on_closed(self, link: Link[_Session], session: int, reason: str) -> None:
        found = link.sessions.pop(session, None)
        if found is not None:
            self._move(found, WORKER_STOPPED, link.worker_id)

    # ---- faults -----------------------------------------------------------------------------------
    def on_lost(self, link: Link[_Session], reason: str) -> None:
        """The worker behind `link` is gone or stuck: every session on it moves."""
        if self._links.get(link.worker_id) is link:
            del self._links[link.worker_id]
        if self.directory is not None:
            self.directory.avoid(link.worker_id)
        sessions, link.sessions = list(link.sessions.values()), {}
        if self._running:
            log.warning(
                "inference worker %s: %s; moving its %d session(s)",
                link.worker_id,
                reason.replace("_", " "),
                len(sessions),
            )
        for session in sessions:
            self._move(session, reason, link.worker_id)

    def _move(self, session: _Session, reason: str, worker_id: str) -> None:
        if session.closed:
            return
        session.link, session.sid = None, 0
        for index, sent in session.sent.items():
            if not sent.future.done():
                sent.future.set_result(dropped(index))
            session.dropped += 1
            self.dropped_inputs += 1
        session.sent.clear()
        session.restart = session.restart or reason
        session.failovers += 1
        self.failovers += 1
        if not self._running:
            return
        if session.reopening is None or session.reopening.done():
            session.reopening = self._spawn(
                self._reopen(session, reason, worker_id), f"call-{session.call_id}-reopen"
            )

    async def _reopen(self, session: _Session, reason: str, lost: str) -> None:
        started = time.perf_counter()
        while not session.closed and self._running:
            for worker in await self._candidates():
                try:
                    await self._attach(session, worker)
                except TRY_NEXT as exc:
                    log.info(
                        "call %s: worker %s did not take the session (%s)",
                        session.call_id,
                        worker.worker_id,
                        exc or type(exc).__name__,
                    )
                    continue
                log.warning(
                    "call %s: session moved from worker %s (%s) to %s in %.0f ms; the model's "
                    "state restarts",
                    session.call_id,
                    lost,
                    reason.replace("_", " "),
                    worker.worker_id,
                    (time.perf_counter() - started) * 1000,
                )
                waiting, session.waiting = list(session.waiting), deque()
                for inp, sent in waiting:
                    await self._send_append(session, inp, sent)
                return
            await asyncio.sleep(RETRY_S)

    async def _attach(self, session: _Session, worker: WorkerInfo) -> None:
        link = await self._link_to(worker)
        sid = await link.open(session.call_id)
        if session.closed:  # the call ended meanwhile
            link.send_soon(wire.encode_id(wire.CLOSE, sid))
            return
        session.link, session.sid = link, sid
        link.sessions[sid] = session

    async def _watch_loop(self) -> None:
        """A worker that leaves an append unanswered for `stall_s` is treated as lost."""
        while True:
            await asyncio.sleep(WATCH_S)
            now = time.perf_counter()
            for link in list(self._links.values()):
                for session in list(link.sessions.values()):
                    oldest = next(iter(session.sent.values()), None)
                    if oldest is not None and now - oldest.t_sent > self.config.stall_s:
                        link.drop(WORKER_STALLED)
                        break

    # ---- sessions (the Engine protocol) -----------------------------------------------------------
    @property
    def active(self) -> int:
        return sum(s is not None for s in self._slots)

    def open(self, call_id: str) -> int:
        raise TypeError("a remote engine opens sessions with `await open_async(call_id)`")

    async def open_async(self, call_id: str) -> int:
        if not self._running:
            raise RemoteStopped("the remote engine is not running")
        slot = next((i for i, s in enumerate(self._slots) if s is None), None)
        if slot is None:
            raise NoWorkerRoom(f"all {len(self._slots)} sessions of this process are taken")
        session = self._slots[slot] = _Session(call_id, slot)
        try:
            for worker in await self._candidates():
                try:
                    await self._attach(session, worker)
                except TRY_NEXT as exc:
                    log.info(
                        "call %s: worker %s refused (%s); trying the next",
                        call_id,
                        worker.worker_id,
                        exc or type(exc).__name__,
                    )
                    continue
                log.info("call %s: session on worker %s", call_id, worker.worker_id)
                return slot
            raise NoWorkerRoom("no inference worker has a free session")
        except BaseException:
            session.closed = True
            self._slots[slot] = None
            raise

    def close(self, slot: int) -> None:
        session = self._slots[slot] if 0 <= slot < len(self._slots) else None
        if session is None:
            return
        self._slots[slot] = None
        session.closed = True
        if session.reopening is not None:
            session.reopening.cancel()
        for sent in [*session.sent.values(), *(s for _, s in session.waiting)]:
            sent.future.cancel()
        session.sent.clear()
        session.waiting.clear()
        link = session.link
        if link is not None and link.alive:
            link.sessions.pop(session.sid, None)
            link.send_soon(wire.encode_id(wire.CLOSE, session.sid))

    def _session(self, slot: int) -> _Session:
        session = self._slots[slot] if 0 <= slot < len(self._slots) else None
        if session is None:
            raise KeyError(f"slot {slot} is not open")
        return session

    async def append(self, slot: int, inp: MicroTurnInput) -> MicroTurnOutput:
        if not self._running:
            raise RemoteStopped("the remote engine is not running")
        session = self._session(slot)
        size = self.frame_size
        if inp.frame is not None and inp.frame.shape != (size, size, 3):
            raise ValueError(f"frame must be [{size}, {size}, 3], got {inp.frame.shape}")
        sent = _Sent(asyncio.get_running_loop().create_future(), time.perf_counter())
        if session.link is not None and session.link.alive:
            await self._send_append(session, inp, sent)
        else:  # no worker yet (moving): hold the newest few
            session.waiting.append((inp, sent))
            if len(session.waiting) > self.config.max_pending:
                old_inp, old = session.waiting.popleft()
                old.future.set_result(dropped(old_inp.index))
                session.dropped += 1
                self.dropped_inputs += 1
        return await sent.future

    async def _send_append(self, session: _Session, inp: MicroTurnInput, sent: _Sent) -> None:
        link = session.link
        if link is None or not link.alive:
            sent.future.set_result(dropped(inp.index))
            return
        frame = wire.encode_append(session.sid, inp)
        sent.t_sent = time.perf_counter()
        session.sent[inp.index] = sent
        try:
            await link.send(frame)
        except Lost:
            link.drop(WORKER_LOST)  # answers this append too, as dropped

    def session_stats(self, slot: int) -> dict[str, Any]:
        session = self._session(slot)
        return {
            "call_id": session.call_id,
            "worker": session.link.worker_id if session.link is not None else None,
            "microturns": session.microturns,
            "late_steps": session.late,
            "dropped_inputs": session.dropped,
            "pending": len(session.sent) + len(session.waiting),
            "failovers": session.failovers,
        }

    def stats(self) -> EngineStats:
        """step_ms_*: round trips, append to output (the wait and step on the worker included)."""
        rtt = np.array(self._rtt_ms, dtype=np.float64)
        batch = np.array(self._batch, dtype=np.float64)
        free = self.directory.free() if self.directory is not None else 0
        return EngineStats(
            model=self.model_name,
            device="remote",
            threads=0,
            active=self.active,
            capacity=self.active + free,
            steps=self.outputs,
            late_steps=self.late_outputs,
            late_outputs=self.late_outputs,
            dropped_inputs=self.dropped_inputs,
            step_ms_p50=float(np.percentile(rtt, 50)) if rtt.size else 0.0,
            step_ms_p99=float(np.percentile(rtt, 99)) if rtt.size else 0.0,
            step_ms_max=float(rtt.max()) if rtt.size else 0.0,
            batch_mean=float(batch.mean()) if batch.size else 0.0,
        )

    def wire_ms(self) -> np.ndarray:
        """The last appends' time on the wire: round trip less the worker's own time (ms)."""
        return np.array(self._wire_ms, dtype=np.float64)

    def workers(self) -> list[WorkerInfo]:
        """The pool as last read (usable or not)."""
        return list(self.directory.workers) if self.directory is not None else []
