"""Cross-origin rules: who may call the API from a browser, and who may load the widget.

- The API (`/v1/...`): a browser request whose Origin is neither this server nor in
  `allowed_origins` is refused with `403 origin_not_allowed` by the routes themselves, before any
  work; that server-side check is the enforcement (CORS alone would only hide the answer). Allowed
  origins get CORS headers on every answer. Other origins get them on error answers only, and their
  preflights are answered, so a widget on a refused page can read *why* and tell the user instead of
  failing with an opaque network error. No cookies are used, so nothing is exposed by that.
- Public assets (`/widget.js`, `/static/...`): readable from any origin (`Access-Control-Allow-Origin:
  *`), since the widget imports its modules from this server into the embedding page.
"""

from __future__ import annotations

from aiohttp import web

from signaling.errors import Handler
from signaling.keys import AUTH

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "Location, Retry-After"
PREFLIGHT_MAX_AGE_S = "600"


def is_public_asset(path: str) -> bool:
    return path == "/widget.js" or path.startswith("/static/")


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        "Vary": "Origin",
    }


def _public_headers(response: web.StreamResponse) -> None:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Revalidate (cheap, ETag/Last-Modified): embedding pages pick up a new widget at once.
    response.headers["Cache-Control"] = "no-cache"


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    cross = origin is not None and origin != own
    allowed = cross and request.app[AUTH].origin_allowed(origin, own)
    if request.method == "OPTIONS" and cross and "Access-Control-Request-Method" in request.headers:
        assert origin is not None
        headers = _cors_headers(origin)
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        # A refused origin's preflight is not cached, so adding it to the allowed list takes
        # effect at the next attempt.
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S if allowed else "0"
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    if is_public_asset(request.path) and request.method in {"GET", "HEAD"}:
        _public_headers(response)
    elif cross and (allowed or response.status >= 400):
        assert origin is not None
        response.headers.update(_cors_headers(origin))
    return response
