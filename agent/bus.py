"""The Redis Streams bus: key names, publishing, the worker's emit/ack/dead-letter primitives.

    microturn:ctx                 XADD (interaction side)  ->  XREADGROUP group `agents` (workers)
    microturn:results:{call_id}   XADD (workers, via EMIT)  ->  XREAD from the last id (that call)
    microturn:ctx:dead            XADD (workers)            ->  operators

Delivery is at-least-once (ack after the final result is written; stale pending entries are
reclaimed). Exactly one terminal result per package comes from a small piece of state next to
the results stream, `{microturn:results:<call_id>}:seq`, a hash of package_id -> last seq written
and package_id:done. Its name carries the results key as a hash tag, so on Redis Cluster it lives
in the same slot and the EMIT script touching both stays legal. EMIT writes a result only if the
package is not done and its seq is new; a terminal result marks the package done. So:
  - a retried write (reply lost on a dropped connection) is not written twice;
  - a reclaimed package continues the seq of the attempt it replaces;
  - two workers that both run one package (reclaim after a partition, a package published twice)
    cannot both finish it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent.types import TERMINAL_KINDS as TERMINAL
from agent.types import ContextPackage, ResultKind, encode_result_parts

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "microturn"
DEFAULT_GROUP = "agents"

# Errors that mean "Redis is away for now": retry with backoff. BusyLoadingError (a restarted
# Redis replaying its AOF) is a ConnectionError subclass in redis-py.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)

EMIT_DONE = -1  # the package already has its terminal result; nothing written
EMIT_DUPLICATE = -2  # this seq was already written (a retry); nothing written
EMIT_ENDED = -3  # the package's call has ended; nothing written (the package is acked)


@dataclass(frozen=True)
class StreamKeys:
    """Key names and bounds. Defaults are the api.md contract; tests use a unique prefix."""

    ctx: str = "microturn:ctx"
    results_template: str = "microturn:results:{call_id}"
    dead: str = "microturn:ctx:dead"
    group: str = DEFAULT_GROUP
    ctx_maxlen: int = 100_000  # approximate (XADD MAXLEN ~); far above any healthy backlog
    results_maxlen: int = 500  # per call, approximate (x MAX_RESULT_BYTES: ~32 MiB worst case)
    dead_maxlen: int = 1_000
    results_ttl_s: int = 24 * 3600  # results streams of finished calls expire; refreshed per write
    ended_results_ttl_s: int = 60  # once a call has ended nobody reads its results
    ended_marker_ttl_s: int = 2 * 3600  # longer than any task may run (the worker's timeout)

    @classmethod
    def with_prefix(cls, prefix: str = DEFAULT_PREFIX, **overrides: Any) -> StreamKeys:
        keys = cls(
            ctx=f"{prefix}:ctx",
            results_template=f"{prefix}:results:{{call_id}}",
            dead=f"{prefix}:ctx:dead",
        )
        return replace(keys, **overrides)

    def results(self, call_id: str) -> str:
        return self.results_template.format(call_id=call_id)

    def results_state(self, call_id: str) -> str:
        # Hash tag = the whole results key: same Redis Cluster slot as the results stream.
        return "{" + self.results(call_id) + "}:seq"

    def ended(self, call_id: str) -> str:
        """Set when the call ends: its packages are dropped (acked) instead of run."""
        return "{" + self.results(call_id) + "}:ended"


# KEYS[1] results stream, KEYS[2] state hash, KEYS[3] the call's ended marker, KEYS[4] ctx stream
# (only to acknowledge). ARGV[1] package_id, ARGV[2] maxlen, ARGV[3] ttl seconds, ARGV[4] group,
# ARGV[5] ctx entry id to XACK and XDEL once the package is done (or ""), then per result, in order:
#   seq or "next", JSON head, JSON tail, "1" if terminal
# Returns, per result: the seq written, -1 (the package is done: not written), -2 (that seq was
# already written, a retry: not written) or -3 (the call has ended: not written, package acked).
EMIT_SCRIPT = """
local pid = ARGV[1]
local out = {}
if redis.call('EXISTS', KEYS[3]) == 1 then
  for i = 6, #ARGV, 4 do out[#out + 1] = -3 end
  if ARGV[5] ~= '' then
    redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
    redis.call('XDEL', KEYS[4], ARGV[5])
  end
  return out
