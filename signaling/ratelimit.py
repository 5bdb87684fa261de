"""Per-client rate limits on the endpoints that cost something: starting calls and minting tokens.

A token bucket per (client address, route), kept in a bounded LRU so a flood of addresses cannot
grow memory. Over the limit: 429 with Retry-After and the usual JSON error body.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from aiohttp import web
from aiohttp.typedefs import Middleware

from signaling.errors import ApiError, Handler

LIMITED = {("POST", "/v1/calls"), ("POST", "/v1/tokens")}
MAX_CLIENTS = 10_000


class RateLimiter:
    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(3, int(per_minute // 3)))
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def check(self, key: tuple[str, str], now: float | None = None) -> float:
        """0.0 if allowed (and counted); otherwise seconds until the next request is allowed."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


def rate_limit_middleware(limiter: RateLimiter) -> Middleware:
    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = (request.method, request.path)
        if route in LIMITED:
            wait = limiter.check((request.remote or "?", request.path))
            if wait > 0:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests to {request.path} from this client; retry shortly",
                    {"Retry-After": str(math.ceil(wait))},
                )
        return await handler(request)

    return rate_limit
