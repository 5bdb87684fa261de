"""Inbound video: keep up with the camera, hand the model one frame per micro-turn.

Every decoded frame is read (an unread aiortc track grows its queue without bound) and remembered
with its arrival time on the session clock in a short bounded history. For micro-turn k the sampler
picks the newest frame that arrived inside slice k, centre-crops it to a square (the model sees the
middle of the picture undistorted; letterboxing would spend its few pixels on black bars) and
resizes it to the engine's frame size. A slice in which no frame arrived gets `None`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from media.clock import SessionClock

HISTORY_FRAMES = 16  # ~0.5 s at 30 fps: enough to cover one slice plus the grace period


@dataclass
class VideoInStats:
    frames: int = 0
    frames_used: int = 0
    slices_without_frame: int = 0


def to_model_frame(frame: av.VideoFrame, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to `size` x `size`: uint8 RGB [size, size, 3]."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=sw, height=sh, format="rgb24").to_ndarray()  # [sh, sw, 3]
    top, left = (sh - size) // 2, (sw - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


class VideoSampler:
    def __init__(self, clock: SessionClock, frame_size: int) -> None:
        self.clock = clock
        self.frame_size = frame_size
        self._history: deque[tuple[float, av.VideoFrame]] = deque(maxlen=HISTORY_FRAMES)
        self.stats = VideoInStats()

    def push_frame(self, frame: av.VideoFrame, arrival: float) -> None:
        self.stats.frames += 1
        self._history.append((arrival, frame))

    def pick(self, index: int) -> np.ndarray | None:
        """The model-sized frame for micro-turn `index`, or None when no frame arrived in it."""
        start, end = self.clock.slice_start(index), self.clock.slice_end(index)
        chosen = None
        for arrival, frame in self._history:
            if start <= arrival < end:
                chosen = frame  # history is in arrival order: the last match is the newest
        while self._history and self._history[0][0] < end:
            self._history.popleft()
        if chosen is None:
            self.stats.slices_without_frame += 1
            return None
        self.stats.frames_used += 1
        return to_model_frame(chosen, self.frame_size)
