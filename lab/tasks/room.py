"""The live audio path as a training augmentation: what a browser's microphone hears and sends.

`live_path(ep, rng)` turns an episode's clean microphone into what the model gets in a call:

    the model's own voice leaking back (a speakerphone without echo cancellation: its vocoded
        voice, 30-80 ms late, -25..-10 dB)          p 0.3
    a room (reverberation, RT60 0.15-0.7 s)          p 0.3
    noise: a fan, music, distant babble, a far TV    p 0.35, -50..-20 dBFS
    the level: the whole microphone -24..+4 dB       always (speech at about -40..-6 dBFS)
    Opus at a browser's bitrate and back (its 16 kHz band; lab/tasks/codec.py), with
        1-6 % of 20 ms packets lost and concealed    p 0.2 (losses: a fifth of those; the
                                                     codec is the data worker's main cost)

Targets are unchanged: the model answers the user, never its echo or the room.

The generators here are the training world's own. The live evaluation's rooms (lab/live/
episodes.py: its fan, music and babble) are separate code with other parameters, so its noise
suite stays a held-out measurement; both are synthetic, which the README says.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve, lfilter

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from lab.tasks.episode import Episode

MT = MICROTURN_SAMPLES
SR = SAMPLE_RATE_HZ
VOCODER_DELAY = 400  # the streaming vocoder plays 25 ms behind its micro-turn


# ---- rooms and noises ------------------------------------------------------------------------------
def room_ir(rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """An impulse response: a direct path, a few early reflections, a decaying diffuse tail."""
    n = int(rt60_s * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s) * 0.3
    ir[0] = 1.0
    for _ in range(4):
        ir[int(rng.integers(40, max(41, n // 8)))] += rng.uniform(0.2, 0.6)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def reverberate(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    ir = room_ir(rng, float(rng.uniform(0.15, 0.7)))
    return fftconvolve(x, ir)[: len(x)].astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / (np.sqrt(np.mean(x**2)) + 1e-9)).astype(np.float32)


def fan(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Air and a motor: pink-ish noise through a resonance, a hum and its harmonics."""
    x = lfilter([1.0], [1.0, -rng.uniform(0.8, 0.99)], rng.standard_normal(samples))
    t = np.arange(samples) / SR
    f0 = rng.uniform(50, 180)
    hum = sum(rng.uniform(0.05, 0.3) / h * np.sin(2 * np.pi * f0 * h * t) for h in (1, 2, 3))
    return _unit(_unit(x) + hum)


