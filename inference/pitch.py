"""Prosody in: a pitch channel beside the dMel's 80 (config `pitch_in`).

Whether a pause ends the user's turn is often heard in the intonation: a clause before a
continuation pause ends level or rising, a turn's last one falls (on espeak renders, measured: the
last 100 ms sit ~0.1 octave under the clause's median pitch before a comma, ~0.2-0.3 before a
period). Mel bins 60 Hz wide barely resolve a voice's harmonics, so the pitch is given explicitly:

    the dMel's 25 ms frames (800 samples) ─► normalised autocorrelation over lags 40-228
        (f0 400-70 Hz) ─► voiced if its best peak >= 0.5; f0 from the first peak within 0.85
        of the best (no octave-down errors) ─► log2 f0
    log2 f0 ─► minus the speaker's running reference (mean of the voiced frames so far, then an
        exponential mean over ~1 s of voiced speech; per-session state [ref, count])
    relative pitch ─► bin 0: unvoiced; bins 1-15: -0.42..+0.42 octave in steps of 0.06

The bin is one more (channel, bin) vector in each frame's EmbeddingBag (dmel.DMelEmbedding), zero
when a model first gets the channel, so it learns from there without forgetting. Streaming and
offline run the same per-frame recurrence, so their bins are equal.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from inference.config import DMEL_BINS, DMEL_WIN_SAMPLES
from inference.protocol import SAMPLE_RATE_HZ

LAG_LO = SAMPLE_RATE_HZ // 400  # 40 samples: 400 Hz
LAG_HI = SAMPLE_RATE_HZ // 70  # 228 samples: 70 Hz
VOICED_PEAK = 0.5  # normalised autocorrelation of the best peak
FIRST_PEAK = 0.85  # the first peak this close to the best one is the period
REF_RATE = 0.03  # the reference's exponential mean per voiced frame (~33 frames, ~1 s of voicing)
REL_STEP = 0.06  # octaves per bin
REL_HALF = (DMEL_BINS - 2) // 2  # 7 bins each side of the reference: +-0.42 octave
PITCH_STATE = 2  # [reference log2 f0, voiced frames heard (capped)]


def track(frames: Tensor) -> tuple[Tensor, Tensor]:
    """frames [..., 800] float32 -> (voiced [...] bool, log2 f0 [...] float, 0 where unvoiced)."""
    x = frames - frames.mean(-1, keepdim=True)
    # circular autocorrelation at n 1024: a lag tau <= 229 also picks up lag 1024 - tau >= 795 of
    # an 800-sample frame, at most 5 products: negligible, and half the cost of n 2048
    spec = torch.fft.rfft(x, n=1024)
    ac = torch.fft.irfft(spec.real.square() + spec.imag.square(), n=1024)[..., : LAG_HI + 2]
    lags = torch.arange(LAG_LO - 1, LAG_HI + 2, device=frames.device)
    overlap = (DMEL_WIN_SAMPLES - lags).float() / DMEL_WIN_SAMPLES  # unbiased: fewer terms per lag
    r = ac[..., lags] / (ac[..., :1] * overlap).clamp_min(1e-8)  # [..., L+2]
    inner = r[..., 1:-1]  # lags LAG_LO..LAG_HI
    peak = (inner >= r[..., :-2]) & (inner >= r[..., 2:])
    best = torch.where(peak, inner, torch.zeros_like(inner)).amax(-1)  # [...]
    first = (peak & (inner >= FIRST_PEAK * best[..., None])).float().argmax(-1)
    energy = ac[..., 0] / DMEL_WIN_SAMPLES
    voiced = (best >= VOICED_PEAK) & (energy > 1e-8)
    lag = (first + LAG_LO).float()
    log_f0 = torch.log2(SAMPLE_RATE_HZ / lag)
    return voiced, torch.where(voiced, log_f0, torch.zeros_like(log_f0))


def relative_bins(voiced: Tensor, log_f0: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """voiced, log_f0 [B, F] (frames in time order), state [B, 2] -> (bins [B, F] int64, state).

    Each voiced frame is binned against the reference before it, then updates it. A sequential
    recurrence over frames: numpy on the CPU (a whole training episode is ~1,700 frames)."""
    v_all, f_all = voiced.cpu().numpy(), log_f0.cpu().numpy().astype(np.float32)
    ref, count = (c.copy() for c in state.cpu().numpy().astype(np.float32).T)
    out = np.zeros(v_all.shape, dtype=np.int64)
    floor = np.float32(REF_RATE)
    for j in range(v_all.shape[1]):
        v, f = v_all[:, j], f_all[:, j]
        level = np.clip(np.round((f - ref) / np.float32(REL_STEP)), -REL_HALF, REL_HALF)
        level = np.where(count > 0, level, 0.0) + REL_HALF + 1
        out[:, j] = np.where(v, level, 0)
        rate = np.maximum(np.float32(1.0) / (count + np.float32(1.0)), floor)
        ref = np.where(v, ref + rate * (f - ref), ref).astype(np.float32)
        count = np.where(v, np.minimum(count + 1, np.float32(1.0 / REF_RATE)), count)
    new_state = np.stack([ref, count], 1).astype(np.float32)
    return (
        torch.from_numpy(out).to(voiced.device),
        torch.from_numpy(new_state).to(state.device),
    )


def pitch_bins(frames: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """frames [B, F, 800] -> (bins [B, F], the new state [B, 2])."""
    with torch.autocast(device_type=frames.device.type, enabled=False):
        voiced, log_f0 = track(frames.float())
        return relative_bins(voiced, log_f0, state.float())
