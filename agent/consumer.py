"""A background worker's consumer side: which entries of `microturn:ctx` it runs, and when.

    fetch loop:  XAUTOCLAIM stale entries (idle > claim_idle_ms), then XREADGROUP `>`,
                 never more than the free slots
    slots:       `concurrency` packages *working* at once; a package that only waits (a timer,
                 inside `slots.waiting()`) gives its slot back meanwhile, up to `max_waiting`
                 more packages held in all
    heartbeat:   resets the idle time of the entries this worker is running, so a long task
                 (a timer, a slow model) is not reclaimed from a live worker; an entry that is no
                 longer ours (reclaimed after we stalled) is cancelled here, and so is one whose
                 call has ended (then acked: nobody is listening)
    stop():      stop fetching, let running tasks finish for `grace_s`, cancel the rest and
                 release them (idle set high) so a live worker takes them over at once

Each entry runs in its own task through `agent.runner.PackageRunner`; writes go through
`agent.batching.BusWriter`. Any number of workers, in any number of processes and machines, share
the `agents` group. `microturn agent` is agent.cli.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agent import slots
from agent.backends import Backend
from agent.batching import BusWriter
from agent.bus import (
    RELEASE_IDLE_MS,
    TRANSIENT_ERRORS,
    Backoff,
    Outage,
    StreamKeys,
    ack_and_delete,
    ended_calls,
    ensure_group,
    raise_if_cancelling,
)
from agent.runner import Entry, Job, PackageRunner, WorkerStats

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_WAITING = 256  # packages that only wait (timers) held beyond `concurrency`
DEFAULT_CLAIM_IDLE_MS = 30_000
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_BLOCK_MS = 1000
DEFAULT_TASK_TIMEOUT_S = 3900.0  # longer than the longest timer (1 h)
DEFAULT_GRACE_S = 10.0

_RELEASE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, ResponseError, *TRANSIENT_ERRORS)


@dataclass
class _Shutdown:
    grace_s: float = 0.0
    requested: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """One consumer in the `agents` group, running up to `concurrency` packages at once."""

    def __init__(
        self,
        redis_url: str,
        backend: Backend,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_waiting: int = DEFAULT_MAX_WAITING,
        consumer_name: str | None = None,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        keys: StreamKeys | None = None,
        block_ms: int = DEFAULT_BLOCK_MS,
        claim_interval_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        task_timeout_s: float = DEFAULT_TASK_TIMEOUT_S,
        ack_with_result: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        self.redis_url = redis_url
        self.backend = backend
        self.concurrency = concurrency
        self.max_jobs = concurrency + max(0, max_waiting)
        self.consumer = consumer_name or default_consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.keys = keys or StreamKeys()
        self.block_ms = block_ms
        self.claim_interval_s = (claim_interval_ms or min(claim_idle_ms // 2, 5000)) / 1000
        self.heartbeat_interval_s = (heartbeat_interval_ms or max(claim_idle_ms // 4, 20)) / 1000
        self.task_timeout_s = task_timeout_s
        self.ack_with_result = ack_with_result
        self.stats = WorkerStats()
        self.ready = asyncio.Event()  # set once the group exists and the worker is fetching
        self._jobs: dict[str, Job] = {}
        self._slot_free = asyncio.Event()
        self._shutdown = _Shutdown()
        self._finished = asyncio.Event()
        self._running = False
        self._claim_cursor = "0-0"
        self._next_claim_at = 0.0
        self._outage = Outage(log, f"agent worker {self.consumer}")
        self._redis: aioredis.Redis | None = None
        self._bus: BusWriter | None = None
        self._runner: PackageRunner | None = None
        self._ending: set[asyncio.Task[None]] = set()  # acks of packages whose call ended

    # -- lifetime ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until stop() or cancellation. On cancellation running tasks are released."""
        if self._running:
            raise RuntimeError(f"worker {self.consumer} is already running")
        self._running = True
        self._finished.clear()
        self._redis = aioredis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=None,
            # TCP keepalive; redis-py's unix-socket connections refuse the option
            **({} if self.redis_url.startswith("unix:") else {"socket_keepalive": True}),
            health_check_interval=30,
        )
        self._bus = BusWriter(self._redis, self.keys, self._outage)
        self._runner = PackageRunner(
            self.backend,
            self._bus,
            self.stats,
            consumer=self.consumer,
            max_deliveries=self.max_deliveries,
            task_timeout_s=self.task_timeout_s,
            ack_with_result=self.ack_with_result,
        )
        log.info(
            "agent worker %s: consuming %s as group %s (backend %s, concurrency %d)",
            self.consumer,
            self.keys.ctx,
            self.keys.group,
            getattr(self.backend, "name", type(self.backend).__name__),
            self.concurrency,
        )
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat-{self.consumer}")
        fetch = asyncio.create_task(self._fetch_loop(), name=f"fetch-{self.consumer}")
        stop_wait = asyncio.create_task(self._shutdown.requested.wait())
        cancelled = False
        try:
            await asyncio.wait([fetch, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if fetch.done():
                fetch.result()  # a bug in the loop: raise it
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            stop_wait.cancel()
            fetch.cancel()
            await asyncio.wait([fetch])
            await self._drain(0.0 if cancelled else self._shutdown.grace_s)
            heartbeat.cancel()
            await asyncio.wait([heartbeat])
            await self._bus.close()
            await self._release_all()
            await self._redis.aclose()
            self._running = False
            self._finished.set()
            log.info("agent worker %s stopped: %s", self.consumer, self.stats.as_dict())

    async def stop(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        """Stop fetching; running tasks get `grace_s` to finish, the rest are released to other
        workers. Returns when run() has returned."""
        self._shutdown.grace_s = grace_s
        self._shutdown.requested.set()
        if self._running:
            await self._finished.wait()

    async def _drain(self, grace_s: float) -> None:
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        if tasks and grace_s > 0:
            log.info(
                "agent worker %s: waiting up to %.1f s for %d running task(s)",
                self.consumer,
                grace_s,
                len(tasks),
            )
            await asyncio.wait(tasks, timeout=grace_s)
        # Cancel what is left; cancel again while a task survives it (see raise_if_cancelling).
        while True:
            left = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
            if not left:
                break
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)

    async def _release_all(self) -> None:
        """Hand back every entry still pending on this consumer (best effort, bounded in time)."""
        assert self._redis is not None and self._bus is not None
        try:
            async with asyncio.timeout(3.0):
                pending: Any = await self._redis.xpending_range(
                    self.keys.ctx, self.keys.group, "-", "+", 10_000, consumername=self.consumer
                )
                ids = [_s(p["message_id"]) for p in pending]
                if ids:
                    await self._bus.scripts.touch(
                        keys=[self.keys.ctx],
                        args=[self.keys.group, self.consumer, RELEASE_IDLE_MS, *ids],
                    )
                    self.stats.released += len(ids)
                    log.info(
                        "agent worker %s: released %d unfinished package(s) to other workers",
                        self.consumer,
                        len(ids),
                    )
                else:
                    # Nothing pending: the consumer can go, so XINFO CONSUMERS stays short.
                    await self._redis.xgroup_delconsumer(
                        self.keys.ctx, self.keys.group, self.consumer
                    )
        except _RELEASE_ERRORS as exc:
            log.warning(
                "agent worker %s: could not release pending work (%s); it is reclaimed after "
                "%d ms idle",
                self.consumer,
                exc,
                self.claim_idle_ms,
            )

    # -- fetching ---------------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        assert self._redis is not None
        backoff = Backoff()
        group_ready = False
        while not self._shutdown.requested.is_set():
            raise_if_cancelling()
            free = min(self.concurrency - self._working(), self.max_jobs - len(self._jobs))
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                if not group_ready:
                    await ensure_group(self._redis, self.keys)
                    # Visible in XINFO CONSUMERS from the start, not only after a first read.
                    await self._redis.xgroup_createconsumer(
                        self.keys.ctx, self.keys.group, self.consumer
                    )
                    group_ready = True
                    self.ready.set()
                entries: list[Entry] = []
                if time.monotonic() >= self._next_claim_at:
                    entries = await self._reclaim(free)
                    if not entries or self._claim_cursor == "0-0":
                        self._next_claim_at = time.monotonic() + self.claim_interval_s
                for entry in entries:
                    self._start(entry)
                free -= len(entries)
                if free > 0:
                    block = self.block_ms
                    if self._next_claim_at > 0:
                        until_claim = int((self._next_claim_at - time.monotonic()) * 1000)
                        block = max(1, min(block, until_claim))
                    reply: Any = await self._redis.xreadgroup(
                        self.keys.group,
                        self.consumer,
                        {self.keys.ctx: ">"},
                        count=free,
                        block=block,
                    )
                    for _key, stream_entries in reply or ():
                        for entry_id, fields in stream_entries:
                            self.stats.received += 1
                            self._start(Entry(_s(entry_id), fields or {}))
                self._outage.ok()
                backoff.reset()
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group vanished (Redis restarted without persistence, or
                    # someone deleted the key): declare it again.
                    log.warning("agent worker %s: %s; recreating the group", self.consumer, exc)
                    group_ready = False
                    continue
                log.error("agent worker %s: fetch failed: %s", self.consumer, exc)
                await backoff.sleep()
            except TRANSIENT_ERRORS as exc:
                self._outage.failed(exc)
                await backoff.sleep()

    async def _reclaim(self, count: int) -> list[Entry]:
        """Take over entries idle longer than claim_idle_ms (their consumer died or stalled)."""
        assert self._redis is not None
        reply: Any = await self._redis.xautoclaim(
            self.keys.ctx,
            self.keys.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        # Redis 7: [cursor, entries, deleted ids]; Redis 6.2: [cursor, entries] where an entry
        # trimmed from the stream comes back as (None, None) and stays pending.
        self._claim_cursor = _s(reply[0])
        deleted = [_s(i) for i in reply[2]] if len(reply) > 2 and reply[2] else []
        raw_entries = list(reply[1] or ())
        entries = [(eid, f) for eid, f in raw_entries if eid is not None]
        if deleted:
            self.stats.trimmed += len(deleted)
            log.error(
                "agent worker %s: %d pending package(s) were trimmed from %s before they ran "
                "(ctx_maxlen too small for the backlog?): %s",
                self.consumer,
                len(deleted),
                self.keys.ctx,
                deleted[:5],
            )
        if len(entries) < len(raw_entries):
            await self._ack_trimmed_62()
        if not entries:
            return []
        ids = [_s(eid) for eid, _ in entries]
        pending: Any = await self._redis.xpending_range(
            self.keys.ctx,
            self.keys.group,
            ids[0],
            ids[-1],
            len(ids) + len(self._jobs) + 16,
            consumername=self.consumer,
        )
        deliveries = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
        out = []
        for eid, fields in entries:
            entry_id = _s(eid)
            if entry_id in self._jobs:  # our own stalled entry: it is still running here
                continue
            self.stats.reclaimed += 1
            count_ = deliveries.get(entry_id)
            if count_ is None:  # the range held more of ours than asked for: ask for this one
                one: Any = await self._redis.xpending_range(
                    self.keys.ctx, self.keys.group, entry_id, entry_id, 1
                )
                count_ = int(one[0]["times_delivered"]) if one else 1
            log.info("agent worker %s: reclaimed %s (delivery %d)", self.consumer, entry_id, count_)
            out.append(Entry(entry_id, fields or {}, count_, reclaimed=True))
        return out

    async def _ack_trimmed_62(self) -> None:
        """Redis 6.2 leaves trimmed entries pending after XAUTOCLAIM: find and ack them."""
        assert self._redis is not None
        pending: Any = await self._redis.xpending_range(
            self.keys.ctx, self.keys.group, "-", "+", 1000, consumername=self.consumer
        )
        for p in pending:
            entry_id = _s(p["message_id"])
            if entry_id in self._jobs:
                continue
            if not await self._redis.xrange(self.keys.ctx, entry_id, entry_id):
                await ack_and_delete(self._redis, self.keys, [entry_id])
                self.stats.trimmed += 1
                log.error(
                    "agent worker %s: pending package %s was trimmed from %s before it ran",
                    self.consumer,
                    entry_id,
                    self.keys.ctx,
                )

    def _start(self, entry: Entry) -> None:
        assert self._runner is not None
        job = Job(entry.entry_id, slots.Lease(self._lease_changed))
        task = asyncio.create_task(self._runner.handle(entry, job), name=f"agent-{entry.entry_id}")
        job.task = task
        self._jobs[entry.entry_id] = job
        self.stats.in_flight = len(self._jobs)
        task.add_done_callback(functools.partial(self._job_done, entry.entry_id))

    def _job_done(self, entry_id: str, _task: asyncio.Task[None]) -> None:
        self._jobs.pop(entry_id, None)
        self._lease_changed()

    def _working(self) -> int:
        return sum(1 for job in self._jobs.values() if not job.lease.waiting)

    def _lease_changed(self) -> None:
        self.stats.in_flight = len(self._jobs)
        self.stats.waiting = len(self._jobs) - self._working()
        self._slot_free.set()

    # -- heartbeat --------------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        assert self._bus is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            raise_if_cancelling()
            ids = [eid for eid, job in self._jobs.items() if not job.finishing]
            if not ids:
                continue
            try:
                lost = await self._bus.scripts.touch(
                    keys=[self.keys.ctx], args=[self.keys.group, self.consumer, 0, *ids]
                )
            except TRANSIENT_ERRORS:
                continue  # the fetch loop and the tasks report the outage
            except ResponseError as exc:
                log.warning("agent worker %s: heartbeat failed: %s", self.consumer, exc)
                continue
            for raw in lost or ():
                job = self._jobs.get(_s(raw))
                if job is not None and not job.finishing:
                    self.stats.lost += 1
                    log.warning(
                        "call %s: entry %s was taken over by another worker; stopping it here",
                        job.call_id,
                        job.entry_id,
                    )
                    _cancel(job)
            await self._drop_ended_calls()

    async def _drop_ended_calls(self) -> None:
        """Stop the running packages of calls that have ended, and acknowledge them."""
        assert self._redis is not None
        running = {job.call_id for job in self._jobs.values() if not job.finishing}
        running.discard("?")
        try:
            ended = await ended_calls(self._redis, self.keys, sorted(running))
        except _RELEASE_ERRORS:
            return
        for job in list(self._jobs.values()):
            if job.call_id in ended and not job.finishing:
                job.finishing = True
                self.stats.call_ended += 1
                log.info("call %s: ended; stopping its package %s", job.call_id, job.entry_id)
                _cancel(job)
                assert self._bus is not None
                ack = asyncio.create_task(self._bus.ack(job.entry_id))
                self._ending.add(ack)
                ack.add_done_callback(self._ending.discard)


def _cancel(job: Job) -> None:
    if job.task is not None:
        job.task.cancel()


def default_consumer_name() -> str:
    """host-pid-random: unique per worker, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
