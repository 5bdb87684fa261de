"""A model of your own, served by Microturn: it says back what it heard one second ago.

Deliberately unlike the reference model: its state is a ring of the last five micro-turns of
audio per slot, it has one weight (a gain, in weights.safetensors) and no text. Serve it with
`microturn serve --model DIR`, where DIR/config.json is {"class": "examples.delay_model:DelayModel"}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput, ModelSpec, Reply, Session

DELAY = 5  # micro-turns: 1 s


class Turns:
    """Per-call state beyond the tensors: how many micro-turns this call has had."""

    def __init__(self) -> None:
        self.count = 0

    def accept(self, inp: MicroTurnInput) -> None: ...
    def take_turn(self) -> None: ...
    def reset(self) -> None:
        self.count = 0

    def stats(self) -> Mapping[str, int]:
        return {"heard": self.count}


class DelayModel:
    def __init__(self, gain: float = 1.0) -> None:
        self.gain = torch.tensor(gain)
        self.spec = ModelSpec(name="delay-echo", frame_size=16, says_text=False)

    @classmethod
    def from_checkpoint(cls, path: Path) -> DelayModel:
        return cls(float(load_file(str(path / "weights.safetensors"))["gain"]))

    def save(self, path: Path) -> None:
        save_file({"gain": self.gain}, str(path / "weights.safetensors"))
        (path / "config.json").write_text('{"class": "examples.delay_model:DelayModel"}\n')

    def to_device(self, device: torch.device) -> None:
        self.gain = self.gain.to(device)

    def new_state(self, capacity: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(capacity, DELAY, MICROTURN_SAMPLES, device=device)  # [S, D, 3200]

    def reset(self, state: torch.Tensor, rows: Sequence[int]) -> None:
        state[list(rows)] = 0.0

    def new_session(self, call_id: str, seed: int) -> Session:
        return Turns()

    def step(
        self,
        state: torch.Tensor,
        rows: Sequence[int],
        inputs: Sequence[MicroTurnInput],
        sessions: Sequence[Session],
    ) -> list[Reply]:
        replies = []
        for row, inp, session in zip(rows, inputs, sessions, strict=True):
            assert isinstance(session, Turns)
            slot = session.count % DELAY  # the oldest micro-turn in this row's ring
            out = (state[row, slot] * self.gain).clamp(-1, 1).cpu().numpy()
            state[row, slot] = torch.from_numpy(inp.audio).to(state.device)
            session.count += 1
            replies.append(Reply("", out, bool(abs(out).max() > 1e-3)))
        return replies
