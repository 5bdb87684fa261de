"""Episodes -> the model's offline `Sequence` and the loss targets, as tensors."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from inference.config import ModelConfig
from inference.dmel import DMel
from inference.model import Sequence
from lab.tasks.episode import Episode, frames_or_blank, targets
from lab.tasks.registry import EVAL_ONLY, FAMILIES, make


@functools.cache
def _dmel(pitch: bool) -> DMel:
    return DMel(pitch)


@dataclass
class Batch:
    seq: Sequence
    control: Tensor  # [B, N] int64
    text_weight: Tensor  # [B, N] float
    speaking: Tensor  # [B, N] bool
    word: Tensor  # [B, N] int64 heard-word class (0 none, -1 unknown; episode.word_class)
    valid: Tensor  # [B, N] bool: counts in the loss (episode.ignore)
    floor: Tensor  # [B, N] int64 where the user is in their turn (-1 unknown; episode.floor_labels)
    families: list[str]


def collate(episodes: list[Episode], cfg: ModelConfig) -> Batch:
    n = max(ep.n for ep in episodes)
    assert all(ep.n == n for ep in episodes), "episodes of one batch share a length"
    tg = [targets(ep, cfg.text_in_slots, cfg.text_out_slots) for ep in episodes]
    fr = [frames_or_blank(ep) for ep in episodes]
    seq = Sequence(
        audio=torch.from_numpy(np.stack([ep.mic() for ep in episodes])),
        frames=torch.from_numpy(np.stack([f for f, _ in fr])),
        has_frame=torch.from_numpy(np.stack([h for _, h in fr])),
        text_in=torch.from_numpy(np.stack([t.text_in for t in tg])),
        index=torch.from_numpy(np.stack([ep.clock() for ep in episodes])),
        text_out=torch.from_numpy(np.stack([t.text_out for t in tg])),
        logmel_out=torch.from_numpy(np.stack([t.logmel for t in tg])),
        voice_advance=(
            torch.from_numpy(np.stack([t.voice_advance for t in tg])) if cfg.voice_window else None
        ),
    )
    with torch.no_grad():  # dMel here, in the data worker, not in the training process
        seq.bins = _dmel(cfg.pitch_in).offline(seq.audio)
    return Batch(
        seq=seq,
        control=torch.from_numpy(np.stack([t.control for t in tg])),
        text_weight=torch.from_numpy(np.stack([t.text_weight for t in tg])),
        speaking=torch.from_numpy(np.stack([t.speaking for t in tg])),
        word=torch.from_numpy(np.stack([t.word for t in tg])),
        valid=torch.from_numpy(np.stack([t.valid for t in tg])),
        floor=torch.from_numpy(np.stack([t.floor for t in tg])),
        families=[ep.task for ep in episodes],
    )


def training_batch(
    cfg: ModelConfig,
    seed: int,
    batch_size: int,
    mix: dict[str, float],
    n_range: tuple[int, int],
    live_path: float = 0.0,
    voice_warp: float = 0.0,
) -> Batch:
    """A deterministic training batch: (seed) -> the same episodes every time."""
    trainable = set(FAMILIES) - EVAL_ONLY  # held out for evaluation
    if unknown := sorted(set(mix) - trainable):  # else: idle episodes, the redraw's fallback
        raise ValueError(f"not training task families: {unknown}; families: {sorted(trainable)}")
    rng = np.random.default_rng([7, seed])
    n = int(rng.integers(n_range[0], n_range[1] + 1))
    names = sorted(mix)
    p = np.array([mix[k] for k in names], dtype=np.float64)
    p /= p.sum()
    episodes = []
    for i in range(batch_size):
        family = names[int(rng.choice(len(names), p=p))]
        ep_seed = 10_000_000 + seed * batch_size + i
        for attempt in range(3):  # a generator bug must not end a two-hour run: log, redraw
            try:
                episodes.append(
                    make(
                        family,
                        ep_seed + attempt * 7_777_777,
                        n,
                        live_path=live_path,
                        voice_warp=voice_warp,
                    )
                )
                break
            except Exception as exc:
                print(
                    f"episode {family} seed {ep_seed} n {n}: {exc!r}", file=sys.stderr, flush=True
                )
        else:
            episodes.append(make("idle", ep_seed, n))
    return collate(episodes, cfg)