end
local done = redis.call('HEXISTS', KEYS[2], pid .. ':done') == 1
local last = tonumber(redis.call('HGET', KEYS[2], pid) or '-1')
local wrote = false
for i = 6, #ARGV, 4 do
  if done then
    out[#out + 1] = -1
  else
    local seq
    if ARGV[i] == 'next' then seq = last + 1 else seq = tonumber(ARGV[i]) end
    if seq <= last then
      out[#out + 1] = -2
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'result',
                 ARGV[i + 1] .. seq .. ARGV[i + 2])
      last = seq
      wrote = true
      if ARGV[i + 3] == '1' then
        redis.call('HSET', KEYS[2], pid .. ':done', seq)
        done = true
      end
      out[#out + 1] = seq
    end
  end
end
if wrote then
  redis.call('HSET', KEYS[2], pid, last)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if done and ARGV[5] ~= '' then
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
end
return out
"""

# KEYS[1] ctx stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] idle ms to set, ARGV[4..] ids.
# For each id still pending on this consumer, reset its idle time (heartbeat, idle 0) or set it
# high so any live worker's XAUTOCLAIM takes it at once (release). Returns the ids now pending on
# another consumer; ids no longer pending at all (just acked with their final) are not reported.
TOUCH_SCRIPT = """
local lost = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    else
      table.insert(lost, ARGV[i])
    end
  end
end
return lost
"""

DEAD_PACKAGE_BYTES = 64 * 1024
RELEASE_IDLE_MS = 10**9  # "idle for 11 days": reclaimable by anyone immediately


class Scripts:
    """The bus's Lua scripts, registered on one client (EVALSHA, reloaded after a Redis restart)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.emit = redis.register_script(EMIT_SCRIPT)
        self.touch = redis.register_script(TOUCH_SCRIPT)


async def ensure_group(redis: aioredis.Redis, keys: StreamKeys) -> None:
    """Create the consumer group (and the stream) if missing; idempotent."""
    try:
        # id 0: packages published before the first worker ever started are still delivered.
        await redis.xgroup_create(keys.ctx, keys.group, id="0", mkstream=True)
        log.info("created consumer group %s on %s", keys.group, keys.ctx)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish(redis: aioredis.Redis, keys: StreamKeys, package: ContextPackage | str) -> str:
    """XADD one package to the ctx stream; returns the stream id."""
    body = package if isinstance(package, str) else package.encode()
    entry_id = await redis.xadd(
        keys.ctx, {"package": body}, maxlen=keys.ctx_maxlen, approximate=True
    )
    return _str(entry_id)


async def publish_many(redis: aioredis.Redis, keys: StreamKeys, bodies: Sequence[str]) -> None:
    """XADD several encoded packages, in order, in one round trip (a non-transactional pipeline).

    If the connection breaks midway some may be written already; publishing them again is safe
    (workers finish a package_id once).
    """
    if len(bodies) == 1:
        await redis.xadd(keys.ctx, {"package": bodies[0]}, maxlen=keys.ctx_maxlen, approximate=True)
        return
    pipe = redis.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(keys.ctx, {"package": body}, maxlen=keys.ctx_maxlen, approximate=True)
    await pipe.execute()


@dataclass(frozen=True)
class Emission:
    """One result to write; `seq=None` takes the package's next seq."""

    kind: ResultKind
    text: str = ""
    data: Mapping[str, Any] | None = None
    seq: int | None = None


def emit_arguments(
    keys: StreamKeys,
    call_id: str,
    package_id: str,
    results: Sequence[Emission],
    *,
    ack: str | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one EMIT call (see EMIT_SCRIPT)."""
    args: list[Any] = [package_id, keys.results_maxlen, keys.results_ttl_s, keys.group, ack or ""]
    for r in results:
        head, tail = encode_result_parts(package_id, r.kind, r.text, r.data)
        args += ["next" if r.seq is None else r.seq, head, tail, "1" if r.kind in TERMINAL else "0"]
    script_keys = [keys.results(call_id), keys.results_state(call_id), keys.ended(call_id)]
    if ack:
        script_keys.append(keys.ctx)
    return script_keys, args


async def emit_many(
    scripts: Scripts,
    keys: StreamKeys,
    call_id: str,
    package_id: str,
    results: Sequence[Emission],
    *,
    ack: str | None = None,
) -> list[int]:
    """Write results of one package, in order, in one round trip (one EMIT call).

    `ack`: the package's ctx entry id, acknowledged in the same script once the package is done
    (its terminal result written now or before): the final result and its XACK are atomic, and
    cost one round trip. Needs the ctx stream on the same Redis node as the results (always
    true without Cluster); leave it None to XACK separately.
    Returns per result the seq written, EMIT_DONE, EMIT_DUPLICATE or EMIT_ENDED.
    """
    script_keys, args = emit_arguments(keys, call_id, package_id, results, ack=ack)
    codes = await scripts.emit(keys=script_keys, args=args)
    return [int(c) for c in codes]


async def emit(
    scripts: Scripts,
    keys: StreamKeys,
    call_id: str,
    package_id: str,
    kind: ResultKind,
    text: str,
    data: Mapping[str, Any] | None = None,
    *,
    seq: int | None = None,
) -> int:
    """Write one result through EMIT. `seq=None` takes the next seq for the package.

    Returns the seq written, EMIT_DONE or EMIT_DUPLICATE.
    """
    codes = await emit_many(scripts, keys, call_id, package_id, [Emission(kind, text, data, seq)])
    return codes[0]


async def dead_letter(
    redis: aioredis.Redis,
    keys: StreamKeys,
    entry_id: str,
    raw_package: bytes | str,
    reason: str,
    deliveries: int,
) -> None:
    """Move one ctx entry to the dead-letter stream, then acknowledge and delete it.

    Not atomic (two keys, possibly two cluster slots): a crash in between dead-letters it twice,
    never zero times. The package is kept up to DEAD_PACKAGE_BYTES (marked when cut), so the
    dead-letter stream stays bounded (dead_maxlen entries of at most that).
    """
    if len(raw_package) > DEAD_PACKAGE_BYTES:
        raw_package = raw_package[:DEAD_PACKAGE_BYTES]
        reason = f"{reason} (package cut to its first {DEAD_PACKAGE_BYTES} bytes)"
    await redis.xadd(
        keys.dead,
        {
            "package": raw_package,
            "reason": reason[:1000],
            "deliveries": str(deliveries),
            "entry_id": entry_id,
            "dead_at": f"{time.time():.3f}",
        },
        maxlen=keys.dead_maxlen,
        approximate=True,
    )
    await ack_and_delete(redis, keys, [entry_id])


async def ack_and_delete(redis: aioredis.Redis, keys: StreamKeys, entry_ids: Sequence[str]) -> None:
    """XACK then XDEL: a finished package leaves the ctx stream, so the stream holds only work
    that is waiting or running (bounded by the calls and their per-call limit)."""
    pipe = redis.pipeline(transaction=False)
    pipe.xack(keys.ctx, keys.group, *entry_ids)
    pipe.xdel(keys.ctx, *entry_ids)
    await pipe.execute()


async def mark_call_ended(redis: aioredis.Redis, keys: StreamKeys, call_id: str) -> None:
    """The call is over: workers drop its packages (queued or running) and its results expire."""
    pipe = redis.pipeline(transaction=False)
    pipe.set(keys.ended(call_id), "1", ex=keys.ended_marker_ttl_s)
    pipe.expire(keys.results(call_id), keys.ended_results_ttl_s)
    pipe.expire(keys.results_state(call_id), keys.ended_results_ttl_s)
    await pipe.execute()


async def ended_calls(redis: aioredis.Redis, keys: StreamKeys, call_ids: Sequence[str]) -> set[str]:
    """Which of `call_ids` have ended (one round trip)."""
    if not call_ids:
        return set()
    pipe = redis.pipeline(transaction=False)
    for call_id in call_ids:
        pipe.exists(keys.ended(call_id))
    flags = await pipe.execute()
    return {call_id for call_id, flag in zip(call_ids, flags, strict=True) if flag}


def raise_if_cancelling() -> None:
    """Honour a cancellation that was requested but swallowed.

    On Python 3.11, `asyncio.wait_for` (which redis-py uses to send every command when a socket
    timeout is set, the default) returns normally if the write completes in the same loop turn as
    a cancel, losing the CancelledError. The task still counts the request (`cancelling()`), so
    every long-running loop here calls this once per iteration: a cancelled reader or worker stops
    at its next turn instead of running forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class Outage:
    """Logs a Redis outage once when it starts and once when it ends, never per attempt.

    Right after Redis comes back, each stale pooled connection fails once more; a failure within
    `settle_s` of a recovery is announced only if it lasts longer than `settle_s`.
    """

    def __init__(self, logger: logging.Logger, what: str, settle_s: float = 5.0) -> None:
        self.log = logger
        self.what = what
        self.settle_s = settle_s
        self.since: float | None = None
        self.recovered_at: float | None = None
        self.announced = False
        self.count = 0  # outages announced

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            settling = self.recovered_at is not None and now - self.recovered_at < self.settle_s
            if settling:
                self.log.debug("%s: Redis still settling (%s)", self.what, exc)
                return
        elif self.announced or now - self.since < self.settle_s:
            return
        self.announced = True
        self.count += 1
        self.log.warning(
            "%s: Redis unreachable (%s: %s); retrying in the background",
            self.what,
            type(exc).__name__,
            exc,
        )

    def ok(self) -> None:
        if self.since is None:
            return
        now = time.monotonic()
        if self.announced:
            self.log.info("%s: Redis reachable again after %.1f s", self.what, now - self.since)
        self.since = None
        self.announced = False
        self.recovered_at = now


class Backoff:
    """Exponential backoff with jitter: 50 ms, 100 ms, ... up to `cap_s`."""

    def __init__(self, base_s: float = 0.05, cap_s: float = 2.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> None:
        delay = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
