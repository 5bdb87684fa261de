"""What crosses the boundary between a call (media, signaling) and the inference engine.

One micro-turn is 200 ms of interaction. The media side builds a `MicroTurnInput` for every slice of
the session clock; the engine answers each with a `MicroTurnOutput` holding the next 200 ms the model
says and plays. Arrays are plain numpy so the caller never touches torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MICROTURN_MS = 200
SAMPLE_RATE_HZ = 16_000
MICROTURN_SAMPLES = SAMPLE_RATE_HZ * MICROTURN_MS // 1000  # 3200


@dataclass(frozen=True)
class MicroTurnInput:
    """Everything that arrived during one 200 ms slice of a call's session clock."""

    index: int  # micro-turn number on the session clock: 0, 1, 2, ...
    audio: np.ndarray  # float32 [MICROTURN_SAMPLES], mono 16 kHz, in [-1, 1]
    # uint8 [S, S, 3] RGB at the engine's frame size; None: no new frame in this slice
    frame: np.ndarray | None = None
    # typed text (or a background result) that joins the text stream at this micro-turn
    text: str = ""
    # ms of the model's current utterance the user has heard (media/playback.py); None: silent
    played_ms: int | None = None

    def __post_init__(self) -> None:
        assert self.audio.shape == (MICROTURN_SAMPLES,), f"audio must be [{MICROTURN_SAMPLES}]"
        assert self.audio.dtype == np.float32, "audio must be float32"
        if self.frame is not None:
            assert self.frame.ndim == 3 and self.frame.shape[2] == 3, "frame must be [S, S, 3]"
            assert self.frame.dtype == np.uint8, "frame must be uint8 RGB"


@dataclass(frozen=True)
class MicroTurnOutput:
    """The model's answer to one micro-turn: the next 200 ms of text, audio and control."""

    index: int  # the micro-turn this answers
    text: str  # text emitted in this micro-turn ("" when silent)
    audio: np.ndarray  # float32 [MICROTURN_SAMPLES], mono 16 kHz
    speaking: bool  # the model is producing speech in this micro-turn
    delegate: str | None = None  # request text when the model hands work to the background model
    step_ms: float = 0.0  # wall time of the batched forward that produced this
    late: bool = False  # produced after its deadline (counted in the engine's late_steps)
    extras: dict[str, float] = field(default_factory=dict)
