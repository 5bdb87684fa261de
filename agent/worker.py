"""A background worker: consumes context packages from `microturn:ctx`, streams results back.

    fetch loop:  XAUTOCLAIM stale entries (idle > claim_idle_ms), then XREADGROUP `>`,
                 never more than the free slots (`concurrency`)
    each entry:  decode -> bad: dead-letter (+ error result to the call when it can be named)
                        -> delivered more than max_deliveries times: error result + dead-letter
                        -> started, partial..., final|error (EMIT script) -> XACK
    heartbeat:   resets the idle time of the entries this worker is running, so a long task
                 (a timer, a slow model) is not reclaimed from a live worker; an entry that is no
                 longer ours (reclaimed after we stalled) is cancelled here, and so is one whose
                 call has ended (then acked: nobody is listening)
    slots:       `concurrency` packages *working* at once; a package that only waits (a timer,
                 inside `slots.waiting()`) gives its slot back meanwhile, up to `max_waiting`
                 more packages held in all
    stop():      stop fetching, let running tasks finish for `grace_s`, cancel the rest and
                 release them (idle set high) so a live worker takes them over at once

Any number of workers, in any number of processes and machines, share the `agents` group.
`main()` is `microturn agent`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from agent import slots
from agent.backends import BACKEND_NAMES, Backend, BackendEvent, make_backend
from agent.bus import (
    EMIT_DONE,
    EMIT_ENDED,
    EMIT_SCRIPT,
    RELEASE_IDLE_MS,
    TRANSIENT_ERRORS,
    Backoff,
    Emission,
    Outage,
    Scripts,
    StreamKeys,
    ack_and_delete,
    dead_letter,
    emit,
    emit_arguments,
    ended_calls,
    ensure_group,
    raise_if_cancelling,
)
from agent.types import TERMINAL_KINDS, ContextPackage, PackageError, ResultKind

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
class WorkerStats:
    received: int = 0  # entries taken with XREADGROUP
    reclaimed: int = 0  # entries taken over with XAUTOCLAIM
    finished: int = 0  # final results written
    failed: int = 0  # error results written
    dead_lettered: int = 0
    already_done: int = 0  # delivered again after another attempt finished it: acked, skipped
    lost: int = 0  # running entries reclaimed by another worker (this one had stalled)
    released: int = 0  # entries handed back at stop
    trimmed: int = 0  # pending entries the stream had trimmed away before they ran
    call_ended: int = 0  # packages dropped (acked, not run on) because their call had ended
    in_flight: int = 0
    waiting: int = 0  # of in_flight, packages only waiting (their slot is free for others)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Job:
    entry_id: str
    task: asyncio.Task[None]
    lease: slots.Lease
    call_id: str = "?"
    finishing: bool = False  # terminal result written; only the ack is left


@dataclass
class _Entry:
    entry_id: str
    fields: Mapping[bytes, bytes]
    deliveries: int = 1
    reclaimed: bool = False


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
        # XACK inside the script that writes the final result (atomic, one round trip). Off only
        # for a Redis Cluster where the ctx stream and results live on different nodes.
        self.ack_with_result = ack_with_result
        self.stats = WorkerStats()
        self.ready = asyncio.Event()  # set once the group exists and the worker is fetching
        self._jobs: dict[str, _Job] = {}
        self._slot_free = asyncio.Event()
        self._shutdown = _Shutdown()
        self._finished = asyncio.Event()
        self._running = False
        self._claim_cursor = "0-0"
        self._next_claim_at = 0.0
        self._outage = Outage(log, f"agent worker {self.consumer}")
        self._redis: aioredis.Redis | None = None
        self._scripts: Scripts | None = None
        self._acker = _Acker(self)
        self._batcher = _EmitBatcher(self)
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
        self._scripts = Scripts(self._redis)
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
            await self._acker.close()
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
        tasks = [job.task for job in self._jobs.values()]
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
            left = [job.task for job in self._jobs.values() if not job.task.done()]
            if not left:
                break
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)

    async def _release_all(self) -> None:
        """Hand back every entry still pending on this consumer (best effort, bounded in time)."""
        assert self._redis is not None and self._scripts is not None
        try:
            async with asyncio.timeout(3.0):
                pending: Any = await self._redis.xpending_range(
                    self.keys.ctx, self.keys.group, "-", "+", 10_000, consumername=self.consumer
                )
                ids = [_s(p["message_id"]) for p in pending]
                if ids:
                    await self._scripts.touch(
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
                entries: list[_Entry] = []
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
                            self._start(_Entry(_s(entry_id), fields or {}))
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

    async def _reclaim(self, count: int) -> list[_Entry]:
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
            out.append(_Entry(entry_id, fields or {}, count_, reclaimed=True))
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

    def _start(self, entry: _Entry) -> None:
        lease = slots.Lease(self._lease_changed)
        task = asyncio.create_task(self._handle(entry, lease), name=f"agent-{entry.entry_id}")
        self._jobs[entry.entry_id] = _Job(entry.entry_id, task, lease)
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
        assert self._scripts is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            raise_if_cancelling()
            ids = [eid for eid, job in self._jobs.items() if not job.finishing]
            if not ids:
                continue
            try:
                lost = await self._scripts.touch(
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
                    job.task.cancel()
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
                job.task.cancel()
                ack = asyncio.create_task(self._acker.ack(job.entry_id))
                self._ending.add(ack)
                ack.add_done_callback(self._ending.discard)

    # -- one package ------------------------------------------------------------------------------
    async def _handle(self, entry: _Entry, lease: slots.Lease) -> None:
        slots.bind(lease)  # this task's context: the backend's `slots.waiting()` finds it
        try:
            await self._handle_inner(entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Only a bug gets here; the entry stays pending and is retried (then dead-lettered).
            log.exception("agent worker %s: handling %s failed", self.consumer, entry.entry_id)

    async def _handle_inner(self, entry: _Entry) -> None:
        raw = entry.fields.get(b"package")
        if raw is None:
            await self._dead(entry, b"", "missing_field: entry has no 'package' field")
            return
        try:
            package = ContextPackage.decode(raw)
        except PackageError as exc:
            await self._reject_unparseable(entry, raw, exc)
            return
        job = self._jobs.get(entry.entry_id)
        if job is not None:
            job.call_id = package.call_id
        if entry.deliveries > self.max_deliveries:
            log.error(
                "call %s: package %s delivered %d times without finishing; dead-lettering it",
                package.call_id,
                package.package_id,
                entry.deliveries,
            )
            await self._emit(
                package,
                "error",
                f"background task failed after {entry.deliveries - 1} attempts",
                {"reason": "max_deliveries", "deliveries": entry.deliveries},
            )
            await self._dead(
                entry,
                raw,
                f"max_deliveries: delivered {entry.deliveries} times (limit "
                f"{self.max_deliveries}) without a final result",
            )
            return
        await self._run_package(entry, package, job)

    async def _run_package(self, entry: _Entry, package: ContextPackage, job: _Job | None) -> None:
        call = package.call_id
        ack = entry.entry_id if self.ack_with_result else None
        started = Emission("started", "", {"attempt": entry.deliveries, "worker": self.consumer})
        # "final" / "error": written by this attempt; "done": another attempt finished it first.
        outcome: str | None = None
        events = self.backend.run(package)
        # Give the backend one loop turn: an answer that needs no waiting (the calculator, the
        # clock) then goes out together with `started` in one round trip.
        first = asyncio.ensure_future(_next_event(events))
        deadline = asyncio.timeout(self.task_timeout_s)
        try:
            async with deadline:
                await asyncio.sleep(0)
                quick = _quick_terminal(first)
                if quick is not None:
                    codes = await self._emit_many(
                        package, [started, Emission(quick.kind, quick.text, quick.data)], ack=ack
                    )
                    outcome = _outcome(codes[0], quick.kind)
                else:
                    written = (await self._emit_many(package, [started], ack=ack))[0]
                    if written == EMIT_ENDED:
                        outcome = "ended"
                    elif written == EMIT_DONE:
                        outcome = (
                            "done"  # finished before (died before its ack, or published twice)
                        )
                    else:
                        outcome = await self._stream_events(
                            package, events, first, written + 1, ack
                        )
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                log.warning("call %s: package %s timed out", call, package.package_id)
                text, reason = f"timed out after {self.task_timeout_s:g} s", "timeout"
            else:
                log.exception("call %s: backend failed on package %s", call, package.package_id)
                text = f"background model failed: {type(exc).__name__}: {exc}"
                reason = "backend_exception"
            outcome = await self._finish_with_error(package, text, reason, ack)
        finally:
            if not first.done():
                first.cancel()
                await asyncio.wait([first])
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if outcome is None:
            outcome = await self._finish_with_error(
                package, "the background model ended without a result", "empty", ack
            )
        if job is not None:
            job.finishing = True
        if outcome == "final":
            self.stats.finished += 1
        elif outcome == "error":
            self.stats.failed += 1
        elif outcome == "ended":
            self.stats.call_ended += 1
            log.info("call %s: ended; package %s dropped", call, package.package_id)
        else:
            self.stats.already_done += 1
            log.info("call %s: package %s was already finished; acking", call, package.package_id)
        if ack is None:
            await self._acker.ack(entry.entry_id)
        # else: the script that wrote the terminal result (or found it written) acknowledged it.

    async def _stream_events(
        self,
        package: ContextPackage,
        events: AsyncIterator[BackendEvent],
        first: asyncio.Future[BackendEvent | None],
        seq: int,
        ack: str | None,
    ) -> str | None:
        """Write each event as it comes; returns the outcome, None if the backend just ended."""
        event = await first
        while event is not None:
            is_terminal = event.kind in TERMINAL_KINDS
            # Partials carry an explicit seq, so a retried write is recognised and not repeated.
            written = await self._emit(
                package,
                event.kind,
                event.text,
                event.data,
                seq=None if is_terminal else seq,
                ack=ack,
            )
            seq += 1
            if written in (EMIT_DONE, EMIT_ENDED):
                return "done" if written == EMIT_DONE else "ended"
            if is_terminal:
                return event.kind
            event = await _next_event(events)
        return None

    async def _finish_with_error(
        self, package: ContextPackage, text: str, reason: str, ack: str | None
    ) -> str:
        written = await self._emit(package, "error", text, {"reason": reason}, ack=ack)
        return _outcome(written, "error")

    async def _reject_unparseable(self, entry: _Entry, raw: bytes, exc: PackageError) -> None:
        """Dead-letter a package that is not v1; tell its call when its ids can be read."""
        ids = _ids_from_raw(raw)
        if ids is not None:
            call_id, package_id = ids
            log.error("call %s: package %s rejected: %s", call_id, package_id, exc)
            await self._retry(
                lambda: emit(
                    self._require_scripts(),
                    self.keys,
                    call_id,
                    package_id,
                    "error",
                    f"background task rejected: {exc}",
                    {"reason": exc.code},
                )
            )
        else:
            log.error("agent worker %s: entry %s rejected: %s", self.consumer, entry.entry_id, exc)
        await self._dead(entry, raw, str(exc))

    # -- Redis writes, retried through outages ----------------------------------------------------
    def _require_scripts(self) -> Scripts:
        assert self._scripts is not None
        return self._scripts

    async def _emit(
        self,
        package: ContextPackage,
        kind: ResultKind,
        text: str,
        data: Mapping[str, Any] | None,
        *,
        seq: int | None = None,
        ack: str | None = None,
    ) -> int:
        codes = await self._emit_many(package, [Emission(kind, text, data, seq)], ack=ack)
        return codes[0]

    async def _emit_many(
        self, package: ContextPackage, results: list[Emission], *, ack: str | None = None
    ) -> list[int]:
        script_keys, args = emit_arguments(
            self.keys, package.call_id, package.package_id, results, ack=ack
        )
        return await self._retry(functools.partial(self._batcher.emit, script_keys, args))

    async def _dead(self, entry: _Entry, raw: bytes, reason: str) -> None:
        assert self._redis is not None
        redis = self._redis
        await self._retry(
            lambda: dead_letter(redis, self.keys, entry.entry_id, raw, reason, entry.deliveries)
        )
        self.stats.dead_lettered += 1
        job = self._jobs.get(entry.entry_id)
        if job is not None:
            job.finishing = True

    async def _retry(self, op: Any) -> Any:
        """Run `op()` until Redis answers; backoff in between; the outage is logged once."""
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            try:
                result = await op()
            except TRANSIENT_ERRORS as exc:
                self._outage.failed(exc)
                await backoff.sleep()
                continue
            self._outage.ok()
            return result


def _outcome(code: int, kind: str) -> str:
    """What one terminal EMIT did: wrote `kind`, found the package done, or found its call ended."""
    return {EMIT_DONE: "done", EMIT_ENDED: "ended"}.get(code, kind)


async def _next_event(events: AsyncIterator[BackendEvent]) -> BackendEvent | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def _quick_terminal(first: asyncio.Future[BackendEvent | None]) -> BackendEvent | None:
    """The backend's first event if it is already there and ends the package, else None."""
    if not first.done() or first.cancelled() or first.exception() is not None:
        return None
    event = first.result()
    return event if event is not None and event.kind in TERMINAL_KINDS else None


