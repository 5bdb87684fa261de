"""Synthetic media tracks with known content and timing, paced on the clock like a browser's.

Used by tests, benchmarks and QA scripts that drive a call from Python (aiortc) instead of a
browser: audio as Chromium sends it (48 kHz stereo, 20 ms frames), video as a moving square.
"""

from __future__ import annotations

import asyncio
import fractions
import time
import wave
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_RATE_HZ = 48_000
AUDIO_PTIME_S = 0.020
AUDIO_FRAME_SAMPLES = int(AUDIO_RATE_HZ * AUDIO_PTIME_S)  # 960
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class _Paced(MediaStreamTrack):
    period_s: float

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._count = 0

    async def _wait(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._count * self.period_s
        if due > now:
            await asyncio.sleep(due - now)
        n = self._count
        self._count += 1
        return n


class SignalAudioTrack(_Paced):
    """48 kHz stereo 20 ms frames of `signal(t) -> mono float32 samples`, t in seconds."""

    kind = "audio"
    period_s = AUDIO_PTIME_S

    def __init__(self, signal: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.signal = signal

    async def recv(self) -> av.AudioFrame:
        n = await self._wait()
        t = (np.arange(AUDIO_FRAME_SAMPLES) + n * AUDIO_FRAME_SAMPLES) / AUDIO_RATE_HZ
        mono = np.clip(self.signal(t), -1, 1)
        pcm = (np.repeat(mono, 2) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = n * AUDIO_FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE_HZ)
        return frame


def tone(freq_hz: float = 440.0, amplitude: float = 0.3) -> SignalAudioTrack:
    return SignalAudioTrack(lambda t: amplitude * np.sin(2 * np.pi * freq_hz * t))


def wav_track(path: str, loop: bool = True) -> SignalAudioTrack:
    """A mono 16-bit WAV file (any rate) played as a browser microphone would send it."""
    with wave.open(path, "rb") as wav:
        rate = wav.getframerate()
        channels = wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    mono = data.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768
    if rate != AUDIO_RATE_HZ:
        x = np.arange(0, len(mono), rate / AUDIO_RATE_HZ)
        mono = np.interp(x, np.arange(len(mono)), mono).astype(np.float32)

    def signal(t: np.ndarray) -> np.ndarray:
        idx = np.round(t * AUDIO_RATE_HZ).astype(np.int64)
        if loop:
            return mono[idx % len(mono)]
        out = np.zeros(len(idx), dtype=np.float32)
        ok = idx < len(mono)
        out[ok] = mono[idx[ok]]
        return out

    return SignalAudioTrack(signal)


def moving_square_frame(n: int, width: int, height: int, fps: float) -> np.ndarray:
    """Frame n of a white square circling on grey: RGB uint8 [height, width, 3]."""
    img = np.full((height, width, 3), 64, dtype=np.uint8)
    side = max(4, min(width, height) // 5)
    angle = 2 * np.pi * (n / fps) / 2.0  # one revolution per 2 s
    cx = int(width / 2 + np.cos(angle) * (width / 2 - side))
    cy = int(height / 2 + np.sin(angle) * (height / 2 - side))
    img[max(0, cy - side // 2) : cy + side // 2, max(0, cx - side // 2) : cx + side // 2] = 255
    return img


class MovingSquareTrack(_Paced):
    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.period_s = 1 / fps

    async def recv(self) -> av.VideoFrame:
        n = await self._wait()
        img = moving_square_frame(n, self.width, self.height, self.fps)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = int(n * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame
