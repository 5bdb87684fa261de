"""The interaction side of the bus, one `AgentClient` per call.

    submit() -> bounded outbox -> publisher task -> XADD microturn:ctx       (in order, retried)
    results() <- XREAD microturn:results:{call_id} from the last id seen     (resumes, dedupes)

`submit` never waits on Redis: it appends the package to a bounded local outbox and returns its id.
A publisher task drains the outbox in order, and while Redis is away it keeps the packages and
retries with backoff; nothing is ever dropped, and a full outbox refuses new work (`OutboxFull`)
rather than losing old work. `results` reads from the last stream id it saw, so a reconnect neither
loses nor repeats entries; it also drops any (package_id, seq) it has already yielded, because
workers are at-least-once.

A call has at most `max_in_flight` tasks without a final result (`TooManyTasks` beyond), and when
it closes it marks itself ended in Redis: workers then drop its queued and running packages (acked,
not retried) and its results expire.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agent.bus import (
    TRANSIENT_ERRORS,
    Backoff,
    Outage,
    StreamKeys,
    mark_call_ended,
    publish_many,
    raise_if_cancelling,
)
from agent.types import AgentResult, ContextPackage, PackageError, Turn, TurnLike

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTBOX = 256  # packages waiting for Redis; beyond this, submit refuses
DEFAULT_MAX_IN_FLIGHT = 8  # a call's tasks without a final result; beyond this, submit refuses
END_MARK_TIMEOUT_S = 1.0
_MARK_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, ResponseError, *TRANSIENT_ERRORS)
PUBLISH_BATCH = 64  # packages sent in one pipeline when several are waiting
READ_BLOCK_MS = 1000
READ_COUNT = 100
SEEN_PACKAGES = 4096  # packages whose last seq the reader remembers (oldest forgotten first)


class AgentError(Exception):
    """Base class of the errors AgentClient raises."""


class OutboxFull(AgentError):
    """Redis has been away long enough that the outbox is full; the package was not accepted."""


class ClientClosed(AgentError):
    """The client is closed."""


class TooManyTasks(AgentError):
    """The call already has `max_in_flight` background tasks without a final result."""


class InvalidPackage(PackageError, AgentError):
    """submit() was given something that is not a valid v1 package (both a PackageError and an
    AgentError, so either `except` catches it)."""


@dataclass(frozen=True)
class AgentClientStatus:
    """Counters for GET /v1/calls/{id} (`agent_tasks`)."""

    submitted: int  # packages accepted by submit()
    published: int  # packages written to the ctx stream
    pending_publish: int  # packages in the outbox (Redis away or publishing right now)
    results_received: int  # results yielded (after dedupe)
    duplicates_dropped: int
    done: int  # packages whose `final` arrived
    failed: int  # packages whose `error` arrived
    in_flight: int  # submitted, no terminal result yet
    redis_ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AgentClient:
    """Background work for one call: submit context packages, read their results in order."""

    def __init__(
        self,
        redis: aioredis.Redis,
        call_id: str,
        *,
        keys: StreamKeys | None = None,
        max_outbox: int = DEFAULT_MAX_OUTBOX,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        read_block_ms: int = READ_BLOCK_MS,
        start_id: str = "0-0",
    ) -> None:
        self.redis = redis
        self.call_id = call_id
        self.keys = keys or StreamKeys()
        self.results_key = self.keys.results(call_id)
        self.max_outbox = max_outbox
        self.max_in_flight = max_in_flight
        self.read_block_ms = read_block_ms
        self.last_id = start_id  # the last results entry read; resume point
        self._outbox: deque[tuple[str, str]] = deque()  # (package_id, encoded package)
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()  # set while the outbox is empty
        self._drained.set()
        self._publisher: asyncio.Task[None] | None = None
        self._reading = False
        self._closed = False
        self._seen: OrderedDict[str, int] = OrderedDict()  # package_id -> last seq yielded
        self._open: set[str] = set()  # package ids without a terminal result yet
        self._publish_outage = Outage(log, f"call {call_id}: publishing background work")
        self._read_outage = Outage(log, f"call {call_id}: reading background results")
        self._submitted = 0
        self._published = 0
        self._received = 0
        self._duplicates = 0
        self._done = 0
        self._failed = 0

    # -- submitting ------------------------------------------------------------------------------
    async def submit(
        self,
        request_text: str,
        conversation: Iterable[Turn | TurnLike | Mapping[str, Any]],
        microturn: int,
        frame_jpeg: bytes | None = None,
    ) -> str:
        """Queue a context package for the background model; returns its package_id at once.

        Raises OutboxFull when Redis has been away so long that `max_outbox` packages are
        waiting, TooManyTasks when `max_in_flight` tasks have no final result yet, InvalidPackage
        (a PackageError) when the input is not a valid package, ClientClosed after close(); all
        are AgentErrors.
        """
        if self._closed:
            raise ClientClosed(f"call {self.call_id}: agent client is closed")
        if len(self._open) >= self.max_in_flight:
            raise TooManyTasks(
                f"this call already has {len(self._open)} background tasks running (the limit); "
                "wait for one to finish"
            )
        if len(self._outbox) >= self.max_outbox:
            raise OutboxFull(
                f"call {self.call_id}: {len(self._outbox)} background tasks are waiting for "
                "Redis; refusing more until it is back"
            )
        try:
            package = ContextPackage.new(
                self.call_id, request_text, conversation, microturn, frame_jpeg
            )
            body = package.encode()  # fails here, to the caller, if it cannot go on the wire
        except PackageError as exc:
            raise InvalidPackage(exc.code, f"call {self.call_id}: {exc.message}") from exc
        self._outbox.append((package.package_id, body))
        self._drained.clear()
        self._submitted += 1
        self._open.add(package.package_id)
        self._outbox_ready.set()
        if self._publisher is None:
            self._publisher = asyncio.create_task(
                self._publish_loop(), name=f"agent-publish-{self.call_id}"
            )
        log.debug("call %s: queued package %s", self.call_id, package.package_id)
        return package.package_id

    async def _publish_loop(self) -> None:
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            batch = [body for _pid, body in itertools.islice(self._outbox, PUBLISH_BATCH)]
            try:
                await publish_many(self.redis, self.keys, batch)
            except TRANSIENT_ERRORS as exc:
                # It may have been written before the connection broke; publishing it again is
                # safe: workers finish a package_id once.
                self._publish_outage.failed(exc)
                await backoff.sleep()
                continue
            except ResponseError as exc:
                # e.g. OOM: Redis at its maxmemory refuses writes; keep the work and retry.
                self._publish_outage.failed(exc)
                await backoff.sleep()
                continue
            except Exception:
                # Not Redis' fault (the batch cannot be sent at all): retrying would loop forever.
                package_id, _ = self._outbox.popleft()
                self._open.discard(package_id)
                self._failed += 1
                log.exception(
                    "call %s: package %s cannot be published; dropped", self.call_id, package_id
                )
                if not self._outbox:
                    self._drained.set()
                continue
            self._publish_outage.ok()
            backoff.reset()
            for _ in batch:
                self._outbox.popleft()
            self._published += len(batch)
            if not self._outbox:
                self._drained.set()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until the outbox is empty (everything published); False on timeout."""

        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # -- results ---------------------------------------------------------------------------------
    async def results(self) -> AsyncIterator[AgentResult]:
        """Results for this call, in stream order, each (package_id, seq) once.

        Runs until cancelled or the client is closed. While Redis is away it retries with backoff
        and picks up where it left off.
        """
        if self._reading:
            raise RuntimeError(f"call {self.call_id}: results() is already being iterated")
        self._reading = True
        backoff = Backoff()
        try:
            while not self._closed:
                raise_if_cancelling()
                try:
                    reply: Any = await self.redis.xread(
                        {self.results_key: self.last_id},
                        count=READ_COUNT,
                        block=self.read_block_ms,
                    )
                except TRANSIENT_ERRORS as exc:
                    self._read_outage.failed(exc)
                    await backoff.sleep()
                    continue
                except ResponseError as exc:
                    # e.g. the key was replaced by something that is not a stream: not transient
                    # in principle, but a call must not die of it; say so and keep trying slowly.
                    log.error("call %s: reading results failed: %s", self.call_id, exc)
                    await asyncio.sleep(1.0)
                    continue
                self._read_outage.ok()
                backoff.reset()
                for _key, entries in reply or ():
                    for entry_id, fields in entries:
                        self.last_id = (
                            entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                        )
                        result = self._accept(fields)
                        if result is not None:
                            yield result
        finally:
            self._reading = False

    def _accept(self, fields: Mapping[bytes, bytes]) -> AgentResult | None:
        raw = fields.get(b"result")
        if raw is None:
            log.warning("call %s: results entry without a 'result' field; skipped", self.call_id)
            return None
        try:
            result = AgentResult.decode(raw)
        except PackageError as exc:
            log.warning("call %s: unreadable result skipped: %s", self.call_id, exc)
            return None
        last = self._seen.get(result.package_id, -1)
        if result.seq <= last:
            self._duplicates += 1
            return None
        self._seen[result.package_id] = result.seq
        self._seen.move_to_end(result.package_id)
        while len(self._seen) > SEEN_PACKAGES:
            self._seen.popitem(last=False)
        self._received += 1
        if result.terminal and result.package_id in self._open:
            self._open.discard(result.package_id)
            if result.kind == "final":
                self._done += 1
            else:
                self._failed += 1
        return result

    # -- status and lifetime ---------------------------------------------------------------------
    @property
    def status(self) -> AgentClientStatus:
        return AgentClientStatus(
            submitted=self._submitted,
            published=self._published,
            pending_publish=len(self._outbox),
            results_received=self._received,
            duplicates_dropped=self._duplicates,
            done=self._done,
            failed=self._failed,
            in_flight=len(self._open),
            redis_ok=not (self._publish_outage.down or self._read_outage.down),
        )

    async def close(self, flush_timeout_s: float = 2.0) -> None:
        """Stop publishing and reading. Packages still in the outbox get `flush_timeout_s` to go
        out; any left after that are logged (they die with the call)."""
        if self._closed:
            return
        if self._outbox and flush_timeout_s > 0:
            await self.flush(flush_timeout_s)
        self._closed = True
        if self._outbox:
            log.warning(
                "call %s: closing with %d background task(s) never published (Redis away)",
                self.call_id,
                len(self._outbox),
            )
        if self._publisher is not None:
            self._publisher.cancel()
            # asyncio.wait does not re-raise the task's CancelledError, only our own.
            await asyncio.wait([self._publisher])
            self._publisher = None
        await self._mark_ended()

    async def _mark_ended(self) -> None:
        """Tell the workers this call is over (best effort: without Redis, its tasks finish and
        their results expire with the stream's TTL)."""
        if self._submitted == 0:
            return
        try:
            await asyncio.wait_for(
                mark_call_ended(self.redis, self.keys, self.call_id), END_MARK_TIMEOUT_S
            )
        except _MARK_ERRORS as exc:
            log.info("call %s: could not mark the call ended in Redis (%s)", self.call_id, exc)