class _EmitBatcher:
    """Sends the EMIT calls of all packages that have one ready in the same loop turn together,
    in one pipeline. Alone it is a plain EVALSHA; under load the round trips (and most of
    redis-py's per-command cost) are shared, so a busy worker gets cheaper per package."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.queue: list[tuple[list[str], list[Any], asyncio.Future[list[int]]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def emit(self, script_keys: list[str], args: list[Any]) -> list[int]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.queue.append((script_keys, args, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let every job that is ready this turn add its call
        while self.queue:
            batch, self.queue = self.queue, []
            try:
                replies = await self._send(batch)
            except BaseException as exc:
                for _k, _a, future in batch:
                    if not future.done():
                        if isinstance(exc, Exception):
                            future.set_exception(exc)
                        else:
                            future.cancel()
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_k, _a, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result([int(c) for c in reply])

    async def _send(self, batch: list[tuple[list[str], list[Any], Any]]) -> list[Any]:
        scripts = self.worker._require_scripts()
        redis = self.worker._redis
        assert redis is not None
        if len(batch) == 1:
            script_keys, args, _f = batch[0]
            try:
                return [await scripts.emit(keys=script_keys, args=args)]
            except ResponseError as exc:
                return [exc]
        for attempt in range(2):
            pipe = redis.pipeline(transaction=False)
            for script_keys, args, _f in batch:
                pipe.evalsha(scripts.emit.sha, len(script_keys), *script_keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                await redis.script_load(EMIT_SCRIPT)  # a restarted Redis forgot it
                continue
            return replies
        raise AssertionError("unreachable")


class _Acker:
    """Acknowledges finished entries in batches: one XACK for all that finished meanwhile.

    `ack()` returns once that entry's XACK has succeeded (retried through outages), so the
    at-least-once rule holds: an entry is never acked before its terminal result is written.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def ack(self, entry_id: str) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"acker-{self.worker.consumer}")
        future = self.waiting.get(entry_id)
        if future is None:
            future = self.waiting[entry_id] = asyncio.get_running_loop().create_future()
        self.wake.set()
        await asyncio.shield(future)

    async def _run(self) -> None:
        worker = self.worker
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.waiting = self.waiting, {}
            if not batch:
                continue
            redis = worker._redis
            assert redis is not None
            ids = list(batch)
            try:
                await worker._retry(functools.partial(ack_and_delete, redis, worker.keys, ids))
            except BaseException:
                for future in batch.values():
                    future.cancel()  # the worker is stopping; the entry stays pending
                raise
            for future in batch.values():
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
            self.task = None


