"""What every task family uses: the micro-turn grid, the room's noise, placing utterances."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from inference.protocol import MICROTURN_SAMPLES
from lab.tasks.episode import Episode, Utterance
from lab.tasks.motion import noise_slice, random_motion, render, still_frames
from lab.tasks.vocab import NUMBER_WORDS
from lab.tasks.voice import Voice, model_mel, speech

MT = MICROTURN_SAMPLES
PER_S = 5  # micro-turns per second
AHEAD_MT = 1  # a schedule's words said this many micro-turns before they are due (scheduled())
K_IN = 8  # text-in ids per micro-turn (the small preset's text_in_slots)


def num_text(n: int, rng: np.random.Generator) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) and rng.random() < 0.25 else str(n)


# ---- audio -----------------------------------------------------------------------------------------
def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microphone noise floor: white or brown-ish noise at -70..-35 dBFS."""
    x = noise_slice(rng, n * MT)
    if rng.random() < 0.5:  # low-passed (one pole at ~250 Hz): a rumble rather than a hiss
        x = lfilter([0.1], [1.0, -0.9], x).astype(np.float32)
        x /= x.std() + 1e-9
    level = 10 ** (rng.uniform(-70, -35) / 20)
    return (x * level).astype(np.float32)


def place(audio: np.ndarray, clip: np.ndarray, at_sample: int, gain: float = 1.0) -> int:
    """Add clip at a sample offset (clipped to the episode); -> end sample."""
    a = max(0, at_sample)
    b = min(len(audio), at_sample + len(clip))
    if b > a:
        audio[a:b] += gain * clip[a - at_sample : b - at_sample]
    return at_sample + len(clip)


def speech_gain(rng: np.random.Generator, clip: np.ndarray) -> float:
    peak = float(np.abs(clip).max()) + 1e-9
    return float(10 ** (rng.uniform(-16, -3) / 20)) / peak


def add_distractor_speech(
    rng: np.random.Generator, ep: Episode, audio: np.ndarray, p: float = 0.4
) -> None:
    """Somebody talks in the room (not to the model) now and then."""
    if rng.random() >= p:
        return
    from lab.tasks.speakers import utterance

    for _ in range(int(rng.integers(1, 3))):
        voice, text = utterance(rng)
        clip = speech(text, voice)
        at = int(rng.integers(0, max(1, len(audio) - len(clip) // 2)))
        # background level (-30..-16 dB under the user's speech): the model must not answer it
        place(audio, clip, at, speech_gain(rng, clip) * rng.uniform(0.03, 0.16))


def add_video(rng: np.random.Generator, ep: Episode, p_motion: float = 0.6) -> None:
    if rng.random() < p_motion:
        motion = random_motion(rng)
        ep.frames, ep.has_frame, _, _ = render(motion, ep.n, np.ones(ep.n, bool), rng)
    elif rng.random() < 0.8:
        ep.frames, ep.has_frame = still_frames(rng, ep.n)


def utter_mts(text: str) -> int:
    """Micro-turns an utterance occupies (text and audio)."""
    text_mt = -(-(len((text + " ").encode()) + 1) // 4)
    return max(text_mt, len(model_mel(text)) // 16)


def scheduled(due: int, text: str, kind: str = "say") -> Utterance:
    """A word of a schedule ("every N seconds", "in N seconds"; not a countdown's) due in micro-turn
    `due`: said AHEAD_MT micro-turns before, as its output is heard a micro-turn after it is
    said (config `clock_ahead`)."""
    return Utterance(due - AHEAD_MT, text, kind, lead=AHEAD_MT)


def first_free(say: list[Utterance], mt: int) -> int:
    """The first micro-turn from mt on that leaves room after the previous utterance."""
    return mt if not say else max(mt, say[-1].mt + utter_mts(say[-1].text))


def fits(say: list[Utterance], mt: int) -> bool:
    """mt leaves room after the previous utterance."""
    return first_free(say, mt) == mt


def new_episode(task: str, rng: np.random.Generator, n: int) -> tuple[Episode, np.ndarray]:
    start = int(rng.integers(0, 3000)) if rng.random() < 0.7 else 0
    ep = Episode(task=task, n=n, start_index=start)
    return ep, background(rng, n)


def typed_eou(ep: Episode, mt: int) -> int:
    """Micro-turn in which the message typed at mt has fully entered the model."""
    _, eou = ep.text_in(K_IN)
    return eou.get(mt, ep.n)  # not in by the end of the episode: past it


def early_text(rng: np.random.Generator, n: int) -> int:
    """The micro-turn of a call's first typed message: often its very first (a page that types
    as soon as the call is up; text there sits on the attention's first positions), else soon."""
    if rng.random() < 0.15:
        return 0
    return int(rng.integers(1, max(2, min(n // 3, 25))))


def instruct(
    ep: Episode,
    rng: np.random.Generator,
    audio: np.ndarray,
    at: int,
    text: str,
    voice: Voice | None,
) -> int:
    """The user gives an instruction at micro-turn `at`: typed (voice None) or said aloud;
    -> the micro-turn from which the model has all of it (typed: the one its EOU enters in;
    spoken: the first after the speech ends). Typed draws nothing from rng."""
    if voice is None:
        ep.typed.append((at, text))
        return typed_eou(ep, at)
    clip = speech(text, voice)
    t0 = place(audio, clip, at * MT, speech_gain(rng, clip)) // MT + 1
    numbers = [w for w in text.split() if w.isdigit() or w in NUMBER_WORDS]
    ep.heard.append((t0, numbers[-1] if numbers else text.split()[-1]))  # what matters in it
    return t0
