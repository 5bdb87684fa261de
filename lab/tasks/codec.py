"""The live audio path, offline: what a browser's microphone audio becomes by the time the model hears it.

    16 kHz episode audio -> 48 kHz (the page's AudioContext rate) -> Opus, 20 ms frames, at a
    browser's bitrate (PyAV's libopus) -> decoded -> 16 kHz mono s16 with av.AudioResampler, as
    media/audio_in.py resamples what aiortc decodes

Used to measure train/serve skew (`microturn eval --codec opus`: the same episodes offline, clean
and through the codec) and, later, as a training augmentation. Packet loss is not simulated yet.
"""

from __future__ import annotations

from typing import cast

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from scipy.signal import resample_poly

from inference.protocol import SAMPLE_RATE_HZ

OPUS_RATE = 48_000
OPUS_FRAME = 960  # 20 ms, as browsers send
BROWSER_BITRATES = (24_000, 32_000, 48_000)  # WebRTC's Opus voice range; Chromium's default 32k
ENCODER_DELAY = 312  # libopus' lookahead at 48 kHz (6.5 ms), trimmed so timing is unchanged


def opus_roundtrip(
    audio: np.ndarray, bitrate: int = 32_000, complexity: int | None = None
) -> np.ndarray:
    """16 kHz float32 mono through Opus at `bitrate` and back, as a browser sends it (48 kHz);
    same length and timing. complexity: libopus' 0-10 (None: its default, 10)."""
    up = resample_poly(audio.astype(np.float64), OPUS_RATE // SAMPLE_RATE_HZ, 1)
    return _roundtrip(up, len(audio), OPUS_RATE, bitrate, complexity, decoder="opus")


def opus_roundtrip_16k(audio: np.ndarray, bitrate: int, complexity: int = 5) -> np.ndarray:
    """The training augmentation's cheaper codec: Opus on the 16 kHz band the model hears (its
    SILK wideband layer, which codes 0-8 kHz in a browser's 48 kHz stream too), encoded at
    16 kHz by libopus, decoded (at 48 kHz, as libopus does) and resampled to 16 kHz as media/
    does; about 3x cheaper than `opus_roundtrip`, same length and timing. Evaluation measures
    skew with the faithful 48 kHz path."""
    return _roundtrip(audio, len(audio), SAMPLE_RATE_HZ, bitrate, complexity, decoder="libopus")


def _roundtrip(
    x: np.ndarray, n: int, rate: int, bitrate: int, complexity: int | None, decoder: str
) -> np.ndarray:
    """x (float, at `rate`) encoded in 20 ms frames, decoded at 48 kHz by `decoder`, resampled
    to 16 kHz with av's resampler (as media/audio_in.py does); -> n samples at 16 kHz, the
    encoder's lookahead trimmed so timing is unchanged."""
    if n == 0:
        return np.zeros(0, np.float32)
    frame_len = rate // 50
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % frame_len + frame_len, np.int16)])
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16", bitrate
    if complexity is not None:
        enc.options = {"compression_level": str(complexity)}
    dec = cast(AudioCodecContext, av.CodecContext.create(decoder, "r"))
    dec.sample_rate, dec.layout = OPUS_RATE, "mono"
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
    decoded: list[np.ndarray] = []

    def drain(packets: list[av.Packet]) -> None:
        for packet in packets:
            for frame in dec.decode(packet):
                for out in resampler.resample(frame):
                    decoded.append(out.to_ndarray().reshape(-1))

    for i in range(0, len(pcm), frame_len):
        frame = av.AudioFrame.from_ndarray(
            pcm[i : i + frame_len].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, i
        drain(list(enc.encode(frame)))
    drain(list(enc.encode(None)))
    for out in resampler.resample(None):
        decoded.append(out.to_ndarray().reshape(-1))
    y = np.concatenate(decoded).astype(np.float32) / 32768.0
    skip = ENCODER_DELAY * SAMPLE_RATE_HZ // OPUS_RATE
    y = y[skip : skip + n]
    return np.pad(y, (0, n - len(y))) if len(y) < n else y
