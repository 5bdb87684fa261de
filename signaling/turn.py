"""ICE servers for clients: STUN as given, TURN with short-lived credentials from a shared secret.

coturn's REST API (`use-auth-secret` + `static-auth-secret` in turnserver.conf, as
infra/deploy/turnserver.conf has it): the username is `<expiry unix time>:<user>`, the password
base64(HMAC-SHA1(secret, username)). coturn recomputes it and refuses it after the expiry, so a
credential handed to one page is worth nothing to anyone a few hours later, and the secret never
leaves the servers.

    ice_servers(config, user)  ->  [{"urls": ["stun:..."]},
                                    {"urls": ["turn:..."], "username": "1795003600:Jx1c",
                                     "credential": "k3b0...="}]

The list is what `RTCPeerConnection({iceServers})` takes in a browser; clients get it from
`GET /v1/ice-servers` before their offer and in `session.created` (for a resume's re-offer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from infra.config import Config


def turn_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(config: Config, user: str = "microturn", now: float | None = None) -> list[Any]:
    """The configured STUN and TURN servers, TURN with credentials valid for `turn_ttl_s`."""
    stun = [url for url in config.ice_servers if url.startswith(("stun:", "stuns:"))]
    turn = [url for url in config.ice_servers if url.startswith(("turn:", "turns:"))]
    servers: list[Any] = []
    if stun:
        servers.append({"urls": stun})
    if turn:
        expiry = int((time.time() if now is None else now) + config.turn_ttl_s)
        username = f"{expiry}:{user}"
        servers.append(
            {
                "urls": turn,
                "username": username,
                "credential": turn_credential(config.turn_secret, username),
            }
        )
    return servers
