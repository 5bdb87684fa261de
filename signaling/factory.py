"""Calls are built in one place: `CallFactory.create(offer, client)`.

    slot = await engine.open_async(call_id)          the model's state for this call, in process or
                                                     on an inference worker (503 if none has room)
    pc   = new_peer_connection(...)                  the peer, with the jitter buffer we choose and
                                                     DTLS for RSA and ECDSA peers (dtls.py)
    call = Call(call_id, pc, engine, slot, limits=...) its limits (a shorter connect timeout for
                                                     LAN-only offers) go in by the constructor
    registry.add(call)                               counted at once (per-client limits see it)
    offer -> answer                                  any failure frees all of the above

A resume (`CallFactory.resume(call, offer)`) builds a new peer connection for a running call the
same way and moves the call onto it (`Call.replace_peer`): same slot, same engine session.

The factory knows the server's dependencies (engine, Redis, metrics, registry, limits); the route
only decides whether a call may start (auth, admission) and what the client hears back.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from aiortc import RTCConfiguration, RTCSessionDescription

from agent.client import AgentClient
from inference.protocol import Engine
from media.audio_out import LoopJitter
from media.jitter import set_audio_prefetch
from signaling.call import Call, CallLimits
from signaling.dtls import new_peer_connection
from signaling.errors import ApiError
from signaling.metrics import Metrics
from signaling.registry import CallRegistry

log = logging.getLogger(__name__)


class EngineBusy(Exception):
    """The engine has no free slot (or is not running)."""


def lan_only(sdp: str) -> bool:
    """True when every ICE candidate of the offer is a host candidate on a loopback, private or
    link-local address (or an mDNS `.local` name): such a peer can only connect over a LAN path,
    where ICE and DTLS take well under a second, so its connect timeout can be short."""
    candidates = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    if not candidates:
        return False
    for fields in candidates:
        if len(fields) < 8 or fields[6] != "typ" or fields[7] != "host":
            return False
        address = fields[4]
        if address.lower().endswith(".local"):
            continue
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if not (ip.is_loopback or ip.is_private or ip.is_link_local):
            return False
    return True


class CallFactory:
    def __init__(
        self,
        *,
        engine: Engine,
        redis: aioredis.Redis,
        metrics: Metrics,
        registry: CallRegistry,
        limits: CallLimits,
        jitter_prefetch: int = 0,
        connect_timeout_lan_s: float | None = None,
        ice_servers: Callable[[str], list[Any]] | None = None,
        call_ids: Callable[[], str] | None = None,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.metrics = metrics
        self.registry = registry
        self.limits = limits
        self.jitter_prefetch = jitter_prefetch
        self.connect_timeout_lan_s = connect_timeout_lan_s
        self.ice_servers = ice_servers  # call_id -> the ICE servers its client may use
        # New call ids; with several media processes each id names its process (siblings.py).
        self.call_ids = call_ids or (lambda: secrets.token_urlsafe(9))
        # How late the model's outputs reach this process's calls (one loop, one engine): every
        # call's playout cushion learns from all of them (media/audio_out.py).
        self.playout = LoopJitter()

    def limits_for(self, sdp: str) -> CallLimits:
        if self.connect_timeout_lan_s is not None and lan_only(sdp):
            timeout = min(self.limits.connect_timeout_s, self.connect_timeout_lan_s)
            return dataclasses.replace(self.limits, connect_timeout_s=timeout)
        return self.limits

    async def create(self, sdp: str, client: str) -> Call:
        """A registered call with its answer set (`call.pc.localDescription`), not yet begun.
        Raises EngineBusy, or ApiError 400 for an offer aiortc cannot use."""
        call_id = self.call_ids()
        try:
            slot = await self.engine.open_async(call_id)
        except Exception as exc:  # EngineFull, NoWorkerRoom, or the engine stopped
            raise EngineBusy(str(exc)) from None
        pc = new_peer_connection(RTCConfiguration(iceServers=[]))
        call = Call(
            call_id,
            pc,
            self.engine,
            slot,
            self.metrics,
            agent=AgentClient(self.redis, call_id),
            on_closed=self.registry.remove,
            limits=self.limits_for(sdp),
            client=client,
            playout=self.playout,
        )
        if self.ice_servers is not None:
            ice_servers = self.ice_servers
            call.ice_servers = lambda: ice_servers(call_id)
        self.registry.add(call)  # counted at once: concurrent offers of one client see each other
        try:
            await self._answer(call, sdp)
        except Exception as exc:
            await call.close("unusable offer")
            self.metrics.calls.labels("bad_offer").inc()
            raise ApiError(400, "invalid_sdp", f"unusable offer: {exc}"[:300]) from None
        log.info("call %s: set up (slot %d, client %s)", call_id, slot, client)
        return call

    async def resume(self, call: Call, sdp: str) -> None:
        """Move a running call onto a new peer connection for `sdp` (its answer is then
        `call.pc.localDescription`). Raises ApiError 400 for an offer aiortc cannot use; the call
        then waits out its resume window for a better one."""
        call.replace_peer(new_peer_connection(RTCConfiguration(iceServers=[])))
        try:
            await self._answer(call, sdp)
        except Exception as exc:
            self.metrics.calls.labels("bad_offer").inc()
            raise ApiError(400, "invalid_sdp", f"unusable offer: {exc}"[:300]) from None
        log.info("call %s: resuming on a new peer connection", call.call_id)

    async def _answer(self, call: Call, sdp: str) -> None:
        pc = call.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        set_audio_prefetch(pc, self.jitter_prefetch)
        pc.addTrack(call.outbound)  # joins the offer's audio transceiver, making it sendrecv
        await pc.setLocalDescription(await pc.createAnswer())
