"""aiortc's receive jitter buffer for audio, made configurable.

aiortc builds each audio receiver with `JitterBuffer(capacity=16, prefetch=4)`: four 20 ms packets
are held before the first one plays, ~75 ms of the loopback echo latency measured here. It offers no
setting, so after `setRemoteDescription` (receivers exist, no packet yet) we swap in a buffer with
the configured prefetch.
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

log = logging.getLogger(__name__)

AUDIO_JITTER_CAPACITY = 16  # packets; aiortc's own value (must be a power of two)


def set_audio_prefetch(pc: RTCPeerConnection, prefetch: int) -> None:
    if not 0 <= prefetch < AUDIO_JITTER_CAPACITY:
        raise ValueError(f"prefetch must be in [0, {AUDIO_JITTER_CAPACITY})")
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        attr = "_RTCRtpReceiver__jitter_buffer"
        if not hasattr(receiver, attr):  # aiortc changed its internals: keep its default
            log.warning("aiortc has no audio jitter buffer attribute; prefetch stays default")
            return
        setattr(receiver, attr, JitterBuffer(capacity=AUDIO_JITTER_CAPACITY, prefetch=prefetch))
