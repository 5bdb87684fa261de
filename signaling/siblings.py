"""Several media processes behind one port (`microturn serve --processes N`, infra/supervisor.py).

    client ──TCP──► public port, SO_REUSEPORT: the kernel hands each connection to any process
                        │
      process i ────────┼── its own calls (peer connections, UDP, the event loop that runs them)
                        └── a private unix socket: siblings reach it for what only i can answer

A call lives in the process that answered its offer: its peer connection, tracks and timers are
objects of that process. Its id names that process: `owner_of(call_id)` is a hash of the id
modulo N, and each process draws ids until one hashes to itself (`new_call_id`, N tries on
average). So any process that receives `GET`, `DELETE`, `.../resume` or `.../hangup` for a call
forwards it, unchanged, to the owner's socket (`forward`) and passes the owner's answer back; an
unknown id gets the owner's 404. No shared table, no Redis lookup, nothing stale after a crash.

Admission: `--max-calls` is split between the processes. A process that cannot take an offer (its
share is full, or its event loop is behind) forwards it to each sibling in turn (`place`); only
when none can take it does the offer get 503, and only then may a call waiting for a resume give
its slot away (the existing rule, applied by the process that received the offer).

A forwarded request is a hop: on the private socket only, `X-Microturn-Hop` headers carry the
client's address and scheme (`hop_middleware` restores them, so origin checks, per-client limits
and logs see the real client) and rate limits are not counted twice. The same headers arriving on
the public port are ignored: only a process of this server can write to the socket (mode 0700).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from signaling.errors import Handler

log = logging.getLogger(__name__)

INDEX_ENV = "MICROTURN_SIBLING_INDEX"
SOCKETS_ENV = "MICROTURN_SIBLING_SOCKETS"
HOP = "X-Microturn-Hop"  # what the receiving process asks: "owner" (a call's) or "place" (an offer)
HOP_REMOTE = "X-Microturn-Remote"
HOP_SCHEME = "X-Microturn-Scheme"
VIA = "X-Microturn-Via"  # on a forwarded answer: the process that received the request
HOP_KEY = web.RequestKey("microturn_hop", str)
FORWARD_TIMEOUT_S = 30.0  # an offer's answer included (ICE gathering on the sibling)
PROBE_TIMEOUT_S = 2.0
# What a hop carries of the client's request, and what comes back of the sibling's answer (CORS
# headers are the receiving process's own middleware's: both run the same configuration).
REQUEST_HEADERS = ("Authorization", "Origin", "Content-Type", "Host", "X-Forwarded-For")
ANSWER_HEADERS = ("Location", "Retry-After", "Content-Type")


def owner_of(call_id: str, processes: int) -> int:
    """The process a call id belongs to (stable across processes: not Python's salted hash)."""
    digest = hashlib.blake2b(call_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % processes


def random_call_id() -> str:
    return secrets.token_urlsafe(9)


class Unreachable(Exception):
    """A sibling's socket did not answer (it is starting, restarting or gone)."""


@dataclass
class Siblings:
    """This process's place among the media processes of one server."""

    index: int
    sockets: tuple[str, ...]  # every process's private socket, by index (this one's included)
    _sessions: dict[int, aiohttp.ClientSession] = field(default_factory=dict)
    _all_up: bool = False

    def __post_init__(self) -> None:
        assert 0 <= self.index < len(self.sockets), "index must name one of the sockets"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Siblings | None:
        """The layout the supervisor hands each child; None for a process on its own."""
        env = os.environ if environ is None else environ
        raw_index, raw_sockets = env.get(INDEX_ENV), env.get(SOCKETS_ENV)
        if not raw_index or not raw_sockets:
            return None
        return cls(int(raw_index), tuple(raw_sockets.split(",")))

    def env(self) -> dict[str, str]:
        return {INDEX_ENV: str(self.index), SOCKETS_ENV: ",".join(self.sockets)}

    @property
    def count(self) -> int:
        return len(self.sockets)

    @property
    def socket(self) -> str:
        return self.sockets[self.index]

    @property
    def others(self) -> list[int]:
        """The siblings, starting after this one (so offers spread instead of piling on 0)."""
        return [(self.index + k) % self.count for k in range(1, self.count)]

    def owner_of(self, call_id: str) -> int:
        return owner_of(call_id, self.count)

    def new_call_id(self) -> str:
        while True:
            call_id = random_call_id()
            if self.owner_of(call_id) == self.index:
                return call_id

    # -- talking to siblings ------------------------------------------------------------------
    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.sockets[index]),
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
                auto_decompress=False,
            )
            self._sessions[index] = session
        return session

    async def forward(
        self, request: web.Request, index: int, hop: str, body: bytes | None = None
    ) -> web.Response:
        """`request` as the sibling `index` answers it (raises Unreachable when it cannot)."""
        headers = {k: v for k in REQUEST_HEADERS if (v := request.headers.get(k)) is not None}
        headers[HOP] = hop
        headers[HOP_REMOTE] = request.remote or "?"
        headers[HOP_SCHEME] = request.scheme
        if body is None and request.can_read_body:
            body = await request.read()
        try:
            async with self._session(index).request(
                request.method, f"http://localhost{request.rel_url}", headers=headers, data=body
            ) as answer:
                payload = await answer.read()
                kept = {k: v for k in ANSWER_HEADERS if (v := answer.headers.get(k)) is not None}
                kept[VIA] = str(self.index)
                return web.Response(status=answer.status, body=payload, headers=kept)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"media process {index}: {type(exc).__name__}") from None

    async def get_json(self, index: int, path: str) -> dict[str, Any]:
        """A sibling's answer to one of the internal routes (raises Unreachable)."""
        try:
            async with self._session(index).get(
                f"http://localhost{path}",
                headers={HOP: "probe"},
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
            ) as answer:
                if answer.status != 200:
                    raise Unreachable(f"media process {index}: {answer.status}")
                doc = await answer.json()
                return doc if isinstance(doc, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"media process {index}: {type(exc).__name__}") from None

    async def all_up(self) -> bool:
        """Every sibling answers on its socket (once seen, kept: a sibling that dies later is
        restarted by the supervisor, and meanwhile offers skip it)."""
        if not self._all_up:
            results = await asyncio.gather(
                *(self.get_json(i, "/internal/room") for i in self.others), return_exceptions=True
            )
            self._all_up = not any(isinstance(r, BaseException) for r in results)
        return self._all_up

    async def rooms(self) -> dict[int, dict[str, Any]]:
        """What each reachable sibling could take now."""
        results = await asyncio.gather(
            *(self.get_json(i, "/internal/room") for i in self.others), return_exceptions=True
        )
        return {i: r for i, r in zip(self.others, results, strict=True) if isinstance(r, dict)}

    async def metrics(self) -> dict[int, bytes]:
        """Each reachable sibling's own /metrics text."""

        async def one(index: int) -> bytes:
            try:
                async with self._session(index).get(
                    "http://localhost/internal/metrics",
                    headers={HOP: "probe"},
                    timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
                ) as answer:
                    return await answer.read() if answer.status == 200 else b""
            except (aiohttp.ClientError, TimeoutError):
                return b""

        texts = await asyncio.gather(*(one(i) for i in self.others))
        return {i: t for i, t in zip(self.others, texts, strict=True) if t}

    async def aclose(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sessions.values()))
        self._sessions.clear()


