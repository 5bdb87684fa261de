"""Episodes only the live evaluation draws: people the model never heard, rooms, its own echo.

    turn_open  the turn family's shape (turns with mid-sentence pauses, barge-ins) with held-out
               sentences (`OPEN_SENTENCES`, never in any training mix) in flite's voices (a TTS
               engine no training stage uses)
    noise      30 s of a fan, music or distant babble (reverberant, -35..-20 dB), or a quiet
               room: nobody talks to the model, which must stay silent
    echo       one spoken turn, then 20 s of nothing but the model's own voice coming back into
               the microphone (the page feeds it back; see lab/live/page.html): the model
               answers the turn and must not answer itself

Each is an `Episode` like the lab's, so the offline runner plays the same episodes through the
engine for the side-by-side columns. `OPEN_SENTENCES` is frozen: the held-out set is what it is.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve, lfilter

from inference.protocol import MICROTURN_SAMPLES, SAMPLE_RATE_HZ
from lab.tasks.common import new_episode, place, utter_mts
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.turn import LONG_REPLY, say_turn, turn_episode
from lab.tasks.vocab import SENTENCES
from lab.tasks.voice import espeak_voice, flite_voice, speech

MT = MICROTURN_SAMPLES
SR = SAMPLE_RATE_HZ

# Held out of training: ordinary things people say to an assistant, with the commas where a
# speaker may pause. Frozen (evaluation only): never shrink it to meet a target.
OPEN_SENTENCES = (
    "hello there, how are you doing today?",
    "I was wondering, could you help me plan a trip to the coast?",
    "so yesterday I went to the market, and they had no apples at all.",
    "what do you think, should I take the train or drive?",
    "my sister is visiting next week, and I need ideas for dinner.",
    "can you tell me, roughly, how long it takes to boil an egg?",
    "I have been learning to play the guitar, but my fingers hurt.",
    "the meeting moved to Thursday, so I have a free afternoon.",
    "honestly, I am not sure this recipe is going to work.",
    "we painted the kitchen blue, and now it looks much bigger.",
    "is it going to rain this weekend, or should I plan a picnic?",
    "I lost my keys again, um, I think they are in the car.",
    "tell me something interesting about the moon.",
    "my phone keeps running out of battery, before lunch, every day.",
    "could you remind me, what was the name of that film we talked about?",
    "I finally finished the book, and the ending surprised me.",
    "we are thinking about getting a dog, maybe a small one.",
    "the bus was late this morning, so I walked to work.",
    "do you know any good exercises, for a sore back?",
    "I would like to learn a new language, perhaps Spanish.",
    "my neighbour plays the drums, late at night, and I cannot sleep.",
    "what should I bring, to a birthday party for a five year old?",
    "I tried to fix the bike myself, but the chain keeps slipping.",
    "it is my first day at the new job, and I am a little nervous.",
)
assert not set(OPEN_SENTENCES) & set(SENTENCES), "held-out sentences must not be training's"

NOISE_KINDS = ("room", "fan", "music", "babble")


open_voice = flite_voice  # the held-out engine's speakers


def _parts(rng: np.random.Generator) -> list[str]:
    """A held-out sentence cut at its commas (the pauses), punctuation stripped as say_turn adds
    its own."""
    text = str(rng.choice(OPEN_SENTENCES)).rstrip(".?!")
    return [p.strip() for p in text.split(",") if p.strip()]


def turn_open(rng: np.random.Generator, n: int) -> Episode:
    """The turn family's shape with held-out sentences in flite voices: the model takes the floor
    after each turn (its long reply) and yields to barge-ins, then takes it again ("okay")."""
    return turn_episode(
        rng,
        n,
        "turn_open",
        open_voice,
        _parts,
        p_barge=0.5,
        barge_after_s=(0.4, 1.2),
        gap_s=(0.5, 1.5),
    )


# ---- rooms -----------------------------------------------------------------------------------------
def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def reverb(rng: np.random.Generator, x: np.ndarray, rt60_s: float) -> np.ndarray:
    """A room: convolution with exponentially decaying noise (RT60 `rt60_s`)."""
    t = np.arange(int(rt60_s * SR)) / SR
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)
    ir[0] = 1.0
    return fftconvolve(x, ir / np.sqrt(np.sum(ir**2)))[: len(x)].astype(np.float32)


def fan(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Broadband rumble with a hum: brown-ish noise plus a motor's 100-150 Hz line."""
    x = lfilter([1.0], [1.0, -0.97], rng.standard_normal(samples))
    t = np.arange(samples) / SR
    x = x / (x.std() + 1e-9) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 150) * t)
    return x.astype(np.float32)


