"""The session clock: one timeline per call, on which every micro-turn is a fixed 200 ms slice.

Micro-turn k covers [t0 + k * 200 ms, t0 + (k + 1) * 200 ms) of the server's monotonic clock, where
t0 is the last tick of a 200 ms grid on that clock before the call's media started (`grid_tick`): every
call on the machine cuts its micro-turns at the same instants (each a grace later), so the engine,
which steps whatever has arrived, gets them in one batched step instead of one step per call at its
own phase. Audio samples and video frames are placed on this timeline by
their arrival time, so a sender that pauses or a browser clock that drifts cannot make the micro-turn
count slide away from wall time: the count is wall time divided by 200 ms, by construction.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from inference.protocol import MICROTURN_MS, MICROTURN_SAMPLES, SAMPLE_RATE_HZ

MICROTURN_S = MICROTURN_MS / 1000


def grid_tick(now: float) -> float:
    """The last instant at or before `now` on the 200 ms grid of the monotonic clock."""
    return math.floor(now / MICROTURN_S) * MICROTURN_S


class SessionClock:
    def __init__(self, t0: float | None = None, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.t0 = now() if t0 is None else t0

    def seconds(self, at: float | None = None) -> float:
        """Session time in seconds of a monotonic instant (default: now)."""
        return (self.now() if at is None else at) - self.t0

    def sample_position(self, at: float | None = None) -> float:
        """Position on the 16 kHz session timeline of a monotonic instant (default: now)."""
        return self.seconds(at) * SAMPLE_RATE_HZ

    def microturn_at(self, at: float | None = None) -> int:
        return int(self.seconds(at) // MICROTURN_S)

    def slice_start(self, index: int) -> float:
        """Monotonic instant at which micro-turn `index` begins."""
        return self.t0 + index * MICROTURN_S

    def slice_end(self, index: int) -> float:
        return self.slice_start(index + 1)

    @staticmethod
    def slice_samples(index: int) -> tuple[int, int]:
        """[start, end) sample positions of micro-turn `index` on the 16 kHz timeline."""
        return index * MICROTURN_SAMPLES, (index + 1) * MICROTURN_SAMPLES

    async def sleep_until(self, instant: float) -> None:
        delay = instant - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
