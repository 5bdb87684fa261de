"""`EchoModel`: the smallest StreamingModel. Each micro-turn's output is its own input audio.

Served by the same engine as any model (`--model echo`): the media latency benchmark measures
everything but a model with it, and it is the first example of the protocol (no state, no text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from inference.protocol import MicroTurnInput, ModelSpec, Reply, Session

SPEAKING_RMS = 1e-3
FRAME_SIZE = 40  # it ignores video; the media path still hands it a small frame


class _Quiet:
    """A session with nothing to remember."""

    def accept(self, inp: MicroTurnInput) -> None:
        return None

    def take_turn(self) -> None:
        return None

    def reset(self) -> None:
        return None

    def stats(self) -> Mapping[str, int]:
        return {}


class EchoModel:
    spec = ModelSpec(name="echo", frame_size=FRAME_SIZE, says_text=False)

    def to_device(self, device: torch.device) -> None:
        return None

    def new_state(self, capacity: int, device: torch.device) -> None:
        return None

    def reset(self, state: None, rows: Sequence[int]) -> None:
        return None

    def new_session(self, call_id: str, seed: int) -> Session:
        return _Quiet()

    def step(
        self,
        state: None,
        rows: Sequence[int],
        inputs: Sequence[MicroTurnInput],
        sessions: Sequence[Session],
    ) -> list[Reply]:
        return [
            Reply("", i.audio.copy(), float(np.sqrt(np.mean(i.audio**2))) > SPEAKING_RMS)
            for i in inputs
        ]
