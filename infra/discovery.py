"""How media processes find inference workers: each worker's registration in Redis, with a TTL.

    microturn:infer:{pool}:worker:{id}   JSON {worker_id, url, model, frame_size, capacity, free,
                                         pid, host, updated_at}; SET with EX ttl_s, rewritten
                                         every heartbeat_s and at once when `free` changes
    microturn:infer:{pool}:workers       SET of worker ids (an index, so nobody SCANs the keyspace;
                                         readers drop the ids whose key has expired)

A worker that dies stops heartbeating and its key expires within `ttl_s`; one that stops cleanly
deletes it first. `free` is advisory (a media process picks the worker with the most room, the
worker itself refuses when full). The pattern is agent/consumer.py's heartbeat: liveness is a key
that has to be kept alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

DEFAULT_POOL = "default"
HEARTBEAT_S = 1.0
TTL_S = 3.0
REDIS_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class WorkerKeys:
    pool: str = DEFAULT_POOL
    prefix: str = "microturn:infer"

    @property
    def index(self) -> str:
        return f"{self.prefix}:{self.pool}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:{self.pool}:worker:{worker_id}"


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    url: str  # ws://host:port/v1/sessions
    model: str
    frame_size: int
    capacity: int
    free: int
    pid: int = 0
    host: str = ""
    updated_at: float = 0.0

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes | str) -> WorkerInfo | None:
        try:
            doc = json.loads(raw)
            return cls(
                worker_id=str(doc["worker_id"]),
                url=str(doc["url"]),
                model=str(doc["model"]),
                frame_size=int(doc["frame_size"]),
                capacity=int(doc["capacity"]),
                free=int(doc["free"]),
                pid=int(doc.get("pid", 0)),
                host=str(doc.get("host", "")),
                updated_at=float(doc.get("updated_at", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


async def list_workers(redis: aioredis.Redis, keys: WorkerKeys) -> list[WorkerInfo]:
    """The live workers of a pool (registrations that have not expired). Raises on Redis errors."""
    ids = sorted(
        m.decode() if isinstance(m, bytes) else str(m) for m in await redis.smembers(keys.index)
    )
    if not ids:
        return []
    values = await redis.mget([keys.worker(i) for i in ids])
    workers, gone = [], []
    for worker_id, raw in zip(ids, values, strict=True):
        info = WorkerInfo.decode(raw) if raw is not None else None
        if info is None:
            gone.append(worker_id)
        else:
            workers.append(info)
    if gone:
        await redis.srem(keys.index, *gone)
    return workers


class Registration:
    """A worker's side: keeps its registration alive until `withdraw()`.

    `describe()` is called at each write, so `free` is current; `nudge()` writes now (a session
    opened or closed). Redis errors are logged (once per outage) and retried at the next beat:
    a worker keeps serving its sessions while Redis is away, it just is not found by new ones.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: WorkerKeys,
        describe: Callable[[], WorkerInfo],
        *,
        heartbeat_s: float = HEARTBEAT_S,
        ttl_s: float = TTL_S,
    ) -> None:
        assert ttl_s > heartbeat_s > 0, "the TTL must outlast a heartbeat"
        self.redis = redis
        self.keys = keys
        self.describe = describe
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.writes = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="inference-registration")

    def nudge(self) -> None:
        self._nudged.set()

    async def publish(self) -> None:
        info = self.describe()
        key = self.keys.worker(info.worker_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, info.encode(), px=int(self.ttl_s * 1000))
            pipe.sadd(self.keys.index, info.worker_id)
            await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
        self.writes += 1

    async def _run(self) -> None:
        while True:
            self._nudged.clear()
            try:
                await self.publish()
                if self._failing:
                    log.info("inference registration: Redis is back")
                self._failing = False
            except Exception as exc:  # Redis away: serve on, register again at the next beat
                if not self._failing:
                    log.warning("inference registration: cannot write to Redis (%s)", exc)
                self._failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self.heartbeat_s)

    async def withdraw(self) -> None:
        """Stop heartbeating and delete the registration: no new session comes here."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        info = self.describe()
        with contextlib.suppress(Exception):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.keys.worker(info.worker_id))
                pipe.srem(self.keys.index, info.worker_id)
                await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_S)
