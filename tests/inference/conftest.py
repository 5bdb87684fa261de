"""Shared helpers: the `tiny` model and reproducible synthetic micro-turns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.checkpoint import init_model
from inference.config import FRAME_SIZE, preset
from inference.model import InteractionModel
from inference.protocol import MICROTURN_SAMPLES, MicroTurnInput


@pytest.fixture(scope="module")
def tiny() -> InteractionModel:
    torch.set_num_threads(1)
    return init_model(preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny_random() -> InteractionModel:
    return random_tiny()


def random_tiny(**overrides: object) -> InteractionModel:
    """A tiny model with every head random (no quiet-init biases), so text and flow do things."""
    torch.set_num_threads(1)
    model = init_model(preset("tiny", **overrides), seed=1)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        model.text_head.out.bias.zero_()  # undo the "say nothing" init
        model.mel_std.fill_(0.5)
    return model.eval()


def make_inputs(n: int, seed: int, start: int = 0, text_every: int = 4) -> list[MicroTurnInput]:
    """n micro-turns of noisy tones, a frame most turns, some typed text."""
    rng = np.random.default_rng(seed)
    t = np.arange(MICROTURN_SAMPLES) / 16_000
    out = []
    for i in range(start, start + n):
        f0 = rng.uniform(100, 800)
        audio = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(MICROTURN_SAMPLES)
        frame = rng.integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        out.append(
            MicroTurnInput(
                index=i,
                audio=audio.astype(np.float32),
                frame=None if i % 3 == 2 else frame,
                text=f"hi {i} é" if i % text_every == 1 else "",
            )
        )
    return out