def arrived_on_socket(request: web.Request) -> bool:
    """The request came through a private unix socket (a sibling), not the public port."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


def hop(request: web.Request) -> str | None:
    """What a sibling asks of this process with `request` ("owner", "place", "probe"), or None
    for a client's own request."""
    return request.get(HOP_KEY)


def hop_middleware() -> Middleware:
    """Requests from a sibling: restore the client's address and scheme, mark them as hops."""

    @web.middleware
    async def restore(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = request.headers.get(HOP)
        if kind is None or not arrived_on_socket(request):
            if request.path.startswith("/internal/"):
                raise web.HTTPNotFound()
            return await handler(request)
        remote = request.headers.get(HOP_REMOTE, "?")
        scheme = request.headers.get(HOP_SCHEME, "http")
        cloned = request.clone(
            remote=remote, scheme=scheme if scheme in {"http", "https"} else "http"
        )
        cloned[HOP_KEY] = kind
        return await handler(cloned)

    return restore


def layout(directory: str, processes: int) -> list[Siblings]:
    """Every process's view, for a supervisor that keeps the sockets in `directory`."""
    sockets = tuple(os.path.join(directory, f"media-{i}.sock") for i in range(processes))
    return [Siblings(i, sockets) for i in range(processes)]


def shares(total: int, processes: int) -> list[int]:
    """`total` calls split as evenly as possible: [3, 3, 2] for 8 over 3."""
    return [total // processes + (i < total % processes) for i in range(processes)]


def merge_metrics(texts: Iterable[tuple[int, bytes]]) -> bytes:
    """Several processes' Prometheus texts as one, each sample labelled with its `process`."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Metric] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for s in family.samples:
                labels = {**s.labels, "process": str(index)}
                merged.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))

    class Merged:
        def collect(self) -> Iterable[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry)
