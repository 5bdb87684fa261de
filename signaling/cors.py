"""CORS for embedding pages on other origins (only those in `allowed_origins`)."""

from __future__ import annotations

from aiohttp import web

from signaling.errors import Handler, error_response
from signaling.keys import AUTH

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "Location, Retry-After"
PREFLIGHT_MAX_AGE_S = "600"


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        "Vary": "Origin",
    }


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    cross = origin is not None and origin != own
    allowed = cross and request.app[AUTH].origin_allowed(origin, own)
    if request.method == "OPTIONS" and cross and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return error_response(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        assert origin is not None
        headers = _cors_headers(origin)
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    if allowed:
        assert origin is not None
        response.headers.update(_cors_headers(origin))
    return response
