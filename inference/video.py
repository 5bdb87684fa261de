"""Video in: one 40x40 RGB frame per micro-turn, one token, through an hMLP stem.

    frame uint8 [B, 40, 40, 3] ─► float in [-1, 1]
      ─► "Conv" 3->c k4 s4 [B, 10, 10, c] ─► LN ─► GELU
      ─► "Conv" c->c k2 s2 [B, 5, 5, c]   ─► LN ─► GELU
      ─► "Conv" c->d k5 s5 [B, d]         ─► LN
    no new frame ─► a learned "no frame" vector [d]

The convolutions do not overlap, so this is an MLP over the patch (Touvron et al. 2022, hMLP).
LayerNorm over channels at each position, never BatchNorm: batch statistics would couple the
concurrent sessions of one batched step. Low resolution on purpose: the model notes measured one
small frame as one token learning far better (and 4x cheaper) than four 40x40 patches of 80x80.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.config import FRAME_SIZE


class HMLPStem(nn.Module):
    """Three non-overlapping convolutions, written as linear maps on patches (same maths, fewer
    and cheaper ops at batch sizes of a few sessions; LayerNorm over channels comes for free)."""

    def __init__(self, hidden: int, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Linear(3 * 4 * 4, hidden)  # k4 s4 over 40x40 -> 10x10
        self.norm1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Linear(hidden * 2 * 2, hidden)  # k2 s2 -> 5x5
        self.norm2 = nn.LayerNorm(hidden)
        self.conv3 = nn.Linear(hidden * 5 * 5, d_model)  # k5 s5 -> 1x1
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, pixels: Tensor) -> Tensor:
        """pixels [M, 40, 40, 3] in [-1, 1] -> [M, d]."""
        assert pixels.shape[-3:] == (FRAME_SIZE, FRAME_SIZE, 3), "Shape should be [M, 40, 40, 3]"
        m = pixels.shape[0]
        # [M, 40, 40, 3] -> [M, 5, 2, 4, 5, 2, 4, 3]: (coarse y, mid y, fine y, coarse x, mid x, fine x)
        x = pixels.reshape(m, 5, 2, 4, 5, 2, 4, 3)
        x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(m, 5, 5, 2, 2, 4 * 4 * 3)
        x = F.gelu(self.norm1(self.conv1(x)))  # [M, 5, 5, 2, 2, c]
        x = F.gelu(self.norm2(self.conv2(x.flatten(-3))))  # [M, 5, 5, c]
        return self.norm3(self.conv3(x.flatten(1)))  # [M, d]


class VideoEmbedding(nn.Module):
    def __init__(self, hidden: int, d_model: int) -> None:
        super().__init__()
        self.stem = HMLPStem(hidden, d_model)
        self.no_frame = nn.Parameter(torch.zeros(d_model))

    def forward(self, frames: Tensor, has_frame: Tensor) -> Tensor:
        """frames uint8 [..., 40, 40, 3], has_frame bool [...] -> [..., d]."""
        lead = frames.shape[:-3]
        pixels = frames.reshape(-1, FRAME_SIZE, FRAME_SIZE, 3).to(self.no_frame.dtype) / 127.5 - 1.0
        emb = self.stem(pixels).reshape(*lead, -1)  # [..., d]
        return torch.where(has_frame.unsqueeze(-1), emb, self.no_frame.to(emb.dtype))


class MotionEmbedding(nn.Module):
    """What moved since the last frame seen: the difference of the two frames through an hMLP
    stem of its own (config `motion_in`). A static, cluttered background cancels out and the
    moving limbs stand out, as in the frame-difference counter the exercise suites compare
    against; the model notes saw such a channel help a small model learn motion early. Its
    output passes a gate that starts at zero, so a trained model given the input computes what
    it did before."""

    def __init__(self, hidden: int, d_model: int) -> None:
        super().__init__()
        self.stem = HMLPStem(hidden, d_model)
        self.gate = nn.Linear(d_model, d_model, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, frames: Tensor, prev: Tensor, moved: Tensor) -> Tensor:
        """frames, prev uint8 [..., 40, 40, 3]; moved bool [...] (a new frame and one before it)
        -> [..., d]; no difference (zeros) where not moved."""
        lead = frames.shape[:-3]
        dtype = self.gate.weight.dtype
        diff = (frames.to(dtype) - prev.to(dtype)) / 127.5
        diff = torch.where(moved[..., None, None, None], diff, torch.zeros_like(diff))
        return self.gate(self.stem(diff.reshape(-1, FRAME_SIZE, FRAME_SIZE, 3))).reshape(*lead, -1)


def last_seen(frames: Tensor, has_frame: Tensor) -> tuple[Tensor, Tensor]:
    """Offline: for each micro-turn, the last frame seen before it and whether there was one.
    frames [B, N, 40, 40, 3], has_frame [B, N] -> prev [B, N, 40, 40, 3], has_prev [B, N]."""
    n = has_frame.shape[1]
    idx = torch.arange(n, device=frames.device).expand_as(has_frame)
    marked = torch.where(has_frame, idx, torch.full_like(idx, -1))
    upto = torch.cummax(marked, dim=1).values  # last frame at or before m
    before = torch.cat([torch.full_like(upto[:, :1], -1), upto[:, :-1]], 1)
    gather = before.clamp_min(0)[..., None, None, None].expand_as(frames)
    return frames.gather(1, gather), before >= 0
