"""Opus both ways on the event loop, at the model's 16 kHz mono, with no thread hop per packet.

aiortc decodes each received packet on a decoder thread (handed over through a `queue.Queue`, the
frame handed back with `run_coroutine_threadsafe`) and encodes each sent frame on the default
executor (`run_in_executor`), resampled to 48 kHz stereo at 96 kb/s. For 20 ms audio frames the
hops cost more than the codec: two thread wake-ups and a loop wake-up per packet, each way, and
GIL hand-offs between them (py-spy of one audio+video call: a third of the event loop's own time
was `Condition.notify`, `ThreadPoolExecutor.submit` and their futures). So:

- inbound, `decode_on_loop(receiver, sink)` stands in for the audio receiver's decoder queue
  before its decoder thread starts (as media/jitter.py does for its jitter buffer): each Opus
  frame the jitter buffer completes is decoded at once, mono (libopus gives 48 kHz; the mono
  decode is the cheaper one), and handed to `sink` (the call's AudioInput). aiortc's decoder
  thread still starts, idles on it, and ends the track when the receiver stops;
- outbound, `OpusPacketizer` encodes the model's 16 kHz mono frames itself (32 kb/s wideband,
  what the model makes) into `av.Packet`s, which aiortc's sender only packs into RTP.

A decode here is ~30 us and an encode ~70 us of one core per 20 ms frame. Other codecs (G.722,
PCMU/A, video) keep aiortc's decoder thread.
"""

from __future__ import annotations

import fractions
import logging
import queue
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpReceiver

from inference.protocol import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)

RTP_CLOCK_HZ = 48_000  # Opus's RTP clock, whatever the audio's rate
OUT_BITRATE = 32_000  # wideband speech: the model's 16 kHz voice, nothing above it to carry
OUT_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE_HZ)
_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"


class OpusPacketizer:
    """16 kHz mono s16 frames in, one Opus packet (20 ms) out each, stamped on the 16 kHz clock."""

    def __init__(self, bitrate: int = OUT_BITRATE) -> None:
        codec = av.CodecContext.create("libopus", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = SAMPLE_RATE_HZ
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = OUT_TIME_BASE
        # "audio", not "voip": voip's speech processing left a tail after the live evaluation's
        # tone bursts that its level detector heard (tests/browser/test_eval_live.py); the model's
        # output goes out as it is
        codec.options = {"application": "audio"}
        self.codec = codec

    def encode(self, pcm: np.ndarray, pts: int) -> av.Packet | None:
        """`pcm` int16 [1, n] (n = 20 ms) whose first sample is at `pts` (16 kHz samples)."""
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = pts
        frame.time_base = OUT_TIME_BASE
        packets = self.codec.encode(frame)
        if not packets:
            return None
        packet = packets[-1]
        # Our own clock, not the encoder's (it starts negative by its look-ahead): one packet per
        # frame, stamped with the frame it encodes, so RTP timestamps advance 960 per packet.
        packet.pts = pts
        packet.time_base = OUT_TIME_BASE
        return packet


class LoopDecoder:
    """What aiortc's audio receiver takes for its decoder queue: Opus decoded on the spot."""

    def __init__(self, sink: Callable[[av.AudioFrame], None]) -> None:
        self.sink = sink
        self.decode_errors = 0
        self.frames = 0
        self._codec: Any = None
        self._fallback: Any = None  # aiortc's decoder, for a codec other than Opus
        self._idle: queue.Queue[object] = queue.Queue()  # aiortc's thread waits here for the end

    # aiortc's side of a queue.Queue ------------------------------------------------------------
    def put(self, item: object) -> None:
        if item is None:  # the receiver stops: let its idle decoder thread end the track
            self._idle.put(None)
            return
        assert isinstance(item, tuple), "aiortc queues (codec, encoded frame)"
        codec, encoded = item
        try:
            frames = self._decode(codec, encoded)
        except av.FFmpegError as exc:
            self.decode_errors += 1
            if self.decode_errors in (1, 10, 100, 1000):
                log.warning("audio decode failed (%d so far): %s", self.decode_errors, exc)
            return
        for frame in frames:
            self.frames += 1
            self.sink(frame)

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        return self._idle.get(block, timeout)

    # -----------------------------------------------------------------------------------------
    def _decode(self, codec: Any, encoded: Any) -> list[av.AudioFrame]:
        if codec.name.lower() != "opus":
            if self._fallback is None:
                from aiortc.codecs import get_decoder

                self._fallback = get_decoder(codec)
            return list(self._fallback.decode(encoded))
        if self._codec is None:
            context = av.CodecContext.create("libopus", "r")
            assert isinstance(context, av.AudioCodecContext)
            context.format = "s16"
            context.layout = "mono"
            context.sample_rate = RTP_CLOCK_HZ
            self._codec = context
        packet = av.Packet(encoded.data)
        packet.pts = encoded.timestamp
        packet.time_base = fractions.Fraction(1, RTP_CLOCK_HZ)
        return list(self._codec.decode(packet))


def decode_on_loop(receiver: RTCRtpReceiver, sink: Callable[[av.AudioFrame], None]) -> bool:
    """Decode `receiver`'s audio on the event loop into `sink` from now on. False (aiortc keeps
    decoding on its thread, frames come through the track) when its decoder already started or
    aiortc's internals changed."""
    if not hasattr(receiver, _QUEUE_ATTR) or getattr(receiver, _THREAD_ATTR, 1) is not None:
        return False
    setattr(receiver, _QUEUE_ATTR, LoopDecoder(sink))
    return True
