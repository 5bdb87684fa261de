"""The shipped reference model behind the `StreamingModel` protocol, with its decode policy.

    ReferenceModel  the network (inference.model.InteractionModel) as the engine serves it:
                    StreamState for `capacity` slots, a batched step, bf16 autocast on CUDA
    ReferenceSession one call's decode policy: its text-in queue (bytes + EOU, one word per
                    micro-turn), the byte decoder of what it says, the speaking rule (mean output
                    log-mel above the config's threshold), delegation (the control head, at most
                    once per cooldown, with the user's text since the last one) and the flow
                    head's noise, drawn from the call's own generator so a call's output does not
                    depend on who else is in the batch

This is the moshi split (LMModel / LMGen): the network knows tensors; what its outputs mean for a
call lives here, beside it, not in the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from inference.config import FRAME_SIZE
from inference.kvcache import Rows
from inference.model import CONTROL_DELEGATE, MEL_DIM, InteractionModel, StepInput, StreamState
from inference.protocol import MicroTurnInput, ModelSpec, Reply, Session
from inference.text import PAD, TextDecoder, TextQueue

RECENT_TEXT_CHARS = 1000
DEFAULT_MAX_TEXT_IDS = 4096  # per-session text-in queue bound (bytes + EOU marks)
DEFAULT_DELEGATE_COOLDOWN = 25  # micro-turns: at most one delegation per 5 s


class ReferenceSession:
    """One call's decode policy (see the module docstring)."""

    def __init__(
        self, model: ReferenceModel, seed: int, max_text_ids: int, delegate_cooldown: int
    ) -> None:
        self.model = model
        self.seed = seed
        self.text = TextQueue(max_text_ids)
        self.delegate_cooldown = delegate_cooldown
        self.decoder = TextDecoder()
        self.generator: torch.Generator | None = None  # made at the first step, on its device
        self.ids: list[int] = [PAD] * model.net.cfg.text_in_slots  # what the next step reads
        self.steps = 0
        self.delegations = 0
        self.last_delegate = -(10**9)
        self.user_text = ""  # received since the last delegation (bounded)
        self.said_text = ""  # what the model said lately (bounded)

    def accept(self, inp: MicroTurnInput) -> None:
        if inp.text:
            self.text.push(inp.text)
            self.user_text = (self.user_text + " " + inp.text).strip()[-RECENT_TEXT_CHARS:]

    def take_turn(self) -> None:
        self.ids = self.text.take(self.model.net.cfg.text_in_slots)

    def reset(self) -> None:
        self.generator = torch.Generator(self.model.device).manual_seed(self.seed)

    def noise(self) -> torch.Tensor:
        if self.generator is None:
            self.reset()
        return torch.randn(MEL_DIM, generator=self.generator, device=self.model.device)

    def decide(self, ids: list[int], delegate: bool, level: float, audio: np.ndarray) -> Reply:
        """One step's outputs for this call, read as text, speech and control."""
        text, eou = self.decoder.feed(ids)
        self.steps += 1
        if text:
            self.said_text = (self.said_text + text)[-RECENT_TEXT_CHARS:]
        request = None
        if delegate and self.steps - self.last_delegate >= self.delegate_cooldown:
            request = self.user_text or self.said_text[-200:] or None
            if request:
                self.user_text = ""
                self.last_delegate = self.steps
                self.delegations += 1
        speaking = level > self.model.net.cfg.speak_threshold_log10
        return Reply(text, audio, speaking, request, eou)

    def stats(self) -> Mapping[str, int]:
        return {"dropped_text_ids": self.text.dropped, "delegations": self.delegations}


class ReferenceModel:
    """`InteractionModel` as a `StreamingModel`."""

    def __init__(
        self,
        net: InteractionModel,
        *,
        max_text_ids: int = DEFAULT_MAX_TEXT_IDS,
        delegate_cooldown: int = DEFAULT_DELEGATE_COOLDOWN,
    ) -> None:
        self.net = net.eval()
        self.spec = ModelSpec(name=net.cfg.name, frame_size=FRAME_SIZE, delegates=True)
        self.device = torch.device("cpu")
        self.max_text_ids = max_text_ids
        self.delegate_cooldown = delegate_cooldown

    @classmethod
    def from_checkpoint(cls, path: str | Path | None) -> ReferenceModel:
        """path None: the shipped `small` checkpoint (inference/checkpoints/small)."""
        from inference.checkpoint import load

        return cls(load(path, device="cpu"))

    def to_device(self, device: torch.device) -> None:
        self.device = device
        self.net = self.net.to(device).eval()

    def new_state(self, capacity: int, device: torch.device) -> StreamState:
        cache_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        with torch.no_grad():
            return self.net.new_state(capacity, device, cache_dtype)

    def reset(self, state: StreamState, rows: Sequence[int]) -> None:
        self.net.reset_state(state, torch.tensor(list(rows), device=self.device))

    def new_session(self, call_id: str, seed: int) -> ReferenceSession:
        return ReferenceSession(self, seed, self.max_text_ids, self.delegate_cooldown)

    def step(
        self,
        state: StreamState,
        rows: Sequence[int],
        inputs: Sequence[MicroTurnInput],
        sessions: Sequence[Session],
    ) -> list[Reply]:
        dev = self.device
        calls = cast(Sequence[ReferenceSession], sessions)  # the sessions new_session made
        blank = np.zeros((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        step_in = StepInput(
            audio=torch.from_numpy(np.stack([i.audio for i in inputs])).to(dev),
            frames=torch.from_numpy(
                np.stack([blank if i.frame is None else i.frame for i in inputs])
            ).to(dev),
            has_frame=torch.tensor([i.frame is not None for i in inputs], device=dev),
            text_in=torch.tensor([s.ids for s in calls], dtype=torch.long, device=dev),
            index=torch.tensor([i.index for i in inputs], dtype=torch.long, device=dev),
            noise=torch.stack([s.noise() for s in calls]),
        )
        cuda = dev.type == "cuda"
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
            out = self.net.step(state, Rows.of(list(rows), dev), step_in)
        text_ids = out.text_ids.cpu().tolist()
        delegate = (out.control_logits.argmax(-1) == CONTROL_DELEGATE).cpu().tolist()
        level = out.logmel.float().mean(dim=(1, 2)).cpu().tolist()
        audio = out.audio.float().cpu().numpy()
        return [
            session.decide(text_ids[b], delegate[b], level[b], audio[b].copy())
            for b, session in enumerate(calls)
        ]
