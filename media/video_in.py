"""Inbound video: keep up with the camera, hand the model one frame per micro-turn.

Every decoded frame is read (an unread aiortc track grows its queue without bound) and remembered
with its arrival time on the session clock in a short bounded history. For micro-turn k the sampler
picks the newest frame that arrived inside slice k, centre-crops it to a square (the model sees the
middle of the picture undistorted; letterboxing would spend its few pixels on black bars) and
resizes it to the engine's frame size. A slice in which no frame arrived gets `None`.

The model uses little of a camera: one small frame per micro-turn. `video_request` says how
little, and the call tells its client in `session.created` (docs/api.md): at most
VIDEO_FRAMES_PER_MICROTURN frames per micro-turn (10 a second: every 200 ms slice then holds a
frame even when arrivals jitter by most of a frame interval; at 5 a second some slices would go
without), scaled so the shorter side is about VIDEO_OVERSAMPLE x the model's frame (a clean 2:1
downscale to it after the centre crop). The demo page and the widget apply it to their sender
(web/static/client.js), so the server receives, decrypts and decodes a 107x80 picture ten times a
second instead of a camera's 640x480 at 30. Every frame that arrives is decoded all the same (VP8
and H.264 frames depend on the previous ones: there is no skipping one), but only the one chosen
for a micro-turn is ever converted and scaled.

A peer chooses its frame sizes, so the cost of a frame is capped whatever its shape: a frame of
more than MAX_FRAME_PIXELS is skipped (counted), and the intermediate scaled size is at most
MAX_ASPECT x the model's frame on its long side (a 16382x2 frame would otherwise scale to
327,640x40). The conversion runs on a small thread pool (`pick_async`), not on the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np

from inference.protocol import MICROTURN_MS
from media.clock import SessionClock

HISTORY_FRAMES = 16  # ~0.5 s at 30 fps: enough to cover one slice plus the grace period
MAX_FRAME_PIXELS = 4096 * 2304  # 4K-ish; larger frames are skipped
MAX_ASPECT = 4  # the scaled frame is at most this many model frames long before the crop

VIDEO_FRAMES_PER_MICROTURN = 2
VIDEO_OVERSAMPLE = 2

_converter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="video-in")


def video_request(frame_size: int) -> dict[str, int]:
    """What video a call wants from its client, for a model that takes `frame_size` squares:
    session.created's `video` (docs/api.md)."""
    return {
        "max_framerate": VIDEO_FRAMES_PER_MICROTURN * 1000 // MICROTURN_MS,
        "short_side_px": frame_size * VIDEO_OVERSAMPLE,
        "model_frame_px": frame_size,
    }


@dataclass
class VideoInStats:
    frames: int = 0
    frames_used: int = 0
    slices_without_frame: int = 0
    oversize: int = 0  # frames skipped for their size
    width: int = 0  # of the latest frame received
    height: int = 0


def to_model_frame(frame: av.VideoFrame, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to `size` x `size`: uint8 RGB [size, size, 3]."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    longest = size * MAX_ASPECT  # beyond that a frame is squeezed: it is absurd anyway
    sw = min(longest, max(size, round(w * scale)))
    sh = min(longest, max(size, round(h * scale)))
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
        self.stats.width, self.stats.height = frame.width, frame.height
        self._history.append((arrival, frame))

    def _choose(self, index: int) -> av.VideoFrame | None:
        start, end = self.clock.slice_start(index), self.clock.slice_end(index)
        chosen = None
        for arrival, frame in self._history:
            if start <= arrival < end:
                chosen = frame  # history is in arrival order: the last match is the newest
        while self._history and self._history[0][0] < end:
            self._history.popleft()
        if chosen is not None and chosen.width * chosen.height > MAX_FRAME_PIXELS:
            self.stats.oversize += 1
            chosen = None
        if chosen is None:
            self.stats.slices_without_frame += 1
            return None
        self.stats.frames_used += 1
        return chosen

    def pick(self, index: int) -> np.ndarray | None:
        """The model-sized frame for micro-turn `index`, or None when no frame arrived in it."""
        chosen = self._choose(index)
        return None if chosen is None else to_model_frame(chosen, self.frame_size)

    async def pick_async(self, index: int) -> np.ndarray | None:
        """`pick`, with the conversion on the video thread pool instead of the event loop."""
        chosen = self._choose(index)
        if chosen is None:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_converter, to_model_frame, chosen, self.frame_size)
