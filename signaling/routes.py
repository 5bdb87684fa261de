"""HTTP routes of the public contract (docs/api.md): WHIP-style call setup and the rest."""

from __future__ import annotations

import asyncio
import email.policy
import json
import logging
import re
from email.parser import BytesParser
from typing import Any

from aiohttp import web

from signaling.auth import DEFAULT_TOKEN_TTL_S
from signaling.call import Call
from signaling.errors import ApiError
from signaling.events import MAX_TEXT_CHARS, EventError, check_text
from signaling.factory import EngineBusy
from signaling.keys import (
    AUTH,
    CALLS,
    CLIENTS,
    CONFIG,
    ENGINE,
    FACTORY,
    LOAD,
    METRICS,
    READINESS,
    REDIS,
    SIBLINGS,
    TEMPLATES,
)
from signaling.siblings import Unreachable, hop, merge_metrics
from signaling.turn import ice_servers

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
MAX_M_LINES = 8
MAX_CANDIDATES = 32  # a browser offers a handful; each one costs connectivity checks
BODY_READ_TIMEOUT_S = 10.0  # an offer trickled slower than this is refused (408)

routes = web.RouteTableDef()


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not request.app[AUTH].origin_allowed(origin, own_origin(request)):
        raise ApiError(403, "origin_not_allowed", f"origin {origin!r} may not use this server")
    return origin


def validate_offer(sdp: str) -> None:
    """Cheap checks before aiortc parses it: the offer must be SDP and usable for a call."""
    if not sdp.startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "body is not an SDP offer (must start with 'v=0')")
    lines = sdp.splitlines()
    m_lines = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith("m=audio ") for line in m_lines):
        raise ApiError(400, "no_audio", "the offer has no audio m-line; a call needs a microphone")
    if len(m_lines) > MAX_M_LINES:
        raise ApiError(400, "too_many_m_lines", f"at most {MAX_M_LINES} m-lines are accepted")
    candidates = sum(line.startswith("a=candidate:") for line in lines)
    if candidates > MAX_CANDIDATES:
        raise ApiError(
            400, "too_many_candidates", f"at most {MAX_CANDIDATES} ICE candidates are accepted"
        )


async def read_offer(request: web.Request, limit: int) -> bytes:
    """The whole body (a read returns what is buffered, not `limit` bytes), at most `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"offers are limited to {limit} B")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            while len(body) <= limit:
                chunk = await request.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        raise ApiError(408, "request_timeout", "the offer was not sent in time") from None
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"offers are limited to {limit} B")
    return bytes(body)


def at_capacity(request: web.Request, why: str, message: str) -> ApiError:
    """The 503 of a call we cannot take now, counted by why (once: not by a sibling asked to
    place an offer that another process received)."""
    if hop(request) is None:
        request.app[METRICS].calls.labels(f"refused_{why}").inc()
    return ApiError(
        503, "at_capacity", f"{message}; retry shortly", {"Retry-After": str(RETRY_AFTER_S)}
    )


@routes.post("/v1/calls")
async def create_call(request: web.Request) -> web.Response:
    return await start_call(request, "/v1/calls")


@routes.post("/v1/realtime/calls")
async def create_realtime_call(request: web.Request) -> web.Response:
    """OpenAI's Realtime WebRTC calls endpoint: the same call (docs/api.md, "OpenAI Realtime")."""
    return await start_call(request, "/v1/realtime/calls", realtime=True)


