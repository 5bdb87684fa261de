"""Backchannels in a long telling: "uh-huh" in late pauses without taking the floor."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab.tasks.common import (
    MT,
    add_video,
    new_episode,
    utter_mts,
)
from lab.tasks.corpus import continuing
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.turn import LONG_REPLY, _sentence_parts, say_turn, take_mt
from lab.tasks.speakers import bank_voice
from lab.tasks.voice import Voice

# ---- backchannels in a long telling (listening) ----------------------------------------------------
BACKCHANNEL = "uh-huh"
BACKCHANNEL_AFTER_S = 7.0  # a pause this far into the user's turn (the turn family's are shorter)
BACKCHANNEL_HEARD_S = 0.4  # ... heard for this long gets a backchannel
BACKCHANNEL_GAP_MT = 15  # at most one every 3 s


def backchannel_mt(turn_start: int, pause: tuple[int, int], last: int | None) -> int | None:
    """The micro-turn whose output says the backchannel in a continuation pause (samples
    [a, b) of a turn that began at sample turn_start), or None when the pause gets none: it must
    begin BACKCHANNEL_AFTER_S into the turn, and the micro-turn's input must hold
    BACKCHANNEL_HEARD_S of it, all silent."""
    a, b = pause
    m = -(-(a + int(BACKCHANNEL_HEARD_S * 16_000)) // MT) - 1
    if a - turn_start < BACKCHANNEL_AFTER_S * 16_000 or (m + 1) * MT > b:
        return None
    if last is not None and m - last < BACKCHANNEL_GAP_MT:
        return None
    return m


def monologue_corpus(rng: np.random.Generator, n: int) -> Episode:
    """A long telling in open speech, by a speaker of the training bank (lab/tasks/speakers.py)."""
    from lab.tasks import speakers

    i = speakers.pick(rng)
    turns = speakers.turns_of(i)
    return monologue(
        rng, n, lambda r: continuing(turns(r)), "monologue_corpus", lambda r: speakers.voice(i)
    )


def monologue(
    rng: np.random.Generator,
    n: int,
    parts_of: Callable[[np.random.Generator], list[str]] = _sentence_parts,
    task: str = "monologue",
    voice_of: Callable[[np.random.Generator], Voice] = bank_voice,
) -> Episode:
    """The user tells something at length: 3-5 sentences, every clause and sentence but the last
    ending in a continuation pause (0.3-1.2 s, rising intonation); in a pause from 7 s into the
    telling on, once 0.4 s of it has passed, the model says "uh-huh" (a backchannel: it does not
    take the floor), at most every 3 s; after the last sentence it takes the floor with the long
    reply, as in the turn family."""
    ep, audio = new_episode(task, rng, n)
    voice = voice_of(rng)
    gain = None
    pos = int(rng.integers(2, 10)) * MT
    turns, pauses = [], []
    while pos < (n - 40) * MT:
        parts = continuing([p for _ in range(int(rng.integers(3, 6))) for p in parts_of(rng)])
        start = pos
        end, gain, said_pauses = say_turn(rng, audio, parts, pos, voice, gain, ep.heard)
        last = None
        for pause in said_pauses:
            m = backchannel_mt(start, pause, last)
            if m is not None and m < n:
                ep.say.append(Utterance(m, BACKCHANNEL, "backchannel"))
                last = m
        pauses += said_pauses
        m = take_mt(end)
        if m >= n:  # cut short by the episode's end (as in turn)
            turns.append({"start": start, "end": min(end, n * MT), "take_mt": None, "long": True})
            break
        ep.say.append(Utterance(m, LONG_REPLY, "take"))
        turns.append({"start": start, "end": end, "take_mt": m, "long": True})
        pos = (m + utter_mts(LONG_REPLY)) * MT + int(rng.uniform(0.3, 1.5) * 16000)
    ep.info.update(turns=turns, barge=[], pauses=pauses)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep
