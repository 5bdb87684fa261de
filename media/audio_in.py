"""Inbound audio: decoded WebRTC frames -> 16 kHz mono on the session clock -> 200 ms micro-turns.

    aiortc AudioFrame (48 kHz stereo Opus, 20 ms)
      -> av.AudioResampler (s16, mono, 16 kHz)            `AudioInput.push_frame`
      -> placed on the session timeline by pts, anchored to arrival time   `AudioTimeline.write`
      -> micro-turn k = samples [3200 k, 3200 (k+1)), silence where nothing arrived  `take`

Anchoring: the sender's pts are contiguous even when it pauses, and its sample clock drifts from
ours. We keep `offset` (timeline position = pts + offset) such that frames land where they arrived:
a frame that arrives earlier than the anchor predicts pulls the anchor back at once (we were anchored
on a delayed frame); frames that arrive consistently later (a pause, a slower sender clock) push it
forward once their lateness has stayed above `SLEW_THRESHOLD_S` for a whole window.

A sender pause and a stall of our own process both make frames arrive very late; only the pause
should move the anchor. After a pause frames keep arriving at the sender's pace, all late; after a
stall they arrive in one burst, the last of them on time. So very late frames are held back until
`PAUSE_CONFIRM_FRAMES` of them have arrived: spread over at least `PAUSE_MIN_SPAN_S`, it was a pause
(re-anchor, then place them all at their new place, nothing lost); bunched together, a stall (place
them where they were due).

Micro-turn k is cut `grace_s` after its slice ends. Slots nobody wrote are silence and are counted
as gaps; samples for a slice already handed to the model are dropped and counted as late. The grace
adapts like a jitter buffer: it follows a slowly decaying peak of how long after its slice's end the
audio of that slice arrived (plus a margin, between `MIN_GRACE_S` and `MAX_GRACE_S`, from
`SLICE_GRACE_S` at the start), and steps
up at once when audio did arrive too late. A jittery network or a busy machine costs some latency
instead of lost audio; when it calms down, the latency comes back.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from media.clock import SessionClock

log = logging.getLogger(__name__)

TIMELINE_CAPACITY_S = 4.0  # how far ahead of the oldest untaken micro-turn audio may be placed
SLEW_WINDOW_FRAMES = 100  # 2 s of 20 ms frames: long enough to ride out a busy moment
SLEW_THRESHOLD_S = 0.020  # sustained lateness above this moves the anchor forward
# A micro-turn is cut this long after its slice ends, so audio that arrives a little behind the
# anchor (network jitter, up to SLICE_GRACE_S - SLEW_THRESHOLD_S above the best case) still makes it.
SLICE_GRACE_S = 0.060  # the first grace
MIN_GRACE_S = 0.030  # the least: a loopback or LAN call pays only what its jitter needs
MAX_GRACE_S = 0.200
GRACE_MARGIN_S = 0.020  # grace = the arrival-delay peak plus this
GRACE_UP_S = 0.020  # and at least this much more after a micro-turn whose audio arrived late
GRACE_PEAK_HALF_LIFE_TURNS = 300  # the peak halves in 60 s without new delays
PRIOR_HALF_LIFE_TURNS = 25  # the first grace's assumption halves in 5 s
PAUSE_THRESHOLD_S = 0.250  # frames this late are a sender pause or a stall of ours
PAUSE_CONFIRM_FRAMES = 5
PAUSE_MIN_SPAN_S = 0.060  # ... a pause if that many arrived spread over at least this long


@dataclass
class _Held:
    samples: np.ndarray
    pts: int
    arrival: float
    lateness: float


@dataclass
class AudioInStats:
    frames: int = 0
    samples: int = 0
    gap_samples: int = 0  # silence filled into micro-turns because nothing arrived
    gap_microturns: int = 0  # micro-turns with at least one such sample
    max_grace_ms: float = SLICE_GRACE_S * 1000  # the largest grace the timeline adapted to
    late_samples: int = 0  # arrived for a micro-turn already handed to the model
    overflow_samples: int = 0  # would land too far ahead of the timeline (dropped)
    reanchors: int = 0


class AudioTimeline:
    """A bounded ring of 16 kHz samples indexed by position on the session timeline."""

    def __init__(self, clock: SessionClock, capacity_s: float = TIMELINE_CAPACITY_S) -> None:
        self.clock = clock
        self.capacity = int(capacity_s * SAMPLE_RATE_HZ) // MICROTURN_SAMPLES * MICROTURN_SAMPLES
        self._ring = np.zeros(self.capacity, dtype=np.float32)
        self._filled = np.zeros(self.capacity, dtype=bool)
        self._taken_until = 0  # timeline position before which audio was handed out
        self._offset: float | None = None
        self._recent_lateness: deque[float] = deque(maxlen=SLEW_WINDOW_FRAMES)
        self._held: list[_Held] = []  # very late frames, until we know: pause or stall
        self.grace_s = SLICE_GRACE_S  # how long after its slice ends a micro-turn is cut
        self._late_seen = 0  # late_samples at the previous take
        self._delay_peak_s = 0.0  # decaying peak of (arrival - end of the slice the audio is for)
        # what the first grace assumes before anything was measured: it fades faster than a
        # measured peak, so a quiet call comes down to its own margins within half a minute
        self._prior_s = SLICE_GRACE_S - GRACE_MARGIN_S
        self.stats = AudioInStats()

    def write(self, samples: np.ndarray, pts_samples: int, arrival: float) -> None:
        """Place a chunk of float32 16 kHz samples whose first sample has sender pts `pts_samples`."""
        n = len(samples)
        if n == 0:
            return
        self.stats.frames += 1
        self.stats.samples += n
        arrival_pos = self.clock.sample_position(arrival)
        if self._offset is None:
            self._offset = arrival_pos - n - pts_samples
        lateness = arrival_pos - (pts_samples + n + self._offset)  # samples; > 0: later than due
        if lateness > PAUSE_THRESHOLD_S * SAMPLE_RATE_HZ:
            self._held.append(_Held(samples, pts_samples, arrival, lateness))
            if len(self._held) >= PAUSE_CONFIRM_FRAMES:
                if self._held[-1].arrival - self._held[0].arrival >= PAUSE_MIN_SPAN_S:
                    self._reanchor(min(h.lateness for h in self._held))
                self._release_held()
            return
        self._release_held()
        self._recent_lateness.append(lateness)
        if lateness < 0:
            self._offset += lateness
        elif len(self._recent_lateness) == SLEW_WINDOW_FRAMES:
            least = min(self._recent_lateness)
            if least > SLEW_THRESHOLD_S * SAMPLE_RATE_HZ:
                self._reanchor(least)
        start = round(pts_samples + self._offset)
        self._note_arrival(start, arrival)
        self._place(samples, start)

    def _release_held(self) -> None:
        if not self._held:
            return
        assert self._offset is not None
        for held in self._held:
            self._place(held.samples, round(held.pts + self._offset))
        self._held.clear()

    def _reanchor(self, shift: float) -> None:
        assert self._offset is not None
        self._offset += shift
        self._recent_lateness.clear()
        self.stats.reanchors += 1

    def _place(self, samples: np.ndarray, start: int) -> None:
        end = start + len(samples)
        if start < self._taken_until:  # the head of this chunk is for slices already handed out
            cut = min(self._taken_until - start, len(samples))
            self.stats.late_samples += cut
            samples, start = samples[cut:], start + cut
        limit = self._taken_until + self.capacity
        if end > limit:
            cut = min(end - limit, len(samples))
            self.stats.overflow_samples += cut
            samples, end = samples[: len(samples) - cut], end - cut
        if len(samples) == 0:
            return
        idx = np.arange(start, end) % self.capacity
        self._ring[idx] = samples
        self._filled[idx] = True

    def take(self, index: int) -> tuple[np.ndarray, int]:
        """Audio of micro-turn `index` (float32 [3200]) and how many of its samples were gaps."""
        start, end = SessionClock.slice_samples(index)
        idx = np.arange(start, end) % self.capacity
        if start < self._taken_until or end > self._taken_until + self.capacity:
            # Asked out of order or far ahead: nothing valid is stored for it.
            out = np.zeros(MICROTURN_SAMPLES, dtype=np.float32)
            gaps = MICROTURN_SAMPLES
        else:
            out = np.where(self._filled[idx], self._ring[idx], 0.0).astype(np.float32)
            gaps = int(MICROTURN_SAMPLES - self._filled[idx].sum())
        # Clear everything up to the end of this slice so the ring can reuse it.
        if end > self._taken_until:
            clear = np.arange(self._taken_until, end) % self.capacity
            self._filled[clear] = False
            self._ring[clear] = 0.0
            self._taken_until = end
        self.stats.gap_samples += gaps
        self.stats.gap_microturns += gaps > 0
        self._adapt_grace()
        return out, gaps

    def _note_arrival(self, start: int, arrival: float) -> None:
        """How long after the end of the slice of its first sample (the earliest deadline of a
        chunk that may straddle two slices) this audio arrived; feeds the grace."""
        slice_end = self.clock.slice_end(start // MICROTURN_SAMPLES)
        self._delay_peak_s = max(self._delay_peak_s, arrival - slice_end)

    def _adapt_grace(self) -> None:
        self._delay_peak_s *= 0.5 ** (1 / GRACE_PEAK_HALF_LIFE_TURNS)
        self._prior_s *= 0.5 ** (1 / PRIOR_HALF_LIFE_TURNS)
        grace = max(self._delay_peak_s, self._prior_s) + GRACE_MARGIN_S
        if self.stats.late_samples > self._late_seen:
            self._late_seen = self.stats.late_samples
            grace = max(grace, self.grace_s + GRACE_UP_S)
            self._delay_peak_s = max(self._delay_peak_s, grace - GRACE_MARGIN_S)
        self.grace_s = min(MAX_GRACE_S, max(MIN_GRACE_S, grace))
        self.stats.max_grace_ms = max(self.stats.max_grace_ms, self.grace_s * 1000)


class AudioInput:
    """Decodes aiortc frames into the timeline (one per call)."""

    def __init__(self, timeline: AudioTimeline) -> None:
        self.timeline = timeline
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)

    def push_frame(self, frame: av.AudioFrame, arrival: float) -> None:
        for out in self._resampler.resample(frame):
            pcm = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
            pts = int(out.pts) if out.pts is not None else None
            if pts is None:
                continue
            self.timeline.write(pcm, pts, arrival)
