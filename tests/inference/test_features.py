"""Features and codecs: mel filterbank, dMel, the streaming vocoder, the text codec."""

from __future__ import annotations

import math

import numpy as np
import torch

from inference.config import DMEL_BINS, LOG10_MEL_MAX, LOG10_MEL_MIN, N_MELS
from inference.dmel import DMEL_TAIL_SAMPLES, DMel, mel_filterbank
from inference.text import EOU, PAD, SIL, TextDecoder, TextQueue
from inference.types import MICROTURN_SAMPLES
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


def test_dmel_streaming_equals_offline() -> None:
    dmel = DMel()
    audio = torch.randn(2, 5 * MICROTURN_SAMPLES) * 0.1
    offline = dmel.offline(audio)
    tail = torch.zeros(2, DMEL_TAIL_SAMPLES)
    for i in range(5):
        bins, tail = dmel.stream(
            audio[:, i * MICROTURN_SAMPLES : (i + 1) * MICROTURN_SAMPLES], tail
        )
        assert torch.equal(bins, offline[:, i])


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
