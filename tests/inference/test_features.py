"""Features and codecs: mel filterbank, dMel, the streaming vocoder, the text codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.config import DMEL_BINS, LOG10_MEL_MAX, LOG10_MEL_MIN, N_MELS
from inference.dmel import DMEL_TAIL_SAMPLES, DMel, mel_filterbank
from inference.pitch import PITCH_STATE, REL_HALF, track
from inference.protocol import MICROTURN_SAMPLES
from inference.text import EOU, PAD, SIL, TextDecoder, TextQueue
from inference.vocoder import (
    OUTPUT_DELAY_SAMPLES,
    TAIL_SAMPLES,
    StreamingGriffinLim,
    output_log10_mel,
)

SR = 16_000


def tone(freq_hz: float, seconds: float, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amp * torch.sin(2 * math.pi * freq_hz * t)


def test_filterbank_is_slaney_80_to_7600() -> None:
    fb = mel_filterbank()  # [80, 513]
    assert fb.shape == (N_MELS, 513)
    assert (fb >= 0).all()
    hz = torch.linspace(0, SR / 2, 513)
    support = hz[(fb > 0).any(0)]
    assert support.min() > 80 - 16 and support.max() < 7600 + 16
    # Slaney area normalisation: each triangle's area (in Hz) is 1
    areas = fb.sum(1) * (SR / 1024)
    assert torch.allclose(areas, torch.ones(N_MELS), atol=0.08)
    # centres increase monotonically
    assert (torch.diff(fb.argmax(1)) >= 0).all()


def test_dmel_tone_lands_in_its_channel_and_bins_are_16_levels() -> None:
    dmel = DMel()
    fb = mel_filterbank()
    peak_channel = int(fb[:, round(1000 / (SR / 1024))].argmax())
    bins = dmel.offline(tone(1000.0, 0.4)[None])  # [1, 2, 8, 80]
    assert bins.shape == (1, 2, 8, N_MELS)
    assert bins.min() >= 0 and bins.max() < DMEL_BINS
    frame = bins[0, 1, 4]
    assert int(frame.argmax()) in (peak_channel - 1, peak_channel, peak_channel + 1)
    silence = dmel.offline(torch.zeros(1, MICROTURN_SAMPLES))
    assert (silence == 0).all(), "silence is the lowest bin (log10 clip at -7)"
    assert LOG10_MEL_MIN == -7.0 and LOG10_MEL_MAX == 2.0


@pytest.mark.parametrize("pitch", [False, True])
def test_dmel_streaming_equals_offline(pitch: bool) -> None:
    dmel = DMel(pitch)
    n = 8
    audio = torch.randn(2, n * MICROTURN_SAMPLES) * 0.02
    audio[0] += voice(150.0, n * MICROTURN_SAMPLES / SR)  # voiced: the pitch state moves
    offline = dmel.offline(audio)
    assert offline.shape == (2, n, 8, N_MELS + pitch)
    tail, state = torch.zeros(2, DMEL_TAIL_SAMPLES), torch.zeros(2, PITCH_STATE)
    for i in range(n):
        bins, tail, state = dmel.stream(
            audio[:, i * MICROTURN_SAMPLES : (i + 1) * MICROTURN_SAMPLES], tail, state
        )
        assert torch.equal(bins, offline[:, i])
    assert bool((state[0] != 0).all()) == pitch and not state[1].any()


def voice(f0_hz: float | torch.Tensor, seconds: float, amp: float = 0.3) -> torch.Tensor:
    """A vowel-like sound: 10 harmonics of f0 (a constant or one per sample), falling 1/k."""
    n = int(seconds * SR)
    f0 = torch.full((n,), float(f0_hz)) if not isinstance(f0_hz, torch.Tensor) else f0_hz
    phase = 2 * math.pi * torch.cumsum(f0.double(), 0) / SR
    x = torch.stack([torch.sin(k * phase) / k for k in range(1, 11)]).sum(0)
    return (amp * x / x.abs().max()).float()


def test_pitch_tracks_f0_without_octave_errors() -> None:
    for f0 in (85.0, 120.0, 180.0, 260.0, 380.0):
        voiced, log_f0 = track(voice(f0, 0.2).unfold(0, 800, 400))
        assert voiced.all(), f0
        assert torch.allclose(log_f0, torch.full_like(log_f0, math.log2(f0)), atol=0.02), f0
    noise = torch.randn(5, 800) * 0.1
    silence = torch.zeros(5, 800)
    for frames in (noise, silence):
        voiced, log_f0 = track(frames)
        assert not voiced.any() and not log_f0.any()


def test_pitch_bins_are_relative_to_the_speakers_running_pitch() -> None:
    """A speaker at 150 Hz, another at 220 Hz: a level voice sits in the middle bin for both; a
    fall of 0.18 octave at the end of a phrase is 3 bins down; pauses are bin 0."""
    mid = REL_HALF + 1
    for f0 in (150.0, 220.0):
        level = voice(f0, 1.5)
        fall = voice(f0 * 2**-0.18, 0.3)
        pause = torch.zeros(8000)
        audio = torch.cat([level, fall, pause])
        audio = F.pad(audio, (0, -len(audio) % MICROTURN_SAMPLES))
        bins = DMel(pitch=True).offline(audio[None])[0, :, :, N_MELS].flatten()  # [frames]
        # frames fully inside each part (frame j covers samples 400 (j - 1) .. 400 (j + 1))
        p0 = (len(level) + len(fall)) // 400
        level_bins = bins[4 : len(level) // 400 - 1]
        fall_bins = bins[len(level) // 400 + 2 : p0 - 1]
        pause_bins = bins[p0 + 2 : p0 + 19]
        assert (len(level_bins), len(fall_bins), len(pause_bins)) == (55, 9, 17)
        assert (level_bins == mid).all(), (f0, level_bins)
        assert (fall_bins[:3] == mid - 3).all(), (f0, fall_bins)
        assert (pause_bins == 0).all(), (f0, pause_bins)


def _vocode(mel: torch.Tensor, iters: int) -> torch.Tensor:
    """Stream a [1, 16N, 80] mel through the vocoder; -> audio aligned with the mel (delay removed)."""
    voc = StreamingGriffinLim()
    tail, ctx = torch.zeros(1, TAIL_SAMPLES), torch.full((1, 3, N_MELS), LOG10_MEL_MIN)
    chunks = []
    for i in range(mel.shape[1] // 16):
        audio, tail, ctx = voc.stream(mel[:, 16 * i : 16 * i + 16], tail, ctx, iters)
        chunks.append(audio)
    out = torch.cat(chunks, 1)[:, OUTPUT_DELAY_SAMPLES:]
    return torch.cat([out, torch.zeros(1, OUTPUT_DELAY_SAMPLES)], 1)


def test_vocoder_reproduces_the_mel_of_a_voiced_signal() -> None:
    t = torch.arange(2 * SR) / SR
    phase = 2 * math.pi * torch.cumsum(130 + 20 * torch.sin(2 * math.pi * t), 0) / SR
    voiced = torch.stack([torch.sin(k * phase) / k for k in range(1, 30)]).sum(0)
    voiced = 0.3 * voiced / voiced.abs().max()
    target = output_log10_mel(voiced[None])
    audio = _vocode(target, iters=8)
    got = output_log10_mel(audio)
    active = target[:, 8:-8] > -4
    err_db = (20 * (got - target)[:, 8:-8][active]).abs().mean()
    assert err_db < 4.0, f"mean mel error {err_db:.2f} dB"
    rms_in, rms_out = voiced.pow(2).mean().sqrt(), audio.pow(2).mean().sqrt()
    assert 0.5 < rms_out / rms_in < 1.5


def test_vocoder_chunks_join_without_clicks() -> None:
    target = output_log10_mel(tone(440.0, 2.0)[None])
    audio = _vocode(target, iters=8)[0, 3200:-3200]
    step = (audio[1:] - audio[:-1]).abs()
    # chunks are emitted 400 samples behind the mel, so they join at 2800 + 3200 k here
    joins = 2799 + torch.arange(audio.numel() // MICROTURN_SAMPLES - 1) * MICROTURN_SAMPLES
    # a 440 Hz tone at 0.3 moves at most 2*pi*440/16000*0.3 = 0.052 per sample; a click is a jump
    assert step.max() < 0.08
    assert step[joins].max() < step.quantile(0.999)


def test_text_queue_is_bounded_and_decoder_handles_split_utf8() -> None:
    q = TextQueue(max_ids=10)
    q.push("héllo")  # 6 bytes + EOU
    assert q.take(4) == list(b"h\xc3\xa9l")
    assert q.take(5) == [*b"lo", EOU, PAD, PAD]
    q.push("0123456789abc")  # 14 ids > 10: the oldest 4 are dropped
    assert q.dropped == 4 and len(q.ids) == 10
    q2 = TextQueue(max_ids=100)
    q2.push("say hello\nevery 3")
    words = [q2.take(8) for _ in range(5)]
    assert words == [
        [*b"say ", PAD, PAD, PAD, PAD],
        [*b"hello\n", PAD, PAD],
        [*b"every ", PAD, PAD],
        [*b"3", EOU, *[PAD] * 6],
        [PAD] * 8,
    ]  # one word per micro-turn
    dec = TextDecoder()
    e_acute = "é".encode()
    assert dec.feed([*b"ab", e_acute[0]]) == ("ab", False)
    assert dec.feed([e_acute[1], SIL, PAD]) == ("é", False)
    assert dec.feed([*b"!", EOU, PAD]) == ("!", True)
    assert np.all(np.array([PAD, SIL, EOU]) >= 256)
