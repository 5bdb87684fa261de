"""Running one context package: decode, dead-letter, run the backend, stream its results.

    entry ─ decode ─ bad ─────────────────────────► dead letter (+ error result when the call
      │                                               can be named)
      ├─ delivered more than max_deliveries times ─► error result + dead letter
      └─ backend.run(package) ─► started, partial..., final | error (EMIT) ─► XACK + XDEL
                                 the call has ended ─► nothing written, acked

The runner never raises for a package (a backend exception becomes an `error` result; a bug here
is logged and the entry stays pending, to be retried and then dead-lettered); only cancellation
propagates. The consumer (agent.consumer) decides what runs when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from agent import slots
from agent.backends import Backend, BackendEvent
from agent.batching import BusWriter
from agent.bus import EMIT_DONE, EMIT_ENDED, Emission
from agent.types import TERMINAL_KINDS, ContextPackage, PackageError

log = logging.getLogger(__name__)


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
class Entry:
    entry_id: str
    fields: Mapping[bytes, bytes]
    deliveries: int = 1
    reclaimed: bool = False


@dataclass
class Job:
    entry_id: str
    lease: slots.Lease
    task: asyncio.Task[None] | None = None
    call_id: str = "?"
    finishing: bool = False  # terminal result written; only the ack is left


class PackageRunner:
    def __init__(
        self,
        backend: Backend,
        bus: BusWriter,
        stats: WorkerStats,
        *,
        consumer: str,
        max_deliveries: int,
        task_timeout_s: float,
        ack_with_result: bool,
    ) -> None:
        self.backend = backend
        self.bus = bus
        self.stats = stats
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self.task_timeout_s = task_timeout_s
        # XACK inside the script that writes the final result (atomic, one round trip). Off only
        # for a Redis Cluster where the ctx stream and results live on different nodes.
        self.ack_with_result = ack_with_result

    async def handle(self, entry: Entry, job: Job) -> None:
        slots.bind(job.lease)  # this task's context: the backend's `slots.waiting()` finds it
        try:
            await self._handle(entry, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Only a bug gets here; the entry stays pending and is retried (then dead-lettered).
            log.exception("agent worker %s: handling %s failed", self.consumer, entry.entry_id)

    async def _handle(self, entry: Entry, job: Job) -> None:
        raw = entry.fields.get(b"package")
        if raw is None:
            await self._dead(entry, job, b"", "missing_field: entry has no 'package' field")
            return
        try:
            package = ContextPackage.decode(raw)
        except PackageError as exc:
            await self._reject_unparseable(entry, job, raw, exc)
            return
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
                job,
                raw,
                f"max_deliveries: delivered {entry.deliveries} times (limit "
                f"{self.max_deliveries}) without a final result",
            )
            return
        await self._run_package(entry, package, job)

    async def _run_package(self, entry: Entry, package: ContextPackage, job: Job) -> None:
        call = package.call_id
        ack = entry.entry_id if self.ack_with_result else None
        started = Emission("started", "", {"attempt": entry.deliveries, "worker": self.consumer})
        # final / error: written by this attempt; done: another attempt finished it first;
        # ended: the call is over.
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
                    if written in (EMIT_DONE, EMIT_ENDED):
                        # done: finished before (died before its ack, or published twice)
                        outcome = _outcome(written, "")
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
            await self.bus.ack(entry.entry_id)
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
                return _outcome(written, "")
            if is_terminal:
                return event.kind
            event = await _next_event(events)
        return None

    async def _finish_with_error(
        self, package: ContextPackage, text: str, reason: str, ack: str | None
    ) -> str:
        written = await self._emit(package, "error", text, {"reason": reason}, ack=ack)
        return _outcome(written, "error")

    async def _reject_unparseable(
        self, entry: Entry, job: Job, raw: bytes, exc: PackageError
    ) -> None:
        """Dead-letter a package that is not v1; tell its call when its ids can be read."""
        ids = _ids_from_raw(raw)
        if ids is not None:
            call_id, package_id = ids
            log.error("call %s: package %s rejected: %s", call_id, package_id, exc)
            await self.bus.emit(
                call_id,
                package_id,
                "error",
                f"background task rejected: {exc}",
                {"reason": exc.code},
            )
        else:
            log.error("agent worker %s: entry %s rejected: %s", self.consumer, entry.entry_id, exc)
        await self._dead(entry, job, raw, str(exc))

    async def _emit(
        self,
        package: ContextPackage,
        kind: Any,
        text: str,
        data: Mapping[str, Any] | None,
        *,
        seq: int | None = None,
        ack: str | None = None,
    ) -> int:
        return await self.bus.emit(
            package.call_id, package.package_id, kind, text, data, seq=seq, ack=ack
        )

    async def _emit_many(
        self, package: ContextPackage, results: list[Emission], *, ack: str | None = None
    ) -> list[int]:
        return await self.bus.emit_many(package.call_id, package.package_id, results, ack=ack)

    async def _dead(self, entry: Entry, job: Job, raw: bytes, reason: str) -> None:
        await self.bus.dead_letter(entry.entry_id, raw, reason, entry.deliveries)
        self.stats.dead_lettered += 1
        job.finishing = True


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
