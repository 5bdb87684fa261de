"""aiortc's data-channel receive path, made safe against what a hostile peer can send.

aiortc decodes every text message (`data.decode("utf8")`) and runs our `message` handler inside
its SCTP reader, which runs inside the DTLS transport's receive loop. An exception anywhere in
there (invalid UTF-8, a duplicate DATA_CHANNEL_OPEN hitting an `assert`, a bug in a handler) ends
that loop, and with it the DTLS transport and the whole call. The guard:

- checks a text message's UTF-8 first; invalid bytes become an `INVALID_MESSAGE` event on the
  channel (the call answers it with an `error` event) instead of an exception;
- catches anything else the original raises, logs it (rate-limited) and drops that message.

It wraps one method of `RTCSctpTransport`, process-wide and idempotently, like `infra.ice` does
for aioice; `create_app` installs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import rtcsctptransport
from aiortc.rtcsctptransport import RTCSctpTransport

log = logging.getLogger(__name__)

INVALID_MESSAGE = "invalid_message"  # emitted on the channel with a reason (str)
LOG_EVERY_S = 5.0

_original: Callable[..., Awaitable[None]] | None = None
_last_logged = 0.0


def install() -> None:
    """Wrap `RTCSctpTransport._data_channel_receive`. Idempotent."""
    global _original
    if _original is not None:
        return
    _original = RTCSctpTransport._data_channel_receive
    setattr(RTCSctpTransport, "_data_channel_receive", _guarded)  # noqa: B010


async def _guarded(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
    global _last_logged
    assert _original is not None
    channels = self._data_channels
    if pp_id == rtcsctptransport.WEBRTC_STRING and stream_id in channels:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            channels[stream_id].emit(INVALID_MESSAGE, "text messages must be valid UTF-8")
            return
    try:
        await _original(self, stream_id, pp_id, data)
    except asyncio.CancelledError:
        raise
    except Exception:
        now = time.monotonic()
        if now - _last_logged >= LOG_EVERY_S:
            _last_logged = now
            log.warning("dropped a data-channel message that failed in aiortc", exc_info=True)
