"""Waveform out: streaming Griffin-Lim from continuous log10 mel (80 bins, 12.5 ms hop), in torch.

STFT: Hann 800 (50 ms), hop 200 (12.5 ms), n_fft 800 (401 bins; no zero padding, cheaper). Frame j of the output is centred on sample
200 j; after the 16 frames of micro-turn t (j < 16 t + 16) every sample before 3200 t + 2800 has all
of its frames, so each micro-turn emits exactly 3200 final samples, 25 ms (400 samples) behind.

One micro-turn, per session, batched over sessions:

    segment = frames 16t-3 .. 16t+15 (19 frames, 4400 samples)
    [ 600 committed | 3200 emitted now             | 600 provisional ]
      ^ already played: held fixed in every iteration, so the new phases continue the old ones
    init: target magnitudes x fixed random phases, overlap-add; the committed part and last
          chunk's provisional estimate of the next 600 samples pasted in (warm start)
    repeat iters: STFT ─► keep phase, impose target magnitude ─► iSTFT (least squares OLA)
                  ─► paste the committed 600 samples back
    emit [600:3800], its first 600 samples faded in (raised cosine) from last chunk's provisional
    estimate; keep the last 600 emitted + the 600 provisional samples and the last 3 frames' mel

The 3 context frames straddle the chunk boundary: re-estimating them against the played samples
keeps the phases going, and the fade from the provisional estimate (which continues the played
samples) joins chunks without clicks (measured on a tone: the largest sample step at a join stays
within the largest elsewhere; without the fade it was 1.4x at 8 iterations). Iterations: on a
synthetic voiced signal the mel error was 3.3 dB at 2, 3.0 at 8, 2.9 at 32 (8 is the default).
The mel-to-magnitude map interpolates between filter centres (non-negative, unlike a
pseudo-inverse); bins outside 80-7600 Hz stay silent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.config import (
    MEL_FRAMES_PER_MICROTURN,
    N_MELS,
    OUT_HOP_SAMPLES,
    OUT_N_FFT,
    OUT_WIN_SAMPLES,
)
from inference.dmel import log10_mel, mel_filterbank
from inference.protocol import MICROTURN_SAMPLES

CTX_FRAMES = OUT_WIN_SAMPLES // OUT_HOP_SAMPLES - 1  # 3 earlier frames overlap the new samples
SEG_FRAMES = CTX_FRAMES + MEL_FRAMES_PER_MICROTURN  # 19
COMMITTED = CTX_FRAMES * OUT_HOP_SAMPLES  # 600 samples already played, held fixed
TAIL_SAMPLES = 2 * COMMITTED  # state: the 600 played + the 600 provisional samples after them
OUTPUT_DELAY_SAMPLES = OUT_WIN_SAMPLES // 2  # 400 = 25 ms
PHASE_SEED = 1234
OVERLAP = OUT_WIN_SAMPLES // OUT_HOP_SAMPLES  # 4
SESSIONS_PER_PASS = 4


def mel_to_magnitude_matrix(fb: Tensor) -> Tensor:
    """[n_mels, n_freq] filterbank -> [n_mels, n_freq] map from mel magnitude to linear magnitude."""
    area = fb.sum(dim=1, keepdim=True)  # mel of a flat spectrum of magnitude 1
    tri = fb / fb.amax(dim=1, keepdim=True)  # unit-height triangles
    share = tri / tri.sum(dim=0, keepdim=True).clamp_min(1e-8)  # partition of unity per bin
    return share / area


def output_log10_mel(audio: Tensor) -> Tensor:
    """Offline target mel of a waveform at the output frame rate. audio [B, N*3200] -> [B, 16N, 80].

    Frame j is centred on sample 200 j (zero padding before the start), matching the vocoder.
    """
    x = F.pad(audio, (OUT_WIN_SAMPLES // 2, OUT_WIN_SAMPLES // 2 - OUT_HOP_SAMPLES))
    frames = x.unfold(-1, OUT_WIN_SAMPLES, OUT_HOP_SAMPLES)  # [B, 16N, 800]
    window = torch.hann_window(OUT_WIN_SAMPLES, device=audio.device)
    fb = mel_filterbank(OUT_N_FFT).to(audio.device)
    return log10_mel(frames, window, fb, OUT_N_FFT)


class StreamingGriffinLim(nn.Module):
    window: Tensor
    mel_to_mag: Tensor
    inv_envelope: Tensor
    init_phase: Tensor
    fade_in: Tensor

    def __init__(self) -> None:
        super().__init__()
        window = torch.hann_window(OUT_WIN_SAMPLES)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer(
            "mel_to_mag", mel_to_magnitude_matrix(mel_filterbank(OUT_N_FFT)), persistent=False
        )
        envelope = self._overlap_add((window**2).expand(1, SEG_FRAMES, -1))  # [1, 4400]
        self.register_buffer("inv_envelope", 1.0 / envelope.clamp_min(1e-3), persistent=False)
        ramp = torch.arange(COMMITTED) / COMMITTED
        self.register_buffer("fade_in", 0.5 - 0.5 * torch.cos(torch.pi * ramp), persistent=False)
        gen = torch.Generator().manual_seed(PHASE_SEED)
        phase = torch.rand(SEG_FRAMES, OUT_N_FFT // 2 + 1, generator=gen) * 2 * torch.pi
        self.register_buffer(
            "init_phase", torch.polar(torch.ones_like(phase), phase), persistent=False
        )

    @staticmethod
    def _overlap_add(frames: Tensor) -> Tensor:
        """frames [B, F, 800] -> [B, (F-1)*200 + 800]: hop divides the window, so 4 shifted adds."""
        batch, n_frames, _ = frames.shape
        parts = frames.view(batch, n_frames, OVERLAP, OUT_HOP_SAMPLES)  # [B, F, 4, 200]
        out = frames.new_zeros(batch, n_frames + OVERLAP - 1, OUT_HOP_SAMPLES)
        for s in range(OVERLAP):
            out[:, s : s + n_frames] += parts[:, :, s]
        return out.view(batch, -1)

    def _istft(self, spec: Tensor) -> Tensor:
        """[B, 19, n_freq] complex -> least-squares segment [B, 4400]."""
        frames = torch.fft.irfft(spec, n=OUT_N_FFT) * self.window
        return self._overlap_add(frames) * self.inv_envelope

    def stream(
        self, logmel: Tensor, tail: Tensor, ctx: Tensor, iters: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """logmel [B, 16, 80], tail [B, 1200], ctx [B, 3, 80] -> audio [B, 3200], tail, ctx.

        Rows are independent; they go through in groups of SESSIONS_PER_PASS, which keeps each
        group's spectra in cache (measured per session on this CPU: 1.35 ms in groups of 4,
        2.3 ms in one group of 16).
        """
        if logmel.shape[0] <= SESSIONS_PER_PASS:
            return self._stream(logmel, tail, ctx, iters)
        parts = [
            self._stream(
                logmel[i : i + SESSIONS_PER_PASS],
                tail[i : i + SESSIONS_PER_PASS],
                ctx[i : i + SESSIONS_PER_PASS],
                iters,
            )
            for i in range(0, logmel.shape[0], SESSIONS_PER_PASS)
        ]
        audio, new_tail, new_ctx = zip(*parts, strict=True)
        return torch.cat(audio), torch.cat(new_tail), torch.cat(new_ctx)

    def _stream(
        self, logmel: Tensor, tail: Tensor, ctx: Tensor, iters: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        assert logmel.shape[1:] == (MEL_FRAMES_PER_MICROTURN, N_MELS), "Shape should be [B, 16, 80]"
        mels = torch.cat([ctx, logmel], dim=1).float()  # [B, 19, 80]
        mag = torch.pow(10.0, mels) @ self.mel_to_mag  # [B, 19, n_freq]
        committed, provisional = tail.float().split(COMMITTED, dim=1)  # [B, 600] each
        seg = self._istft(mag * self.init_phase)  # random phases ...
        seg = torch.cat([committed, provisional, seg[:, TAIL_SAMPLES:]], dim=1)  # ... warm-started
        for _ in range(iters):
            frames = seg.unfold(-1, OUT_WIN_SAMPLES, OUT_HOP_SAMPLES) * self.window  # [B, 19, 800]
            spec = torch.fft.rfft(frames, n=OUT_N_FFT)  # [B, 19, n_freq] complex
            power = (spec * spec.conj()).real  # |X|^2 (cheaper than complex abs on CPU)
            spec = spec * (mag * torch.rsqrt(power + 1e-16))  # keep the phase, impose magnitude
            seg = torch.cat([committed, self._istft(spec)[:, COMMITTED:]], dim=1)
        audio = seg[:, COMMITTED : COMMITTED + MICROTURN_SAMPLES]
        # fade in from last chunk's estimate of these samples, which continues the played ones
        head = torch.lerp(provisional, audio[:, :COMMITTED], self.fade_in)
        audio = torch.cat([head, audio[:, COMMITTED:]], dim=1)
        new_tail = torch.cat(
            [audio[:, -COMMITTED:], seg[:, COMMITTED + MICROTURN_SAMPLES :]], dim=1
        )
        return audio, new_tail, logmel[:, -CTX_FRAMES:]
