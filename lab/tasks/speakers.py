"""The training world's speakers: a fixed bank of voices, each with its own turns of open text.

A training step needs about a hundred user utterances; rendering each fresh (30-50 ms with
espeak-ng or a warm festival) made the data worker five times slower than the trainer. So the
open-speech families draw from a bank: `SPEAKERS` voices (lab/tasks/voice.random_user_voice:
espeak-ng and festival diphone voices at varied speeds and pitches), each with `TURNS` turns of
corpus text (lab/tasks/corpus.turn_parts, `train` split). Every entry is a pure function of its
index, and its renders sit in the speech cache once made:

    python -m lab.tasks.speakers          # render the whole bank (both cores, ~30 min, ~3 GB)

Training renders what is missing on demand, so the prefill only makes the first steps fast.
Augmentation (level, room, noise, codec, position, pauses) differs at every use.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextvars import ContextVar
from dataclasses import replace
from functools import lru_cache

import numpy as np

from lab.tasks.voice import Voice

SPEAKERS = 160
TURNS = 100
_BANK_SEED = 20261206


# Vocal-tract warps (lab/tasks/voice.Voice.warp) a bank voice may be heard with: the share of
# uses warped is the stage's `voice_warp` (0 before the `voices` stage: earlier stages' batches
# stay what they were).
WARPS = (0.86, 0.9, 0.94, 1.06, 1.1, 1.14)
_warp_share: ContextVar[float] = ContextVar("voice_warp", default=0.0)


@contextlib.contextmanager
def warping(share: float) -> Iterator[None]:
    """Within: that share of bank voices drawn is warped."""
    token = _warp_share.set(share)
    try:
        yield
    finally:
        _warp_share.reset(token)


def warped(v: Voice, rng: np.random.Generator) -> Voice:
    """`v`, or (with the share `warping` set) `v` with a random warp. Draws nothing at share 0."""
    share = _warp_share.get()
    if share <= 0 or rng.random() >= share:
        return v
    return replace(v, warp=float(rng.choice(WARPS)))


@lru_cache(maxsize=SPEAKERS)
def voice(i: int) -> Voice:
    from lab.tasks.voice import random_user_voice

    return random_user_voice(np.random.default_rng([_BANK_SEED, i]))


@lru_cache(maxsize=SPEAKERS * TURNS)
def turn(i: int, j: int) -> tuple[str, ...]:
    from lab.tasks.corpus import turn_parts

    return tuple(turn_parts(np.random.default_rng([_BANK_SEED, i, j])))


def pick(rng: np.random.Generator) -> int:
    return int(rng.integers(SPEAKERS))


def bank_voice(rng: np.random.Generator) -> Voice:
    """A speaker of the bank: the training families' users (their renders stay in the cache;
    the held-out families draw fresh voices instead)."""
    return warped(voice(pick(rng)), rng)


def turns_of(i: int) -> Callable[[np.random.Generator], list[str]]:
    """A `parts_of` for lab/tasks/families/turn.turn_episode: a random turn of speaker i."""

    def parts_of(rng: np.random.Generator) -> list[str]:
        return list(turn(i, int(rng.integers(TURNS))))

    return parts_of


def utterance(rng: np.random.Generator) -> tuple[Voice, str]:
    """Somebody of the bank saying one of their turns in one breath (distractors, babble)."""
    from lab.tasks.corpus import in_one_breath

    i = pick(rng)
    return warped(voice(i), rng), in_one_breath(turn(i, int(rng.integers(TURNS))))


def _render_speaker(i: int) -> int:
    from lab.tasks.corpus import continuing, in_one_breath, part_text
    from lab.tasks.voice import speech

    v = voice(i)
    texts: set[str] = set()
    for j in range(TURNS):
        parts = list(turn(i, j))
        for said in (parts, continuing(parts)):  # a turn; a sentence of a longer telling
            texts.update(part_text(p, k == len(said) - 1) for k, p in enumerate(said))
        texts.add(in_one_breath(parts))  # a barge-in
    for text in sorted(texts):
        speech(text, v)
    return len(texts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="render the training world's speaker bank")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    with ProcessPoolExecutor(args.workers) as pool:
        done = 0
        for got in tqdm(
            pool.map(_render_speaker, range(SPEAKERS)),
            total=SPEAKERS,
            desc="speakers",
            file=sys.stderr,
        ):
            done += got
    print(f"{done} renders of {SPEAKERS} speakers in the speech cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
