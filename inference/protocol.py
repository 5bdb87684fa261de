"""The one boundary between a call (media, signaling) and the models the engine serves.

    media/signaling ── MicroTurnInput ──► Engine (slots, a thread, batching, deadlines)
                    ◄─ MicroTurnOutput ──      │  one batched step for every call that is due
                                               ▼
                                     StreamingModel.step(state, rows, inputs, sessions)
                                               │  -> one Reply per row
                                     Session: the call's decode policy, brought by the model
                                     (its text queue and decoder, when it speaks, when it
                                     delegates, its sampling noise)

A model is anything that implements `StreamingModel`: batched, preallocated state for `capacity`
rows with per-row reset, one step for any subset of rows (sessions of any ages), and a `Session`
per call. The engine never looks inside the state, the inputs' features or the outputs' meaning;
it knows slots, the engine thread, batching and deadlines. `inference.loading.load_model()`
picks the class a checkpoint's `config.json` names. Media and signaling import this module only.

Arrays are plain numpy so callers never touch torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # the boundary itself needs no torch: media and signaling never import it
    import torch

MICROTURN_MS = 200
SAMPLE_RATE_HZ = 16_000
MICROTURN_SAMPLES = SAMPLE_RATE_HZ * MICROTURN_MS // 1000  # 3200


@dataclass(frozen=True)
class MicroTurnInput:
    """Everything that arrived during one 200 ms slice of a call's session clock."""

    index: int  # micro-turn number on the session clock: 0, 1, 2, ...
    audio: np.ndarray  # float32 [MICROTURN_SAMPLES], mono 16 kHz, in [-1, 1]
    # uint8 [S, S, 3] RGB at the model's frame size; None: no new frame in this slice
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
class Reply:
    """What a model says for one row in one step (the engine adds the timing)."""

    text: str  # text emitted in this micro-turn ("" when silent)
    audio: np.ndarray  # float32 [MICROTURN_SAMPLES], mono 16 kHz
    speaking: bool  # the model is producing speech in this micro-turn
    delegate: str | None = None  # request text when the model hands work to the background model
    end_of_utterance: bool = False  # the model's text stream ended an utterance here


@dataclass(frozen=True)
class MicroTurnOutput:
    """The engine's answer to one micro-turn: the next 200 ms of text, audio and control."""

    index: int  # the micro-turn this answers
    text: str
    audio: np.ndarray  # float32 [MICROTURN_SAMPLES], mono 16 kHz
    speaking: bool
    delegate: str | None = None
    end_of_utterance: bool = False
    step_ms: float = 0.0  # wall time of the batched step that produced this
    late: bool = False  # produced after its deadline (counted in the engine's late_steps)
    dropped: bool = False  # never stepped: the engine was behind and dropped this input
    batch: int = 1  # calls in the step that produced this
    wait_ms: float = 0.0  # from append() to the start of that step
    # Why the model's state restarted before this micro-turn, when it did: the call's session
    # moved to another inference worker (`--inference remote`: "worker_lost", "worker_stalled",
    # "worker_stopped"); the call tells its client (docs/api.md, `session.restarted`).
    restart: str | None = None

    @classmethod
    def of(cls, index: int, reply: Reply, **timing: Any) -> MicroTurnOutput:
        return cls(
            index=index,
            text=reply.text,
            audio=reply.audio,
            speaking=reply.speaking,
            delegate=reply.delegate,
            end_of_utterance=reply.end_of_utterance,
            **timing,
        )


def silence() -> np.ndarray:
    return np.zeros(MICROTURN_SAMPLES, dtype=np.float32)


@dataclass(frozen=True)
class ModelSpec:
    """What a model takes and gives, as the engine and the media path need to know it."""

    name: str
    frame_size: int  # side in pixels of the square RGB frame it takes (media crops and scales)
    sample_rate_hz: int = SAMPLE_RATE_HZ  # of the audio it takes and gives
    microturn_ms: int = MICROTURN_MS
    says_text: bool = True  # whether Reply.text can be non-empty
    delegates: bool = False  # whether Reply.delegate can be set


@runtime_checkable
class Session(Protocol):
    """One call's decode policy, made by the model (`StreamingModel.new_session`).

    The engine calls `accept` at append() and `take_turn` when the call's next input enters a
    step, both under its lock and in order, so what a session queues and what a step consumes
    never race; `step` itself runs on the engine thread without the lock.
    """

    def accept(self, inp: MicroTurnInput) -> None:
        """Queue what an appended input brings (its text), before the engine may drop it."""
        ...

    def take_turn(self) -> None:
        """This call's next input enters a step: set aside what that step consumes."""
        ...

    def reset(self) -> None:
        """The call's model state was reset (a new call, or after a failed step)."""
        ...

    def stats(self) -> Mapping[str, int]:
        """Counters for GET /v1/calls (e.g. delegations, dropped text)."""
        ...


@runtime_checkable
class StreamingModel(Protocol):
    """What the engine serves. State is the model's own: the engine only holds it."""

    spec: ModelSpec

    def to_device(self, device: torch.device) -> None: ...

    def new_state(self, capacity: int, device: torch.device) -> Any:
        """Preallocated state for `capacity` rows (slots); nothing may grow with call length."""
        ...

    def reset(self, state: Any, rows: Sequence[int]) -> None:
        """Fresh calls in these rows."""
        ...

    def new_session(self, call_id: str, seed: int) -> Session: ...

    def step(
        self,
        state: Any,
        rows: Sequence[int],
        inputs: Sequence[MicroTurnInput],
        sessions: Sequence[Session],
    ) -> list[Reply]:
        """One micro-turn for each row, rows of any ages; advances their state. A step that
        raises fails its calls (each alone next time, so one bad row cannot fail others)."""
        ...


@dataclass(frozen=True)
class EngineStats:
    model: str
    device: str
    threads: int
    active: int
    capacity: int
    steps: int = 0
    late_steps: int = 0
    late_outputs: int = 0
    dropped_inputs: int = 0
    step_ms_p50: float = 0.0
    step_ms_p99: float = 0.0
    step_ms_max: float = 0.0
    batch_mean: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine(Protocol):
    """What a call needs of the engine (inference.engine.Engine implements it)."""

    model_name: str
    frame_size: int

    def warm_up(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def open(self, call_id: str) -> int: ...
    async def open_async(self, call_id: str) -> int:
        """open() from the event loop: what a call's setup uses (a remote engine asks its
        workers here; raises when none has room)."""
        ...

    async def append(self, slot: int, inp: MicroTurnInput) -> MicroTurnOutput: ...
    def close(self, slot: int) -> None: ...
    def session_stats(self, slot: int) -> dict[str, Any]: ...
    def stats(self) -> EngineStats: ...
