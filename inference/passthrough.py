"""`EchoEngine`: the engine API without a model. Each micro-turn's output is its own input audio.

Used by the media latency benchmark (and `--model echo`): it measures everything but the model.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference.config import FRAME_SIZE
from inference.engine import EngineConfig, EngineFull, EngineStopped
from inference.types import MicroTurnInput, MicroTurnOutput

SPEAKING_RMS = 1e-3


class EchoEngine:
    model_name = "echo"

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.capacity = self.config.max_sessions
        self.frame_size = FRAME_SIZE
        self._slots: dict[int, dict[str, Any]] = {}
        self._running = False
        self._steps = 0

    @property
    def active(self) -> int:
        return len(self._slots)

    def warm_up(self) -> None:
        return None

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        self._running = False

    def open(self, call_id: str) -> int:
        free = [s for s in range(self.capacity) if s not in self._slots]
        if not free:
            raise EngineFull(f"all {self.capacity} slots are taken")
        self._slots[free[0]] = {"call_id": call_id, "microturns": 0}
        return free[0]

    async def append(self, slot: int, inp: MicroTurnInput) -> MicroTurnOutput:
        if not self._running:
            raise EngineStopped("the engine is not running (call start())")
        t0 = time.perf_counter()
        self._slots[slot]["microturns"] += 1
        self._steps += 1
        speaking = float(np.sqrt(np.mean(inp.audio**2))) > SPEAKING_RMS
        step_ms = (time.perf_counter() - t0) * 1000.0
        return MicroTurnOutput(inp.index, "", inp.audio.copy(), speaking, step_ms=step_ms)

    def close(self, slot: int) -> None:
        self._slots.pop(slot, None)

    def stats(self) -> dict[str, Any]:
        return {
            "model": "echo",
            "active": self.active,
            "capacity": self.capacity,
            "steps": self._steps,
            "late_steps": 0,
            "dropped_inputs": 0,
            "step_ms_p50": 0.0,
            "step_ms_p99": 0.0,
        }

    def session_stats(self, slot: int) -> dict[str, Any]:
        if slot not in self._slots:
            raise KeyError(f"slot {slot} is not open")
        return {"microturns": self._slots[slot]["microturns"], "late_steps": 0, "dropped_inputs": 0}