def default_consumer_name() -> str:
    """host-pid-random: unique per worker, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ids_from_raw(raw: bytes) -> tuple[str, str] | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    call_id, package_id = obj.get("call_id"), obj.get("package_id")
    if isinstance(call_id, str) and call_id and isinstance(package_id, str) and package_id:
        if len(call_id) <= 200 and len(package_id) <= 200:
            return call_id, package_id
    return None


# -- in-process workers (`microturn serve`) -----------------------------------------------------------
def backend_from_env(name: str = "builtin", notes_dir: str | None = None) -> Backend:
    """A backend configured like `microturn agent` does: OpenAI settings from the environment
    (MICROTURN_OPENAI_BASE_URL, MICROTURN_OPENAI_MODEL, MICROTURN_OPENAI_API_KEY/OPENAI_API_KEY)."""
    env = os.environ.get
    return make_backend(
        name,
        notes_dir=notes_dir,
        openai_base_url=env("MICROTURN_OPENAI_BASE_URL") or env("OPENAI_BASE_URL"),
        openai_api_key=env("MICROTURN_OPENAI_API_KEY") or env("OPENAI_API_KEY"),
        openai_model=env("MICROTURN_OPENAI_MODEL"),
    )


@contextlib.asynccontextmanager
async def in_process_workers(
    redis_url: str,
    count: int = 1,
    *,
    backend: Backend | str = "builtin",
    notes_dir: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    keys: StreamKeys | None = None,
    grace_s: float = 5.0,
    **worker_options: Any,
) -> AsyncIterator[list[Worker]]:
    """Run `count` workers as tasks of this process (sharing one backend) for the duration:

        async with in_process_workers(redis_url, config.agent_workers,
                                      backend=config.agent_backend, notes_dir=config.notes_dir):
            yield  # the app serves

    On exit they finish or release their work (`grace_s`) and the backend is closed. `count` 0
    runs none (workers elsewhere).
    """
    made = isinstance(backend, str)
    the_backend = backend_from_env(backend, notes_dir) if isinstance(backend, str) else backend
    host = f"{socket.gethostname()}-{os.getpid()}"
    workers = [
        Worker(
            redis_url,
            the_backend,
            concurrency=concurrency,
            consumer_name=f"{host}-inproc{i}-{uuid.uuid4().hex[:4]}",
            keys=keys,
            **worker_options,
        )
        for i in range(count)
    ]
    tasks = [asyncio.create_task(w.run(), name=f"agent-worker-{w.consumer}") for w in workers]
    try:
        yield workers
    finally:
        await asyncio.gather(*(w.stop(grace_s) for w in workers), return_exceptions=True)
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if made:
            await the_backend.aclose()


# -- `microturn agent` ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="microturn agent",
        description="Run a background-model worker: consume context packages from Redis, stream "
        "results back. Any number of workers may share one Redis.",
    )
    parser.add_argument(
        "--redis",
        default=env("REDIS_URL"),
        help="Redis URL, e.g. redis://host:6379/0 [REDIS_URL]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("MICROTURN_AGENT_CONCURRENCY", DEFAULT_CONCURRENCY)),
        help=f"packages run at once [MICROTURN_AGENT_CONCURRENCY; default {DEFAULT_CONCURRENCY}]",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=env("MICROTURN_AGENT_BACKEND", "builtin"),
        help="background model [MICROTURN_AGENT_BACKEND; default builtin]",
    )
    parser.add_argument(
        "--notes",
        default=env("MICROTURN_NOTES_DIR"),
        help="folder of .md/.txt notes the tools search [MICROTURN_NOTES_DIR]",
    )
    parser.add_argument(
        "--openai-base-url",
        default=env("MICROTURN_OPENAI_BASE_URL") or env("OPENAI_BASE_URL"),
        help="OpenAI-compatible API base, e.g. http://host:8000/v1 [MICROTURN_OPENAI_BASE_URL]",
    )
    parser.add_argument(
        "--openai-model",
        default=env("MICROTURN_OPENAI_MODEL", "gpt-4o-mini"),
        help="model name [MICROTURN_OPENAI_MODEL]; the key comes from MICROTURN_OPENAI_API_KEY "
        "or OPENAI_API_KEY",
    )
    parser.add_argument("--consumer", default=None, help="consumer name (default host-pid-random)")
    parser.add_argument("--claim-idle-ms", type=int, default=DEFAULT_CLAIM_IDLE_MS)
    parser.add_argument("--max-deliveries", type=int, default=DEFAULT_MAX_DELIVERIES)
    parser.add_argument("--key-prefix", default="microturn", help="stream key prefix")
    parser.add_argument("--group", default="agents", help="consumer group")
    parser.add_argument("--grace-s", type=float, default=DEFAULT_GRACE_S)
    parser.add_argument("--log-level", default=env("MICROTURN_LOG_LEVEL", "info"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`microturn agent ...`: run one worker until Ctrl-C / SIGTERM. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.redis:
        parser.error("--redis URL (or REDIS_URL) is required")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    api_key = os.environ.get("MICROTURN_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
    try:
        backend = make_backend(
            args.backend,
            notes_dir=args.notes,
            openai_base_url=args.openai_base_url,
            openai_api_key=api_key,
            openai_model=args.openai_model,
        )
    except ValueError as exc:
        parser.error(str(exc))
    worker = Worker(
        args.redis,
        backend,
        concurrency=args.concurrency,
        consumer_name=args.consumer,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
        keys=StreamKeys.with_prefix(args.key_prefix, group=args.group),
    )
    try:
        asyncio.run(_serve_worker(worker, backend, args.grace_s))
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve_worker(worker: Worker, backend: Backend, grace_s: float) -> None:
    loop = asyncio.get_running_loop()
    run = asyncio.create_task(worker.run())
    signals = 0
    stopping: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "agent worker %s: %s received; finishing running tasks (again to force)",
                worker.consumer,
                signal.Signals(signum).name,
            )
            stopping.append(loop.create_task(worker.stop(grace_s)))
        else:
            run.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    print(
        f"microturn agent {worker.consumer}: consuming {worker.keys.ctx} "
        f"(group {worker.keys.group}, concurrency {worker.concurrency}); Ctrl-C to stop",
        flush=True,
    )
    try:
        await run
    except asyncio.CancelledError:
        if not run.cancelled():
            raise
    finally:
        await backend.aclose()


if __name__ == "__main__":
    # Run the importable module's main, so loggers are named agent.worker, not __main__.
    from agent.worker import main as _main

    sys.exit(_main())