def music(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Chords of harmonic tones changing every 0.4-1.2 s, with a soft attack and decay."""
    out = np.zeros(samples, np.float32)
    pos = 0
    while pos < samples:
        dur = int(rng.uniform(0.4, 1.2) * SR)
        t = np.arange(dur) / SR
        env = np.minimum(1.0, t / 0.02) * np.exp(-t * rng.uniform(1.0, 4.0))
        root = 110 * 2 ** (int(rng.integers(0, 24)) / 12)
        chord = sum(
            np.sin(2 * np.pi * root * r * h * t) / h for r in (1.0, 1.26, 1.5) for h in (1, 2, 3)
        )
        seg = (env * chord).astype(np.float32)
        end = min(samples, pos + dur)
        out[pos:end] += seg[: end - pos]
        pos += int(dur * rng.uniform(0.7, 1.0))
    return out


def babble(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Three or four people talking among themselves at once, far off (lab sentences in espeak
    voices): speech, but nobody speaking to the model."""
    out = np.zeros(samples, np.float32)
    for _ in range(int(rng.integers(3, 5))):
        voice = espeak_voice(rng)
        pos = int(rng.integers(0, SR))
        while pos < samples:
            clip = speech(str(rng.choice(SENTENCES)), voice)
            pos = place(out, clip, pos) + int(rng.uniform(0.1, 0.8) * SR)
    return out


def noise(rng: np.random.Generator, n: int, kind: str | None = None) -> Episode:
    """Nobody talks to the model: a quiet room (-60 dBFS) or a fan, music or babble at -35..-20
    dBFS in a reverberant room. The model must stay silent throughout."""
    kind = kind or NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    ep = Episode(task=f"noise/{kind}", n=n)
    samples = n * MT
    if kind == "room":
        x = _level(rng.standard_normal(samples).astype(np.float32), -60)
    else:
        src = {"fan": fan, "music": music, "babble": babble}[kind](rng, samples)
        x = _level(reverb(rng, src, rng.uniform(0.2, 0.6)), rng.uniform(-35, -20))
    ep.audio = x
    ep.info.update(kind=kind)
    return ep


def echo(rng: np.random.Generator, n: int) -> Episode:
    """One turn (a lab sentence in a lab voice: the model knows to answer it), then silence; the
    page feeds the model's voice back into the microphone. Scored: the model took the floor
    (else there was no echo), and spoke again unprompted in the stretch after its reply."""
    ep, audio = new_episode("echo", rng, n)
    voice = espeak_voice(rng)
    text = str(rng.choice(SENTENCES))
    start = int(rng.integers(2, 6)) * MT
    end, _, _ = say_turn(rng, audio, [text], start, voice, None, ep.heard)
    m = end // MT + 1
    ep.say.append(Utterance(m, LONG_REPLY, "take"))
    ep.info.update(
        turns=[{"start": start, "end": end, "take_mt": m, "long": True}],
        stretch_start=(m + utter_mts(LONG_REPLY) + 2) * MT,  # the reply is over
    )
    ep.audio = audio
    return ep


LIVE_FAMILIES = {"turn_open": turn_open, "noise": noise, "echo": echo}
