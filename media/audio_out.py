"""Outbound audio: the model's 200 ms outputs -> a bounded ring -> one 20 ms frame every 20 ms.

aiortc sends as fast as `recv()` returns, so the track paces itself on the clock (like aiortc's own
player). Each sample in the ring remembers which output micro-turn it belongs to, so the track knows
what the user has been sent ("played") so far. `flush()` drops everything queued (barge-in): the next
frame is already silence. `OpusAudioTrack` (a call's) sends each frame as an Opus packet encoded
here (media/opus.py); `PacedAudioTrack` as samples, for aiortc to resample and encode on a thread.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from inference.protocol import SAMPLE_RATE_HZ
from media.opus import OpusPacketizer

AUDIO_PTIME_S = 0.020
FRAME_SAMPLES = int(SAMPLE_RATE_HZ * AUDIO_PTIME_S)  # 320
RING_CAPACITY_S = 2.0
# After running dry, new audio is held back this long before it plays: a cushion against jitter in
# when the next 200 ms output arrives. Every heard sample waits it, so it adapts like the inbound
# grace: a slowly decaying peak of how much later than its predecessor's length an output was
# written (a slow step, a busy loop), plus a margin; up by CUSHION_UP_S after an underrun (at
# the next output: a pause in the outputs, seconds long, is not jitter). The calls of one process
# share the peak (`LoopJitter`); a track on its own keeps one of its own.
PLAYOUT_MARGIN_S = 0.040  # the first cushion
MIN_CUSHION_S = 0.010
MAX_CUSHION_S = 0.120
CUSHION_MARGIN_S = 0.010
CUSHION_UP_S = 0.020  # added after an underrun
PAUSE_S = 0.5  # an output this much later than its predecessor's end: a pause, not jitter
PRIOR_HALF_LIFE_WRITES = 25  # the first cushion's assumption halves in 5 s
SILENCE_LEVEL = 10 ** (-50 / 20)  # queued samples all quieter than -50 dBFS may be skipped
OPUS_SILENCE = b"\xf8\xff\xfe"  # a 20 ms Opus frame of silence (CELT, mono), if the encoder is mute
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE_HZ)


class LoopJitter:
    """How late outputs reach the calls of one process: a peak that halves every
    `half_life_s`, shared by their outbound tracks. The calls of a process wait on one event loop
    and (remote or in process) one engine, so a slow step or a busy loop delays every call's next
    output alike: what one call learns (an output later than its cushion, an underrun) sets the
    cushion of all, and a new call starts at the cushion the others have learnt rather than at
    the first-cushion guess."""

    def __init__(self, half_life_s: float = 60.0) -> None:  # 300 outputs of 200 ms
        self.half_life_s = half_life_s
        self._peak_s = 0.0
        self._at: float | None = None

    def peak(self, now: float) -> float:
        if self._at is None:
            return 0.0
        return self._peak_s * 0.5 ** (max(0.0, now - self._at) / self.half_life_s)

    def observe(self, lateness_s: float, now: float) -> float:
        """Fold in one lateness; the peak now."""
        self._peak_s = max(self.peak(now), lateness_s)
        self._at = now if self._at is None else max(self._at, now)
        return self._peak_s


@dataclass
class AudioOutStats:
    frames_sent: int = 0
    silent_frames: int = 0
    underruns: int = 0  # the ring ran dry while primed (outputs came later than the cushion)
    audible_underruns: int = 0  # ... right after a frame with sound in it: a gap a listener hears
    cushion_ms: float = PLAYOUT_MARGIN_S * 1000  # the cushion now
    max_cushion_ms: float = PLAYOUT_MARGIN_S * 1000  # the largest it adapted to
    dropped_samples: int = 0  # oldest samples dropped because the ring was full
    flushes: int = 0
    skipped_silence_samples: int = 0  # queued silence skipped to bring the delay back down


class SampleRing:
    """Bounded FIFO of float32 samples tagged with the micro-turn they came from."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._start = 0
        self._size = 0
        self._segments: deque[list[int]] = deque()  # [microturn, samples left, total], in order

    def __len__(self) -> int:
        return self._size

    def write(self, samples: np.ndarray, microturn: int) -> int:
        """Append; returns how many of the oldest samples were dropped to make room."""
        samples = samples[-self.capacity :]
        dropped = max(0, self._size + len(samples) - self.capacity)
        if dropped:
            self._discard(dropped)
        end = (self._start + self._size) % self.capacity
        first = min(len(samples), self.capacity - end)
        self._buf[end : end + first] = samples[:first]
        self._buf[: len(samples) - first] = samples[first:]
        self._size += len(samples)
        self._segments.append([microturn, len(samples), len(samples)])
        return dropped

    def read(self, n: int) -> tuple[np.ndarray, tuple[int, int] | None]:
        """Up to n samples (zero-padded to n), and where the last real sample read came from:
        (micro-turn, samples of that micro-turn's output read so far), None if nothing was read."""
        take = min(n, self._size)
        out = np.zeros(n, dtype=np.float32)
        first = min(take, self.capacity - self._start)
        out[:first] = self._buf[self._start : self._start + first]
        out[first:take] = self._buf[: take - first]
        last = self._discard(take)
        return out, last

    def _discard(self, n: int) -> tuple[int, int] | None:
        self._start = (self._start + n) % self.capacity
        self._size -= n
        last = None
        while n > 0 and self._segments:
            seg = self._segments[0]
            used = min(n, seg[1])
            seg[1] -= used
            n -= used
            last = (seg[0], seg[2] - seg[1])
            if seg[1] == 0:
                self._segments.popleft()
        return last

    def clear(self) -> None:
        self._start = self._size = 0
        self._segments.clear()

    def quiet(self, n: int, level: float) -> bool:
        """The oldest n samples are all below `level` (silence, which may be skipped)."""
        n = min(n, self._size)
        first = min(n, self.capacity - self._start)
        head = self._buf[self._start : self._start + first]
        tail = self._buf[: n - first]
        return bool(np.all(np.abs(head) < level) and np.all(np.abs(tail) < level))

    def skip(self, n: int) -> None:
        """Drop the oldest n samples (they are never sent)."""
        self._discard(min(n, self._size))


