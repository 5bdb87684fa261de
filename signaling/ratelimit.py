"""Per-client rate limits on the endpoints that cost something: starting calls and minting tokens.

A token bucket per (client address, route), kept in a bounded LRU so a flood of addresses cannot
grow memory. Over the limit: 429 with Retry-After and the usual JSON error body.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from signaling.errors import ApiError, Handler
from signaling.siblings import hop

LIMITED = {("POST", "/v1/calls"), ("POST", "/v1/tokens")}
MAX_CLIENTS = 10_000


class TokenBucket:
    """`rate` tokens a second up to `burst`; each request takes one."""

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        """0.0 if allowed (and counted); otherwise seconds until a token is there."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """A TokenBucket per key, the least recently used forgotten beyond MAX_CLIENTS."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(3, int(per_minute // 3)))
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def check(self, key: tuple[str, str], now: float | None = None) -> float:
        """0.0 if allowed (and counted); otherwise seconds until the next request is allowed."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = bucket
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return bucket.take(now)


def rate_limit_middleware(
    limiter: RateLimiter, client: Callable[[web.Request], str] | None = None
) -> Middleware:
    """429 beyond the limit, per `client(request)` (default: the peer address) and route."""

    def peer(request: web.Request) -> str:
        return request.remote or "?"

    client_of = client or peer

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = (request.method, request.path)
        if (
            route in LIMITED and hop(request) is None
        ):  # a sibling's hop was counted where it came in
            wait = limiter.check((client_of(request), request.path))
            if wait > 0:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests to {request.path} from this client; retry shortly",
                    {"Retry-After": str(math.ceil(wait))},
                )
        return await handler(request)

    return rate_limit
