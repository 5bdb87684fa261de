"""ICE candidate gathering tweaks for aiortc (aioice).

aioice never offers 127.0.0.1, so a browser on the same machine that only reaches the server over
loopback (a sandbox, CI, a laptop without network) cannot connect. When the server binds a loopback
address we let aioice gather 127.0.0.1 too. aioice reads its host addresses from one module-level
function, so the switch is process-wide; it is applied once at start-up by the app factory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aioice.ice

log = logging.getLogger(__name__)

_original: Callable[[bool, bool], list[str]] | None = None


def enable_loopback_candidates() -> None:
    """Make aioice gather 127.0.0.1 in addition to the usual host addresses. Idempotent."""
    global _original
    if _original is not None:
        return
    _original = aioice.ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        assert _original is not None
        addresses = _original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses = ["127.0.0.1", *addresses]
        return addresses

    setattr(aioice.ice, "get_host_addresses", with_loopback)  # noqa: B010
    log.info("ICE: offering 127.0.0.1 host candidates (loopback bind)")