class PacedAudio(MediaStreamTrack):
    """An outbound audio track's ring, cushion and pacing: 20 ms of 16 kHz mono every 20 ms on the
    monotonic clock (`_next_pcm`); its subclasses say what leaves: samples or Opus packets."""

    kind = "audio"

    def __init__(
        self, capacity_s: float = RING_CAPACITY_S, jitter: LoopJitter | None = None
    ) -> None:
        super().__init__()
        self._jitter = jitter or LoopJitter()  # the process's, shared with its other calls
        self._ring = SampleRing(int(capacity_s * SAMPLE_RATE_HZ))
        self._start: float | None = None
        self._frames = 0
        self._primed = False
        self._prime_at: float | None = None
        # where the newest sample handed to the sender came from: (micro-turn, samples into it)
        self.sent_position: tuple[int, int] | None = None
        self.stats = AudioOutStats()
        self.cushion_s = PLAYOUT_MARGIN_S
        # what the first cushion assumes before anything was measured (fades faster)
        self._prior_s = PLAYOUT_MARGIN_S - CUSHION_MARGIN_S
        self._last_write: tuple[float, float] | None = None  # (when, seconds of audio written)
        self._last_frame = np.zeros(0, dtype=np.float32)  # the last 20 ms read from the ring
        self._ran_dry = False  # an underrun since the last write

    def write(
        self, samples: np.ndarray, microturn: int, now: float | None = None, speaking: bool = False
    ) -> None:
        """Queue one output. `speaking`: the model is mid-utterance (its pauses are kept whole)."""
        now = time.monotonic() if now is None else now
        if self._last_write is not None:
            when, length = self._last_write
            lateness = now - when - length
            if lateness <= PAUSE_S:
                self._adapt_cushion(max(0.0, lateness), now, underrun=self._ran_dry)
            else:  # far later than jitter: the outputs paused (a suspended call, a moved session)
                self._adapt_cushion(0.0, now)
        else:
            self._adapt_cushion(0.0, now)  # a new call starts at the cushion the others learnt
        self._last_write = (now, len(samples) / SAMPLE_RATE_HZ)
        self._ran_dry = False
        if not speaking:
            self._trim_silence()
        self.stats.dropped_samples += self._ring.write(samples.astype(np.float32), microturn)

    def _trim_silence(self) -> None:
        """Keep what is queued at the cushion: when outputs come earlier than when the track was
        primed (the grace or the cushion came down, a step got faster), the surplus waits in
        the ring and every later sample is heard that much later. Silence is skipped to catch
        up; speech is never cut."""
        excess = len(self._ring) - int(self.cushion_s * SAMPLE_RATE_HZ)
        if self._primed and excess >= FRAME_SAMPLES and self._ring.quiet(excess, SILENCE_LEVEL):
            self._ring.skip(excess)
            self.stats.skipped_silence_samples += excess

    def _adapt_cushion(self, lateness_s: float, now: float, underrun: bool = False) -> None:
        if underrun:
            lateness_s = max(lateness_s, self.cushion_s + CUSHION_UP_S - CUSHION_MARGIN_S)
        self._prior_s *= 0.5 ** (1 / PRIOR_HALF_LIFE_WRITES)
        cushion = max(self._jitter.observe(lateness_s, now), self._prior_s) + CUSHION_MARGIN_S
        self.cushion_s = min(MAX_CUSHION_S, max(MIN_CUSHION_S, cushion))
        self.stats.cushion_ms = round(self.cushion_s * 1000, 1)
        self.stats.max_cushion_ms = max(self.stats.max_cushion_ms, self.stats.cushion_ms)

    def flush(self) -> None:
        """Barge-in: forget everything queued; the next frame sent is silence."""
        self._ring.clear()
        self._primed = False
        self._prime_at = None
        self.stats.flushes += 1

    @property
    def queued_ms(self) -> float:
        return len(self._ring) * 1000 / SAMPLE_RATE_HZ

    async def _next_pcm(self) -> tuple[np.ndarray, int]:
        """The next 20 ms frame, when it is due: int16 [1, 320] and its pts (16 kHz samples)."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self._frames * AUDIO_PTIME_S
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.5:
                # We were starved of the loop for long: restart pacing instead of bursting frames.
                self._start = now - self._frames * AUDIO_PTIME_S
        samples = self._next_samples(time.monotonic())
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).reshape(1, -1)
        pts = self._frames * FRAME_SAMPLES
        self._frames += 1
        self.stats.frames_sent += 1
        return pcm, pts

    def _next_samples(self, now: float) -> np.ndarray:
        if not self._primed:
            if len(self._ring) == 0:
                self._prime_at = None
            elif self._prime_at is None:
                self._prime_at = now + self.cushion_s
            if self._prime_at is None or now < self._prime_at:
                self.stats.silent_frames += 1
                return np.zeros(FRAME_SAMPLES, dtype=np.float32)
            self._primed = True
        if len(self._ring) < FRAME_SAMPLES:
            self.stats.underruns += 1
            self.stats.audible_underruns += bool(np.any(np.abs(self._last_frame) >= SILENCE_LEVEL))
            self._ran_dry = True  # the next output says whether it was late or paused
            self._primed = False
            self._prime_at = None
        samples, position = self._ring.read(FRAME_SAMPLES)
        self._last_frame = samples
        if position is not None:
            self.sent_position = position
        return samples


class PacedAudioTrack(PacedAudio):
    """20 ms frames of 16 kHz mono samples (aiortc resamples and encodes them on a thread)."""

    async def recv(self) -> av.AudioFrame:
        pcm, pts = await self._next_pcm()
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame


class OpusAudioTrack(PacedAudio):
    """A call's outbound track: each 20 ms leaves as an Opus packet encoded here, on the loop
    (media/opus.py); aiortc's sender only packs it into RTP."""

    def __init__(
        self, capacity_s: float = RING_CAPACITY_S, jitter: LoopJitter | None = None
    ) -> None:
        super().__init__(capacity_s, jitter)
        self._opus = OpusPacketizer()

    async def recv(self) -> av.Packet:
        pcm, pts = await self._next_pcm()
        packet = self._opus.encode(pcm, pts)
        if packet is None:  # not seen with libopus (one packet per frame); never leave a hole
            packet = av.Packet(OPUS_SILENCE)
            packet.pts, packet.time_base = pts, TIME_BASE
        return packet
