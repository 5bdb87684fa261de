"""Who may start a call: API keys, short-lived call tokens, allowed origins.

- API keys (configuration) are for backends; compared in constant time.
- Call tokens are for browsers: `mt1.<payload>.<signature>`, the payload `{"jti", "exp", "origin"?}`
  signed with HMAC-SHA256 under the server's token secret. They expire, may be bound to one origin,
  and are single-use: the first call that presents one consumes it, claimed in Redis
  (`SET microturn:token:<jti> NX` for the token's remaining lifetime), so a token is spent on every
  node sharing the secret and across restarts; when Redis is away, this node's memory still refuses
  a second use. The page that started a call with a token may still read and hang up that call
  with it (GET/DELETE /v1/calls/{id}).
- Origins: a browser request whose Origin is neither this server nor in `allowed_origins` is refused.
  Requests without an Origin header (server-side clients, aiortc) are not browser requests and pass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from signaling.errors import ApiError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mt1"
DEFAULT_TOKEN_TTL_S = 600
MAX_TOKEN_TTL_S = 3600
# A used token is remembered this long past its expiry, so the page that started a call with it can
# still read and hang up that call (GET/DELETE /v1/calls/{id}) after the token itself expired.
CALL_MANAGEMENT_GRACE_S = 6 * 3600
USED_TOKEN_KEY = "microturn:token:{jti}"
REDIS_TIMEOUT_S = 1.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Token:
    jti: str
    expires_at: float
    origin: str | None


class Auth:
    def __init__(
        self,
        *,
        enabled: bool,
        api_keys: tuple[str, ...],
        secret: str,
        allowed_origins: tuple[str, ...],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.enabled = enabled
        self._keys = [k.encode() for k in api_keys]
        self._secret = secret.encode()
        self.allowed_origins = allowed_origins
        # jti -> (forget at, call_id): used tokens, kept past expiry (CALL_MANAGEMENT_GRACE_S)
        self._used: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        self._now = clock or time.time

    # -- API keys -------------------------------------------------------------------------------
    def is_api_key(self, presented: str) -> bool:
        candidate = presented.encode()
        found = False
        for key in self._keys:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(candidate, key)
        return found

    # -- call tokens ----------------------------------------------------------------------------
    def mint(self, ttl_s: float = DEFAULT_TOKEN_TTL_S, origin: str | None = None) -> Token:
        if not 1 <= ttl_s <= MAX_TOKEN_TTL_S:
            raise ApiError(400, "invalid_ttl", f"ttl_s must be between 1 and {MAX_TOKEN_TTL_S}")
        return Token(secrets.token_urlsafe(12), self._now() + ttl_s, origin)

    def encode(self, token: Token) -> str:
        payload = {"jti": token.jti, "exp": round(token.expires_at, 3)}
        if token.origin:
            payload["origin"] = token.origin
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{TOKEN_PREFIX}.{body}.{signature}"

    def verify(self, text: str, origin: str | None, *, allow_expired: bool = False) -> Token:
        """Check signature, expiry and origin binding; raise 401/403 ApiError. Does not consume."""
        parts = text.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise ApiError(401, "invalid_token", "token is malformed")
        expected = _b64(hmac.new(self._secret, parts[1].encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            raise ApiError(401, "invalid_token", "token signature is invalid")
        try:
            payload = json.loads(_unb64(parts[1]))
            token = Token(str(payload["jti"]), float(payload["exp"]), payload.get("origin"))
        except (ValueError, KeyError, TypeError):
            raise ApiError(401, "invalid_token", "token payload is malformed") from None
        if token.expires_at < self._now() and not allow_expired:
            raise ApiError(
                401, "token_expired", "token has expired; ask your backend for a new one"
            )
        if token.origin is not None and origin != token.origin:
            raise ApiError(403, "origin_mismatch", "token is bound to another origin")
        return token

    def refuse_if_used(self, token: Token) -> None:
        """Refuse a token some call already consumed, before that work is repeated for nothing."""
        with self._lock:
            used = token.jti in self._used
        if used:
            raise ApiError(401, "token_used", "token was already used for a call")

    async def refuse_if_spent(self, token: Token, redis: aioredis.Redis) -> None:
        """`refuse_if_used`, also against the tokens other nodes (or this one before a restart)
        spent."""
        self.refuse_if_used(token)
        try:
            spent = await asyncio.wait_for(
                redis.exists(USED_TOKEN_KEY.format(jti=token.jti)), REDIS_TIMEOUT_S
            )
        except Exception as exc:  # Redis away: local memory is the fallback
            log.info("token check without Redis (%s): this node's record only", exc)
            return
        if spent:
            raise ApiError(401, "token_used", "token was already used for a call")

    async def claim(self, token: Token, call_id: str, redis: aioredis.Redis) -> None:
        """Spend the token for `call_id`: in Redis (SET NX, for its remaining lifetime plus the
        management grace) and in this node's memory. A second claim anywhere is refused."""
        self.consume(token, call_id)
        ttl_s = max(1, int(token.expires_at - self._now() + CALL_MANAGEMENT_GRACE_S))
        try:
            first = await asyncio.wait_for(
                redis.set(USED_TOKEN_KEY.format(jti=token.jti), call_id, nx=True, ex=ttl_s),
                REDIS_TIMEOUT_S,
            )
        except Exception as exc:
            log.warning("token claimed without Redis (%s): single use on this node only", exc)
            return
        if not first:
            raise ApiError(401, "token_used", "token was already used for a call")

    def consume(self, token: Token, call_id: str | None = None) -> None:
        """Mark a token used (by `call_id`); a second use is refused."""
        now = self._now()
        with self._lock:
            for jti in [j for j, (forget, _) in self._used.items() if forget < now]:
                del self._used[jti]
            if token.jti in self._used:
                raise ApiError(401, "token_used", "token was already used for a call")
            self._used[token.jti] = (token.expires_at + CALL_MANAGEMENT_GRACE_S, call_id)

    def started_call(self, authorization: str | None, origin: str | None, call_id: str) -> bool:
        """True if the request presents the (used, possibly expired) token that started `call_id`,
        from the origin it is bound to: a page may read and hang up its own call."""
        presented = self.bearer(authorization)
        if presented is None or not presented.startswith(TOKEN_PREFIX + "."):
            return False
        token = self.verify(presented, origin, allow_expired=True)
        with self._lock:
            used = self._used.get(token.jti)
        return used is not None and used[1] == call_id

    # -- requests -------------------------------------------------------------------------------
    def bearer(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip() or not authorization.isascii():
            raise ApiError(
                401, "invalid_authorization", "use 'Authorization: Bearer <token or key>'"
            )
        return value.strip()

    def require_api_key(self, authorization: str | None) -> None:
        presented = self.bearer(authorization)
        if presented is None or not self.is_api_key(presented):
            raise ApiError(401, "unauthorized", "a valid API key is required")

    def authorize_call(self, authorization: str | None, origin: str | None) -> Token | None:
        """For POST /v1/calls: an API key, or a valid unused token (returned, to consume later)."""
        presented = self.bearer(authorization)
        if presented is None:
            if self.enabled:
                raise ApiError(401, "unauthorized", "an API key or call token is required")
            return None
        if presented.startswith(TOKEN_PREFIX + "."):
            return self.verify(presented, origin)
        if self.is_api_key(presented):
            return None
        if self.enabled:
            raise ApiError(401, "unauthorized", "API key or token is invalid")
        return None

    def origin_allowed(self, origin: str | None, own_origin: str) -> bool:
        if origin is None or origin == own_origin:
            return True
        return "*" in self.allowed_origins or origin in self.allowed_origins
