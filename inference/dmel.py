"""Audio in: dMel features (Bai et al. 2024) and their embedding.

    audio [B, 3200] ─┬─ prepend the previous 400 samples (per-session tail) ─► [B, 3600]
                     └► 8 frames of 800 (hop 400) x Hann ─► |rfft 1024| [B, 8, 513]
                        ─► Slaney mel 80 (80-7600 Hz) ─► log10, clip [-7, 2]
                        ─► 16 linear bins per channel ─► bins [B, 8, 80] (int)
    bins ─► EmbeddingBag(sum over 80 (channel, bin) vectors of size e) [B, 8, e]
         ─► flatten 8 frames (keeps their order) [B, 8e] ─► Linear ─► [B, d]

With `pitch` (config `pitch_in`), each frame gets an 81st channel: its pitch relative to the
speaker's, binned (inference/pitch.py); it needs per-session state [B, 2] beside the tail.

Frame j of a call is centred on sample 400 j and sees only the past (no lookahead), so features
computed micro-turn by micro-turn equal those of the whole recording (see `dmel_bins_offline`).
The mel filterbank is written here (no torchaudio/librosa) and shared with the output side.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.config import (
    DMEL_BINS,
    DMEL_FRAMES_PER_MICROTURN,
    DMEL_HOP_SAMPLES,
    DMEL_N_FFT,
    DMEL_WIN_SAMPLES,
    LOG10_MEL_MAX,
    LOG10_MEL_MIN,
    MEL_FMAX_HZ,
    MEL_FMIN_HZ,
    N_MELS,
)
from inference.pitch import PITCH_STATE, pitch_bins
from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ

DMEL_TAIL_SAMPLES = DMEL_WIN_SAMPLES - DMEL_HOP_SAMPLES  # 400 samples carried between micro-turns


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    mel = hz / f_sp
    log_part = min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, mel)


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    hz = mel * f_sp
    log_part = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, hz)


def mel_filterbank(
    n_fft: int = DMEL_N_FFT,
    n_mels: int = N_MELS,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    fmin_hz: float = MEL_FMIN_HZ,
    fmax_hz: float = MEL_FMAX_HZ,
) -> Tensor:
    """Slaney-style mel filterbank with area normalisation (librosa's default). [n_mels, n_fft//2+1]"""
    fft_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    mels = np.linspace(
        _hz_to_mel_slaney(np.array(fmin_hz)), _hz_to_mel_slaney(np.array(fmax_hz)), n_mels + 2
    )
    edges_hz = _mel_to_hz_slaney(mels)  # [n_mels + 2]
    fdiff = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, n_freq]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    return torch.from_numpy(weights.astype(np.float32))


def log10_mel(frames: Tensor, window: Tensor, fb: Tensor, n_fft: int) -> Tensor:
    """Frames [..., win] -> clipped log10 magnitude mel [..., n_mels]."""
    mag = torch.fft.rfft(frames * window, n=n_fft).abs()  # [..., n_fft//2+1]
    mel = mag @ fb.t()  # [..., n_mels]
    return torch.log10(mel.clamp_min(10.0**LOG10_MEL_MIN)).clamp_max(LOG10_MEL_MAX)


def quantize(logmel: Tensor) -> Tensor:
    """log10 mel in [-7, 2] -> the nearest of 16 linearly spaced levels (int64)."""
    step = (LOG10_MEL_MAX - LOG10_MEL_MIN) / (DMEL_BINS - 1)
    return torch.round((logmel - LOG10_MEL_MIN) / step).long().clamp_(0, DMEL_BINS - 1)


class DMel(nn.Module):
    """The dMel featurizer: streaming (with a per-session 400-sample tail) or offline."""

    window: Tensor
    fb: Tensor

    def __init__(self, pitch: bool = False) -> None:
        super().__init__()
        self.pitch = pitch
        self.register_buffer("window", torch.hann_window(DMEL_WIN_SAMPLES), persistent=False)
        self.register_buffer("fb", mel_filterbank(), persistent=False)

    @property
    def channels(self) -> int:
        return N_MELS + int(self.pitch)

    def _bins(self, frames: Tensor, pitch_state: Tensor) -> tuple[Tensor, Tensor]:
        """frames [B, F, 800] -> (bins [B, F, channels], pitch state [B, 2])."""
        with torch.autocast(device_type=frames.device.type, enabled=False):  # bins need float32
            bins = quantize(log10_mel(frames, self.window, self.fb, DMEL_N_FFT))
        if not self.pitch:
            return bins, pitch_state
        pitch, pitch_state = pitch_bins(frames, pitch_state)
        return torch.cat([bins, pitch[..., None]], -1), pitch_state

    def stream(
        self, audio: Tensor, tail: Tensor, pitch_state: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One micro-turn. audio [B, 3200], tail [B, 400], pitch state [B, 2] (zeros at a call's
        start) -> (bins [B, 8, channels], new tail [B, 400], new pitch state)."""
        assert audio.shape[-1] == MICROTURN_SAMPLES and tail.shape[-1] == DMEL_TAIL_SAMPLES
        if pitch_state is None:
            pitch_state = audio.new_zeros(audio.shape[0], PITCH_STATE)
        x = torch.cat([tail, audio], dim=-1).float()  # [B, 3600]
        frames = x.unfold(-1, DMEL_WIN_SAMPLES, DMEL_HOP_SAMPLES)  # [B, 8, 800]
        assert frames.shape[-2] == DMEL_FRAMES_PER_MICROTURN
        bins, pitch_state = self._bins(frames, pitch_state)
        return bins, x[:, -DMEL_TAIL_SAMPLES:], pitch_state

    def offline(self, audio: Tensor) -> Tensor:
        """A whole recording. audio [B, N*3200] -> bins [B, N, 8, channels] (equal to streaming)."""
        batch, total = audio.shape
        assert total % MICROTURN_SAMPLES == 0, "audio must be whole micro-turns"
        x = F.pad(audio.float(), (DMEL_TAIL_SAMPLES, 0))
        frames = x.unfold(-1, DMEL_WIN_SAMPLES, DMEL_HOP_SAMPLES)  # [B, 8N, 800]
        bins, _ = self._bins(frames, x.new_zeros(batch, PITCH_STATE))
        return bins.view(batch, -1, DMEL_FRAMES_PER_MICROTURN, self.channels)


class DMelEmbedding(nn.Module):
    """bins [..., 8, C] -> [..., d]: summed per-(channel, bin) vectors per frame, frames
    concatenated. C = 80 mel channels (+ 1 pitch channel)."""

    offsets: Tensor

    def __init__(self, embed_dim: int, d_model: int, channels: int = N_MELS) -> None:
        super().__init__()
        self.channels = channels
        self.bag = nn.EmbeddingBag(channels * DMEL_BINS, embed_dim, mode="sum")
        self.proj = nn.Linear(DMEL_FRAMES_PER_MICROTURN * embed_dim, d_model)
        self.register_buffer(
            "offsets", torch.arange(channels, dtype=torch.long) * DMEL_BINS, persistent=False
        )

    def forward(self, bins: Tensor) -> Tensor:
        lead = bins.shape[:-2]
        idx = (bins + self.offsets).reshape(-1, self.channels)  # [M*8, C] one bag per 25 ms frame
        frames = self.bag(idx)  # [M*8, e]
        return self.proj(frames.reshape(*lead, -1))  # [..., d]
