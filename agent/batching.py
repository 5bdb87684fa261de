"""A worker's writes to Redis: results through EMIT, acks and dead letters, batched and retried.

    BusWriter.emit_many(...)   -> EmitBatcher: the EMIT calls ready in one loop turn, one pipeline
    BusWriter.ack(entry_id)    -> Acker: one XACK + XDEL for every entry that finished meanwhile
    BusWriter.dead_letter(...) -> XADD microturn:ctx:dead, then XACK + XDEL
    every write goes through retry(): until Redis answers, with backoff, the outage logged once

Alone, an EMIT is a plain EVALSHA; under load the round trips (and most of redis-py's per-command
cost) are shared, so a busy worker gets cheaper per package.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from agent.bus import (
    EMIT_SCRIPT,
    TRANSIENT_ERRORS,
    Backoff,
    Emission,
    Outage,
    Scripts,
    StreamKeys,
    ack_and_delete,
    dead_letter,
    emit_arguments,
    raise_if_cancelling,
)
from agent.types import ResultKind

T = TypeVar("T")


class BusWriter:
    """The Redis side of one worker: its client, scripts, keys, and every write it makes."""

    def __init__(self, redis: aioredis.Redis, keys: StreamKeys, outage: Outage) -> None:
        self.redis = redis
        self.keys = keys
        self.outage = outage
        self.scripts = Scripts(redis)
        self._batcher = EmitBatcher(redis, self.scripts)
        self._acker = Acker(self)

    async def retry(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op()` until Redis answers; backoff in between; the outage is logged once."""
        backoff = Backoff()
        while True:
            raise_if_cancelling()
            try:
                result = await op()
            except TRANSIENT_ERRORS as exc:
                self.outage.failed(exc)
                await backoff.sleep()
                continue
            self.outage.ok()
            return result

    async def emit_many(
        self, call_id: str, package_id: str, results: list[Emission], *, ack: str | None = None
    ) -> list[int]:
        """Results of one package in one EMIT (see agent.bus); per result the seq written or an
        EMIT_* code."""
        script_keys, args = emit_arguments(self.keys, call_id, package_id, results, ack=ack)
        return await self.retry(functools.partial(self._batcher.emit, script_keys, args))

    async def emit(
        self,
        call_id: str,
        package_id: str,
        kind: ResultKind,
        text: str,
        data: Mapping[str, Any] | None,
        *,
        seq: int | None = None,
        ack: str | None = None,
    ) -> int:
        codes = await self.emit_many(
            call_id, package_id, [Emission(kind, text, data, seq)], ack=ack
        )
        return codes[0]

    async def dead_letter(self, entry_id: str, raw: bytes, reason: str, deliveries: int) -> None:
        await self.retry(
            lambda: dead_letter(self.redis, self.keys, entry_id, raw, reason, deliveries)
        )

    async def ack(self, entry_id: str) -> None:
        """Returns once the entry's XACK (and XDEL) succeeded."""
        await self._acker.ack(entry_id)

    async def close(self) -> None:
        await self._acker.close()


class EmitBatcher:
    """Sends the EMIT calls of all packages that have one ready in the same loop turn together."""

    def __init__(self, redis: aioredis.Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
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

    async def _send(self, batch: Sequence[tuple[list[str], list[Any], Any]]) -> list[Any]:
        if len(batch) == 1:
            script_keys, args, _f = batch[0]
            try:
                return [await self.scripts.emit(keys=script_keys, args=args)]
            except ResponseError as exc:
                return [exc]
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for script_keys, args, _f in batch:
                pipe.evalsha(self.scripts.emit.sha, len(script_keys), *script_keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in replies):
                await self.redis.script_load(EMIT_SCRIPT)  # a restarted Redis forgot it
                continue
            return replies
        raise AssertionError("unreachable")


class Acker:
    """Acknowledges finished entries in batches: one XACK (+ XDEL) for all that finished meanwhile.

    `ack()` returns once that entry's XACK has succeeded (retried through outages), so the
    at-least-once rule holds: an entry is never acked before its terminal result is written.
    """

    def __init__(self, writer: BusWriter) -> None:
        self.writer = writer
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def ack(self, entry_id: str) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="acker")
        future = self.waiting.get(entry_id)
        if future is None:
            future = self.waiting[entry_id] = asyncio.get_running_loop().create_future()
        self.wake.set()
        await asyncio.shield(future)

    async def _run(self) -> None:
        writer = self.writer
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.waiting = self.waiting, {}
            if not batch:
                continue
            ids = list(batch)
            try:
                await writer.retry(
                    functools.partial(ack_and_delete, writer.redis, writer.keys, ids)
                )
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
