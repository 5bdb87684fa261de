"""Saying what it was given (issue 26): background results whose values are numbers of any digits,
decimals, clock times and words it never trained on, and "say W every N seconds" with W from an
open list. What makes these learnable is the copy pointer (inference/text.py, config
`copy_memory`): the value is in the text the call received, the model points at it.

Open words: the words of WordNet 3.0's example sentences (lab/tasks/corpus.py; Debian's
wordnet-base, Princeton's WordNet licence) of 3-9 plain letters used at least three times there,
outside the tasks' own vocabulary. Split by a hash of the word: `train` (80 %) is the only one a
training family draws; `heldout` (20 %) is evaluation only.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter
from functools import lru_cache

import numpy as np

from lab.tasks.corpus import sentences
from lab.tasks.episode import Episode
from lab.tasks.families.delegate import delegate
from lab.tasks.families.timespeak import timespeak
from lab.tasks.vocab import NUMBER_WORDS, SAY_WORDS, VOCABULARY

WORD_SPLITS = ("train", "heldout")
HELDOUT_SHARE = 20  # percent of the open words held out of training
MIN_USES = 3
_WORD = re.compile(r"[a-z]{3,9}")
UNITS = (
    ("km", "miles", 0.621371),
    ("miles", "km", 1.609344),
    ("kg", "pounds", 2.204623),
    ("pounds", "kg", 0.453592),
    ("feet", "meters", 0.3048),
    ("meters", "feet", 3.28084),
    ("liters", "gallons", 0.264172),
    ("gallons", "liters", 3.785412),
    ("inches", "cm", 2.54),
    ("dollars", "euros", 0.92),
    ("euros", "dollars", 1.087),
)
CITIES = ("tokyo", "paris", "new york", "london", "sydney", "lima", "oslo", "cairo", "delhi")


def word_split(word: str) -> str:
    return "heldout" if zlib.crc32(word.encode()) % 100 < HELDOUT_SHARE else "train"


@lru_cache(maxsize=1)
def _words() -> dict[str, tuple[str, ...]]:
    uses: Counter[str] = Counter()
    for split in ("train", "dev"):
        for s in sentences(split):
            uses.update(w for w in re.findall(r"[a-z]+", s.lower()) if _WORD.fullmatch(w))
    known = {w for phrase in (*VOCABULARY, *SAY_WORDS, *NUMBER_WORDS) for w in phrase.split()}
    out: dict[str, list[str]] = {k: [] for k in WORD_SPLITS}
    for w, n in sorted(uses.items()):
        if n >= MIN_USES and w not in known:
            out[word_split(w)].append(w)
    return {k: tuple(v) for k, v in out.items()}


def open_words(split: str = "train") -> tuple[str, ...]:
    return _words()[split]


def _number(rng: np.random.Generator) -> int:
    """1 to 6 digits, the short ones as often as the long."""
    digits = int(rng.integers(1, 7))
    return int(rng.integers(10 ** (digits - 1) if digits > 1 else 0, 10**digits))


def open_request(rng: np.random.Generator, split: str = "train") -> tuple[str, str, str]:
    """(typed request, the background model's result text, the value the model says): values
    of any digits and open words (delegate.basic_request's kinds, opened up)."""
    kind = int(rng.integers(0, 5))
    if kind == 0:
        a, b = _number(rng) % 10_000, _number(rng) % 10_000
        op, word, answer = [
            ("*", "times", a * b),
            ("+", "plus", a + b),
            ("-", "minus", a - b),
        ][int(rng.integers(0, 3))]
        req = str(rng.choice([f"what is {a} {word} {b}", f"calculate {a} {op} {b}"]))
        return req, f"{a}{op}{b} = {answer}", str(answer)
    if kind == 1:
        src, dst, f = UNITS[int(rng.integers(len(UNITS)))]
        v = int(rng.integers(1, 1000))
        out = round(v * f, int(rng.integers(0, 3)))
        value = f"{out:g} {dst}"
        return f"convert {v} {src} to {dst}", f"{v} {src} = {value}", value
    if kind == 2:
        h, m = int(rng.integers(0, 24)), int(rng.integers(0, 60))
        city = str(rng.choice(CITIES))
        value = f"{h:02d}:{m:02d}"
        return f"what time is it in {city}", f"It is {value} in {city.title()}", value
    words = open_words(split)
    if kind == 3:
        topic = str(rng.choice(words))
        value = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
        return f"look up {topic} in my notes", f"From your notes: {value}", value
    n = _number(rng)
    thing = str(rng.choice(words))
    return f"how many {thing} are there", f"There are {n} {thing}", f"{n} {thing}"


def delegate_open(rng: np.random.Generator, n: int, split: str = "train") -> Episode:
    """Delegation (families/delegate.py) with an open value."""
    ep = delegate(rng, n, request=functools.partial(open_request, split=split))
    ep.task = "delegate_open"
    return ep


def timespeak_open(
    rng: np.random.Generator,
    n: int,
    split: str = "train",
    kinds: tuple[tuple[str, float], ...] = (("every", 0.6), ("once", 0.4)),
) -> Episode:
    """ "say W every N seconds" / "in N seconds say W" with W an open word."""
    return timespeak(rng, n, kinds=dict(kinds), words=open_words(split))


def delegate_talking(rng: np.random.Generator, n: int, split: str = "heldout") -> Episode:
    """A delegation whose result arrives while the user is talking to the model: the result
    waits for the end of the sentence (families/delegate.add_result_targets, `talk`).

    heldout (evaluation only): held-out values, a dev sentence in a held-out engine's (flite)
    voice from a micro-turn before the result is due (if the model delegates on time);
    train: training values, a turn of the training bank's speakers from 0-4 micro-turns before."""
    from inference.protocol import MICROTURN_SAMPLES
    from lab.tasks.common import place, speech_gain
    from lab.tasks.corpus import sentence
    from lab.tasks.speakers import utterance
    from lab.tasks.voice import flite_voice, speech

    ep = delegate(rng, n, request=functools.partial(open_request, split=split))
    ep.task = "delegate_talking" if split == "heldout" else "delegate_wait"
    assert ep.audio is not None
    if split == "heldout":
        voice, text, early = flite_voice(rng), sentence(rng, split="dev"), 1
    else:
        (voice, text), early = utterance(rng), int(rng.integers(0, 5))
    clip = speech(text, voice)
    start = ep.info["t0"] + ep.info["delay"] - early
    place(ep.audio, clip, start * MICROTURN_SAMPLES, speech_gain(rng, clip))
    ep.info.update(talk=(start, start + -(-len(clip) // MICROTURN_SAMPLES)), talk_text=text)
    return ep
