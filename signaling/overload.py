"""Admission by measured load: refuse new calls when the event loop is already falling behind.

`--max-calls` is a fixed cap; the machine's real capacity depends on what else it runs (media
codecs, the model, other processes). A task measures how late the event loop wakes up (loop lag)
every 100 ms; when the recent p95 lag is above `MAX_LAG_MS`, new calls get 503 so the running ones
stay real time, instead of everyone degrading together.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

TICK_S = 0.100
WINDOW_TICKS = 50  # 5 s
MAX_LAG_MS = 80.0  # p95 loop lag above this: the loop cannot keep 20 ms audio pacing any more


class LoopLagMonitor:
    def __init__(self, max_lag_ms: float = MAX_LAG_MS) -> None:
        self.max_lag_ms = max_lag_ms
        self._lags_ms: deque[float] = deque(maxlen=WINDOW_TICKS)

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(TICK_S)
            self._lags_ms.append(max(0.0, (time.monotonic() - start - TICK_S) * 1000))

    def reset(self) -> None:
        """Forget what was measured so far (start-up: loading the model stalls the loop once;
        that is not load, and must not refuse the first calls)."""
        self._lags_ms.clear()

    @property
    def lag_p95_ms(self) -> float:
        return float(np.percentile(self._lags_ms, 95)) if self._lags_ms else 0.0

    @property
    def overloaded(self) -> bool:
        if self.max_lag_ms <= 0:
            return False
        return len(self._lags_ms) >= 10 and self.lag_p95_ms > self.max_lag_ms
