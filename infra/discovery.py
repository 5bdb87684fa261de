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
import time
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


REFRESH_S = 0.5  # the cached list (stats, readiness) is read this often
FRESH_S = 0.05  # reads this close together share one answer
AVOID_S = 30.0  # a lost worker is not tried again for this long (a restart has a new id)


class Directory:
    """A media process's view of one pool: which workers may take a session now.

    The pool's model is the first worker's (its name and frame size): workers serving another are
    skipped, with one warning each. `candidates()` reads Redis (one read shared by every caller
    within FRESH_S: the sessions of a lost worker all ask at once) and lists the workers with a
    free session, most free first, less the ones `avoid()`ed. When Redis does not answer, the last
    list stands.
    """

    def __init__(self, redis: aioredis.Redis, keys: WorkerKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.model = ""
        self.frame_size = 0
        self.workers: list[WorkerInfo] = []
        self._reading: asyncio.Task[list[WorkerInfo]] | None = None
        self._read_at = -1.0
        self._avoid: dict[str, float] = {}  # worker id -> monotonic time it may be tried again
        self._skipped: set[str] = set()

    async def refresh(self) -> list[WorkerInfo]:
        if self._reading is None or self._reading.done():
            if time.monotonic() - self._read_at < FRESH_S:
                return self.workers
            self._reading = asyncio.get_running_loop().create_task(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> list[WorkerInfo]:
        try:
            workers = await asyncio.wait_for(list_workers(self.redis, self.keys), REDIS_TIMEOUT_S)
        except Exception as exc:
            log.debug("inference directory: Redis did not answer (%s)", exc)
            return self.workers
        if workers and not self.model:
            first = min(workers, key=lambda w: w.updated_at)
            self.model, self.frame_size = first.model, first.frame_size
            log.info("inference pool %s serves %s", self.keys.pool, self.model)
        self.workers = workers
        self._read_at = time.monotonic()
        now = time.monotonic()
        for worker_id in [w for w, until in self._avoid.items() if until < now]:
            del self._avoid[worker_id]
        return workers

    async def run(self) -> None:
        """Keep the cached list fresh (until cancelled)."""
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    def avoid(self, worker_id: str, seconds: float = AVOID_S) -> None:
        self._avoid[worker_id] = time.monotonic() + seconds

    def usable(self, worker: WorkerInfo) -> bool:
        if (worker.model, worker.frame_size) != (self.model, self.frame_size):
            if worker.worker_id not in self._skipped:
                self._skipped.add(worker.worker_id)
                log.warning(
                    "inference worker %s serves %s (frame %d), not this pool's %s: skipped",
                    worker.worker_id,
                    worker.model,
                    worker.frame_size,
                    self.model,
                )
            return False
        return self._avoid.get(worker.worker_id, 0.0) <= time.monotonic()

    async def candidates(self) -> list[WorkerInfo]:
        workers = [w for w in await self.refresh() if w.free > 0 and self.usable(w)]
        return sorted(workers, key=lambda w: -w.free)

    def free(self) -> int:
        """Free sessions on the usable workers, as last read."""
        return sum(w.free for w in self.workers if self.usable(w))