def music(rng: np.random.Generator, samples: int) -> np.ndarray:
    """A melody over a bass line: plucked or sustained notes of a random timbre and tempo."""
    out = np.zeros(samples, np.float32)
    beat = rng.uniform(0.15, 0.6)
    harmonics = rng.uniform(0.1, 1.0, size=6) / np.arange(1, 7)
    decay = rng.uniform(0.5, 6.0)
    key = 220 * 2 ** (rng.integers(-12, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    for voice, octave in ((0, 1.0), (1, 0.25)):
        pos = 0
        while pos < samples:
            dur = int(beat * SR * (1 + voice) * rng.choice([1, 1, 2]))
            t = np.arange(dur) / SR
            f = key * octave * 2 ** (scale[int(rng.integers(len(scale)))] / 12)
            env = np.minimum(1.0, t / 0.01) * np.exp(-decay * t)
            note = sum(a * np.sin(2 * np.pi * f * (h + 1) * t) for h, a in enumerate(harmonics))
            end = min(samples, pos + dur)
            out[pos:end] += (env * note)[: end - pos].astype(np.float32)
            pos += dur
    return _unit(out)


def far_speech(rng: np.random.Generator, samples: int, talkers: int) -> np.ndarray:
    """People talking among themselves, away from the microphone (corpus sentences in training
    voices), low-passed and reverberant: speech nobody addresses to the model."""
    from lab.tasks.speakers import utterance
    from lab.tasks.voice import speech

    out = np.zeros(samples, np.float32)
    for _ in range(talkers):
        pos = int(rng.integers(0, SR))
        while pos < samples:
            voice, text = utterance(rng)
            clip = speech(text, voice)
            end = min(samples, pos + len(clip))
            out[pos:end] += clip[: end - pos] * rng.uniform(0.5, 1.0)
            pos = end + int(rng.uniform(0.1, 1.5) * SR)
    out = lfilter([0.3], [1.0, -0.7], out).astype(np.float32)
    return _unit(reverberate(rng, out))


NOISES = ("fan", "music", "babble", "tv")


def noise(rng: np.random.Generator, samples: int, kind: str | None = None) -> np.ndarray:
    """Unit-RMS noise of a kind (random if None)."""
    kind = kind or NOISES[int(rng.integers(len(NOISES)))]
    if kind == "fan":
        return fan(rng, samples)
    if kind == "music":
        return music(rng, samples)
    if kind == "babble":
        return far_speech(rng, samples, int(rng.integers(3, 6)))
    return _unit(far_speech(rng, samples, 1) + 0.5 * music(rng, samples))  # a far TV


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (_unit(x) * 10 ** (dbfs / 20)).astype(np.float32)


# ---- the model's own voice, as the listener's speaker plays it ---------------------------------------
@lru_cache(maxsize=1024)
def model_voice_played(text: str) -> np.ndarray:
    """The model's phrase as a call plays it: its teacher mel through the streaming vocoder
    (cached on disk beside the speech renders: ~0.3 s of Griffin-Lim each)."""
    import hashlib
    import os

    from lab.tasks.voice import MODEL_VOICE, cache_dir

    key = f"played|{text}|{MODEL_VOICE}"
    path = cache_dir() / f"p{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        audio = _vocoded(text)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, audio)
        os.replace(tmp, path)
        return audio


def _vocoded(text: str) -> np.ndarray:
    import torch

    from inference.vocoder import CTX_FRAMES, TAIL_SAMPLES, StreamingGriffinLim
    from lab.tasks.voice import model_mel

    voc = StreamingGriffinLim()
    mel = torch.from_numpy(model_mel(text)).view(-1, 16, 80)
    tail = torch.zeros(1, TAIL_SAMPLES)
    ctx = torch.full((1, CTX_FRAMES, 80), -7.0)
    chunks = []
    with torch.no_grad():
        for k in range(mel.shape[0] + 1):
            m = mel[k : k + 1] if k < mel.shape[0] else torch.full((1, 16, 80), -7.0)
            a, tail, ctx = voc.stream(m, tail, ctx, 8)
            chunks.append(a[0].numpy())
    return np.concatenate(chunks)[VOCODER_DELAY:].astype(np.float32)


def own_voice(ep: Episode) -> np.ndarray:
    """What the model says in the episode (its targets), as played: the phrases at their
    micro-turns, cut where a barge-in silences it."""
    out = np.zeros(ep.n * MT, np.float32)
    for utt in ep.say:
        if not utt.mel or utt.mt >= ep.n:
            continue
        clip = model_voice_played(utt.text)
        a = utt.mt * MT + VOCODER_DELAY
        b = min(len(out), a + len(clip))
        out[a:b] += clip[: b - a]
    for a, b in ep.silence:
        out[a * MT : b * MT] = 0.0
    return out


# ---- the codec ---------------------------------------------------------------------------------------
def lose_packets(rng: np.random.Generator, x: np.ndarray, rate: float) -> np.ndarray:
    """20 ms packets lost at `rate`, concealed as a decoder does without the packet: the last
    good 20 ms faded and repeated (WebRTC's NetEq expands the same way, roughly)."""
    frame = SR // 50
    y = x.copy()
    for i in range(frame, len(x) - frame, frame):
        if rng.random() < rate:
            y[i : i + frame] = y[i - frame : i] * np.linspace(0.9, 0.4, frame, dtype=np.float32)
    return y


# ---- the whole path ----------------------------------------------------------------------------------
def live_path(ep: Episode, rng: np.random.Generator, strength: float = 1.0) -> None:
    """The episode's microphone through echo, room, noise, level and codec (in place).
    `strength` scales every probability (0: nothing happens, no draws change the episode)."""
    if strength <= 0:
        return
    from lab.tasks.codec import BROWSER_BITRATES, opus_roundtrip_16k

    x = ep.mic().copy()
    if rng.random() < 0.3 * strength:
        x = reverberate(rng, x)
    if rng.random() < 0.3 * strength and ep.say:
        echo = own_voice(ep)
        delay = int(rng.uniform(0.03, 0.08) * SR)
        gain = 10 ** (rng.uniform(-25, -10) / 20)
        x[delay:] += gain * echo[: len(x) - delay]
    if rng.random() < 0.35 * strength:
        x += at_dbfs(noise(rng, len(x)), float(rng.uniform(-50, -20)))
    x *= 10 ** (rng.uniform(-24, 4) / 20)
    if rng.random() < 0.2 * strength:
        bitrate = int(rng.choice([16_000, *BROWSER_BITRATES]))
        x = opus_roundtrip_16k(np.clip(x, -1, 1), bitrate)
        if rng.random() < 0.2:
            x = lose_packets(rng, x, float(rng.uniform(0.01, 0.06)))
    ep.audio = np.clip(x, -1.0, 1.0).astype(np.float32)
    ep.info["live_path"] = True