def decode_sdp(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_sdp", "the offer is not UTF-8 text") from None


def read_form(content_type: str, body: bytes) -> tuple[str, str | None]:
    """OpenAI's unified form (`multipart/form-data`): the offer in `sdp`, and `session`, a JSON
    session config whose `instructions` the call starts with. Returns (sdp, instructions)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and name not in parts:
                payload = part.get_payload(decode=True)
                parts[name] = payload if isinstance(payload, bytes) else b""
    if "sdp" not in parts:
        raise ApiError(400, "invalid_sdp", "the form has no 'sdp' field with the offer")
    instructions = None
    if "session" in parts:
        try:
            session = json.loads(parts["session"])
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_session", "'session' must be a JSON object") from None
        if not isinstance(session, dict):
            raise ApiError(400, "invalid_session", "'session' must be a JSON object")
        given = session.get("instructions")
        if given is not None:
            if not isinstance(given, str) or len(given) > MAX_TEXT_CHARS:
                raise ApiError(
                    400, "invalid_session", f"instructions must be text of at most {MAX_TEXT_CHARS}"
                )
            try:
                check_text(given, "instructions")
            except EventError as exc:
                raise ApiError(400, "invalid_session", exc.message) from None
            instructions = given
    return decode_sdp(parts["sdp"]), instructions


async def start_call(request: web.Request, path: str, realtime: bool = False) -> web.Response:
    """Admit an offer and answer it (POST /v1/calls, POST /v1/realtime/calls); the call's URL is
    `path`/{call_id}."""
    app = request.app
    config = app[CONFIG]
    origin = check_origin(request)
    token = app[AUTH].authorize_call(request.headers.get("Authorization"), origin)
    if token is not None:
        await app[AUTH].refuse_if_spent(token, app[REDIS])  # early; claim() has the final word
    form = realtime and request.content_type == "multipart/form-data"
    if request.content_type != "application/sdp" and not form:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the SDP offer as application/sdp"
            + (" (or as the 'sdp' field of multipart/form-data)" if realtime else ""),
        )
    body = await read_offer(request, config.max_body_bytes)
    instructions = None
    if form:
        sdp, instructions = read_form(request.headers.get("Content-Type", ""), body)
    else:
        sdp = decode_sdp(body)
    validate_offer(sdp)

    calls = app[CALLS]
    client = app[CLIENTS].of(request)
    if calls.connecting_from(client) >= config.max_connecting_per_client:
        app[METRICS].calls.labels("refused_connecting").inc()
        raise ApiError(
            429,
            "too_many_connecting",
            f"this client already has {config.max_connecting_per_client} calls that have not "
            "connected yet; connect or close them first",
            {"Retry-After": "1"},
        )
    if calls.full or app[LOAD].overloaded:  # another media process of this server may have room
        placed = await place_elsewhere(request, body)
        if placed is not None:
            return placed
    # A call whose peer is gone and has not come back gives way to a new one (not when a sibling
    # process only asks whether it has a free slot).
    if calls.full and hop(request) != "place":
        await calls.evict_suspended()
    if calls.full:
        raise at_capacity(request, "full", "the server is serving as many calls as it can")
    if app[LOAD].overloaded:
        raise at_capacity(
            request,
            "overloaded",
            "the server is at its real-time capacity (calls would fall behind)",
        )
    try:
        call = await app[FACTORY].create(sdp, client)
    except EngineBusy as exc:
        raise at_capacity(request, "full", str(exc)) from None
    call_id = call.call_id
    if token is not None:
        try:
            await app[AUTH].claim(token, call_id, app[REDIS])
        except ApiError:
            await call.close("token reused")
            raise
    if instructions:
        call.apply_instructions(instructions)
    call.begin()
    app[METRICS].calls.labels("created").inc()
    log.info("call %s: created", call_id)
    return web.Response(
        status=201,
        text=call.pc.localDescription.sdp,
        content_type="application/sdp",
        # Calls are sticky to this node: with --public-url the Location says which node it is.
        headers={"Location": f"{config.public_url.rstrip('/')}{path}/{call_id}"},
    )


async def place_elsewhere(request: web.Request, body: bytes) -> web.Response | None:
    """An offer this process cannot take, answered by the first sibling media process that can
    (signaling/siblings.py); None when there is none, or this is itself a sibling's request."""
    siblings = request.app.get(SIBLINGS)
    if siblings is None or hop(request) is not None:
        return None
    for index in siblings.others:
        try:
            answer = await siblings.forward(request, index, "place", body)
        except Unreachable as exc:
            log.info("offer not placed on a sibling: %s", exc)
            continue
        if answer.status != 503:
            return answer
    return None


async def to_owner(request: web.Request) -> web.Response | None:
    """The answer of the media process that owns the call of the URL, when that is another one
    (signaling/siblings.py); None when the call would be this process's own."""
    siblings = request.app.get(SIBLINGS)
    if siblings is None or hop(request) is not None:
        return None
    owner = siblings.owner_of(request.match_info["call_id"])
    if owner == siblings.index:
        return None
    try:
        return await siblings.forward(request, owner, "owner")
    except Unreachable:
        # Its process is gone (the supervisor restarts it): its calls ended with it.
        raise ApiError(404, "call_not_found", "no such call") from None


@routes.post("/v1/calls/{call_id}/resume")
@routes.post("/v1/realtime/calls/{call_id}/resume")
async def resume_call(request: web.Request) -> web.Response:
    """A running call on a new peer connection: the client's path dropped or its page reloaded.
    The credential is the call's resume token (from `session.created`), whatever the auth mode."""
    if (forwarded := await to_owner(request)) is not None:
        return forwarded
    app = request.app
    check_origin(request)
    call_id = request.match_info["call_id"]
    call = app[CALLS].get(call_id)
    presented = app[AUTH].bearer(request.headers.get("Authorization"))
    if call is None or call.state == "closed":
        raise ApiError(
            404, "call_not_found", "no such call (it ended, or its resume window passed)"
        )
    if not call.may_resume(presented):
        raise ApiError(401, "invalid_resume_token", "present this call's latest resume token")
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported_media_type", "send the SDP offer as application/sdp")
    sdp = decode_sdp(await read_offer(request, app[CONFIG].max_body_bytes))
    validate_offer(sdp)
    await app[FACTORY].resume(call, sdp)
    app[METRICS].calls.labels("resume_offered").inc()
    base = request.path.rsplit("/", 1)[0]  # /v1/calls/{id} or /v1/realtime/calls/{id}
    return web.Response(
        status=201,
        text=call.pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"{app[CONFIG].public_url.rstrip('/')}{base}"},
    )


