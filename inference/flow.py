"""Audio out: a rectified-flow head that draws 200 ms of continuous mel in one sample.

The head is MAR's SimpleMLPAdaLN: a velocity net v(x_t, t | c) of AdaLN residual MLP blocks.
x is the whole micro-turn's output, 16 frames x 80 mel bins flattened (1280), normalised per bin by
the model's `mel_mean` / `mel_std`. One multi-frame sample per micro-turn instead of one per frame
keeps the frames of a chunk coherent and costs one set of Euler steps, not four.

    c [B, d] ─► Linear ─► SiLU ─► Linear ─┐ (once per micro-turn)
    t ─► sinusoid ─► MLP ─► SiLU ─► Linear ┴─► + ─► shift, scale, gate of every block
    x_t [B, 1280] ─► Linear [B, w] ─► depth x ResBlock ─► LN, modulate ─► Linear ─► v [B, 1280]

    sampling (Euler, `steps`):  x_0 = noise (per-session seeded);  x_{i+1} = x_i + v(x_i, i/steps) / steps
    training (rectified flow):  x_t = (1 - t) noise + t x_1;        target v = x_1 - noise

Unlike MAR, conditioning and time enter the modulations as a sum of two linear maps (not one map
of their sum): the conditioning part is computed once per micro-turn and the time part once per
Euler grid, so an Euler step only runs the x path (half the weights of a step: measured 2x faster).
AdaLN modulations and the output layer start at zero (as in MAR/DiT), so an untrained head returns
its noise unchanged; the shipped untrained checkpoint relies on that to play a moderate noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

T_FREQS = 64


def timestep_features(t: Tensor, dim: int = T_FREQS) -> Tensor:
    """t [...] in [0, 1] -> [..., dim] sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        """x [..., w], mod [..., 3w] (shift, scale, gate)."""
        shift, scale, gate = mod.chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    def __init__(self, dim_x: int, cond_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.dim_x, self.width, self.depth = dim_x, width, depth
        n_mod = (3 * depth + 2) * width  # every block's shift/scale/gate + the final shift/scale
        self.x_in = nn.Linear(dim_x, width)
        self.t_mlp = nn.Sequential(
            nn.Linear(T_FREQS, T_FREQS), nn.SiLU(), nn.Linear(T_FREQS, T_FREQS)
        )
        self.c_in = nn.Linear(cond_dim, width)
        self.c_mod = nn.Linear(width, n_mod)
        self.t_mod = nn.Linear(T_FREQS, n_mod, bias=False)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(width, dim_x)

    def zero_init(self) -> None:
        """AdaLN-zero: every block starts as identity and the velocity as 0."""
        for layer in (self.c_mod, self.t_mod, self.out):
            nn.init.zeros_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def cond_mod(self, cond: Tensor) -> Tensor:
        """cond [..., d] -> [..., n_mod] (the conditioning's share of the modulations)."""
        return self.c_mod(F.silu(self.c_in(cond)))

    def time_mod(self, t: Tensor) -> Tensor:
        """t [...] -> [..., n_mod] (time's share)."""
        return self.t_mod(F.silu(self.t_mlp(timestep_features(t))))

    def velocity(self, x: Tensor, mod: Tensor) -> Tensor:
        """x [..., dim_x], mod [..., n_mod] -> v [..., dim_x]."""
        h = self.x_in(x)
        mods = mod.split(3 * self.width, dim=-1)  # depth x [.., 3w], then [.., 2w]
        for block, m in zip(self.blocks, mods, strict=False):
            h = block(h, m)
        shift, scale = mods[-1].chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x [..., dim_x], t [...], cond [..., d] -> v [..., dim_x]."""
        return self.velocity(x, self.cond_mod(cond) + self.time_mod(t))

    def sample(self, cond: Tensor, noise: Tensor, steps: int) -> Tensor:
        """Euler from noise (t=0) to data (t=1). cond [B, d], noise [B, dim_x] -> [B, dim_x]."""
        c = self.cond_mod(cond)  # [B, n_mod]
        ts = torch.arange(steps, device=cond.device, dtype=torch.float32) / steps
        t = self.time_mod(ts).to(c.dtype)  # [steps, n_mod]
        x = noise.to(c.dtype)
        for i in range(steps):
            x = x + self.velocity(x, c + t[i]) / steps
        return x


def flow_matching_loss(
    head: FlowHead, cond: Tensor, x1: Tensor, noise: Tensor, t: Tensor
) -> Tensor:
    """Rectified flow: mean squared error of the velocity. cond [N, d], x1/noise [N, dim_x], t [N]."""
    xt = (1 - t)[:, None] * noise + t[:, None] * x1
    return F.mse_loss(head(xt, t, cond), x1 - noise)
