"""Who is asking: the client address behind trusted proxies, and the Host names we answer to.

- `ClientAddresses`: rate limits and per-client limits key on the peer's address. Behind a reverse
  proxy every request comes from the proxy, so the client is the last address in
  `X-Forwarded-For` that is not itself a trusted proxy; from any other peer the header is a claim
  anyone can make and is ignored.
- `host_guard`: with auth off (the default on a loopback bind) any web page the user visits could
  reach the server through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1):
  the browser then sends `Host: attacker.example`. Such requests are refused. IP literals,
  `localhost`, `--public-url`'s host and `--allowed-hosts` pass; a rebinding page cannot use them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from signaling.errors import ApiError, Handler

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class ClientAddresses:
    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )

    def _is_trusted(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in net for net in self.trusted)

    def of(self, request: web.Request) -> str:
        """The address the request's limits count against."""
        peer = request.remote or "?"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.getall("X-Forwarded-For", [])
        hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
        for hop in reversed(hops[-16:]):  # right to left: the nearest hop first
            if not self._is_trusted(hop):
                return hop if _ip(hop) is not None else peer
        return peer


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    if "*" in allowed:
        return True
    if not host_header:
        return True  # HTTP/1.0 clients and raw tools; browsers always send Host
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    return _ip(name) is not None or name in allowed


def host_guard(allowed_names: Iterable[str]) -> Middleware:
    allowed = frozenset({"localhost", *(n.strip().lower().rstrip(".") for n in allowed_names)})

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), allowed):
            raise ApiError(
                403,
                "host_not_allowed",
                "this server does not answer to that host name (start it with --allowed-hosts "
                "to add one)",
            )
        return await handler(request)

    return guard
