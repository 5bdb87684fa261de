"""The optimisation recipe of a stage (lr schedule, weights of the losses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Recipe:
    lr: float = 3e-3
    warmup: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0
    batch_size: int = 16
    control_pos_weight: float = 10.0
    flow_weight: float = 1.0
    flow_silent_frac: float = 0.25
    flow_draws: int = 2
    voice_weight: float = 1.0  # the voice tape's advances (config voice_window)
    word_weight: float = 0.0  # the heard-word auxiliary loss; 0: no WordHead
    floor_weight: float = 0.0  # where the user is in their turn (WordHead.floor); needs a WordHead
    # a fresh heard-word head learns this many steps on detached features before its loss
    # reaches the trunk (a random head's gradient is noise: ~75 steps of it at every fresh start)
    word_warmup: int = 100


def reweighed(mix: dict[str, float], **weights: float) -> dict[str, float]:
    """`mix` with some families' weights set, renormalised to sum to 1."""
    new = {**mix, **weights}
    total = sum(new.values())
    return {k: v / total for k, v in new.items()}