@routes.get("/v1/ice-servers")
async def get_ice_servers(request: web.Request) -> web.Response:
    """STUN and TURN servers (TURN with short-lived credentials) for the client's next offer;
    auth as POST /v1/calls (a call token is checked, not spent)."""
    app = request.app
    origin = check_origin(request)
    app[AUTH].authorize_call(request.headers.get("Authorization"), origin)
    config = app[CONFIG]
    servers = ice_servers(config, "microturn") if config.ice_servers else []
    return web.json_response({"ice_servers": servers, "ttl_s": config.turn_ttl_s})


def _call(request: web.Request) -> Call:
    """The call of the URL, for an API key or for the call token that started it."""
    origin = check_origin(request)
    auth = request.app[AUTH]
    call_id = request.match_info["call_id"]
    authorization = request.headers.get("Authorization")
    if auth.enabled and not auth.started_call(authorization, origin, call_id):
        auth.require_api_key(authorization)
    call = request.app[CALLS].get(call_id)
    if call is None:
        raise ApiError(404, "call_not_found", "no such call")
    return call


@routes.get("/v1/calls/{call_id}")
@routes.get("/v1/realtime/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    if (forwarded := await to_owner(request)) is not None:
        return forwarded
    described = _call(request).describe()
    siblings = request.app.get(SIBLINGS)
    if siblings is not None:
        described["process"] = siblings.index
    return web.json_response(described)


@routes.delete("/v1/calls/{call_id}")
@routes.delete("/v1/realtime/calls/{call_id}")
@routes.post("/v1/realtime/calls/{call_id}/hangup")
async def delete_call(request: web.Request) -> web.Response:
    if (forwarded := await to_owner(request)) is not None:
        return forwarded
    await _call(request).close("deleted by client")
    return web.Response(status=204)


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    check_origin(request)  # backends send no Origin; a browser page must be an allowed one
    auth = request.app[AUTH]
    auth.require_api_key(request.headers.get("Authorization"))
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "body must be a JSON object")
    ttl = body.get("ttl_s", DEFAULT_TOKEN_TTL_S)
    origin = body.get("origin")
    if not isinstance(ttl, int | float) or isinstance(ttl, bool):
        raise ApiError(400, "invalid_ttl", "ttl_s must be a number of seconds")
    if origin is not None and not isinstance(origin, str):
        raise ApiError(400, "invalid_origin", "origin must be a string like https://site.example")
    token = auth.mint(float(ttl), origin)
    return web.json_response(
        {"token": auth.encode(token), "expires_at": int(token.expires_at)}, status=201
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    reasons = await request.app[READINESS]()
    if reasons:
        return web.json_response({"status": "unavailable", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; with several media processes, all of theirs, each sample labelled
    with its `process` (sum them `without (process)` for the server's)."""
    own = request.app[METRICS].render()
    siblings = request.app.get(SIBLINGS)
    if siblings is not None:
        others = await siblings.metrics()
        own = merge_metrics([(siblings.index, own), *others.items()])
    return web.Response(body=own, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def internal_room(request: web.Request) -> web.Response:
    """For sibling media processes only (signaling/siblings.py): could this one take a call?"""
    app = request.app
    calls = app[CALLS]
    return web.json_response(
        {
            "free": max(0, calls.max_calls - len(calls)),
            "overloaded": app[LOAD].overloaded,
        }
    )


async def internal_metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


# An origin as a CSP source / Permissions-Policy allowlist entry: scheme://host[:port], nothing else.
_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$"
)


def page_headers(allowed_origins: tuple[str, ...]) -> dict[str, str]:
    """Headers of the demo page: a strict CSP; framing (and camera/mic delegation) only by this
    server and the allowed origins, so another site cannot frame a page that turns a camera on."""
    if "*" in allowed_origins:
        ancestors, delegates = "*", "*"
    else:
        origins = [o for o in allowed_origins if _ORIGIN.match(o)]
        ancestors = " ".join(["'self'", *origins])
        delegates = "(" + " ".join(["self", *(f'"{o}"' for o in origins)]) + ")"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
    return {
        "Content-Security-Policy": csp,
        "Permissions-Policy": f"camera={delegates}, microphone={delegates}, autoplay={delegates}",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    template = request.app[TEMPLATES].get_template("index.html")
    html = template.render(model=request.app[ENGINE].model_name)
    headers = page_headers(request.app[AUTH].allowed_origins)
    return web.Response(text=html, content_type="text/html", headers=headers)
