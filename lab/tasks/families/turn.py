"""Turn-taking and barge-in: take the floor after the turn ends, not in its pauses; yield when interrupted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab.tasks.common import (
    MT,
    add_video,
    new_episode,
    place,
    speech_gain,
    utter_mts,
)
from lab.tasks.corpus import in_one_breath, part_text
from lab.tasks.episode import Episode, Utterance
from lab.tasks.speakers import bank_voice
from lab.tasks.vocab import (
    SENTENCES,
)
from lab.tasks.voice import Voice, flite_voice, random_user_voice, speech

# ---- turn-taking and barge-in (listening) ----------------------------------------------------------
TAKE = "okay"
BARGE_HEARD = 1280  # samples (80 ms) of a barge-in the model hears before it goes quiet
TAKE_AFTER = 1600  # samples (100 ms) of silence after a turn's end heard before answering


def take_mt(end: int) -> int:
    """The micro-turn whose output takes the floor after a turn that ends at sample `end`: the
    one holding the end when 100 ms of silence follows it there, else the next (heard 0.1-0.3 s
    after the end, before the transport's ~0.25 s; until the `together` stage always the next:
    0.2-0.4 s)."""
    k = end // MT
    return k if (k + 1) * MT - end >= TAKE_AFTER else k + 1


LONG_REPLY = "let me think about that for a moment"


def _sentence_parts(rng: np.random.Generator) -> list[str]:
    words = str(rng.choice(SENTENCES)).split()
    n_parts = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    cuts = (
        sorted(rng.choice(np.arange(2, len(words) - 1), size=n_parts - 1, replace=False))
        if n_parts > 1
        else []
    )
    parts, last = [], 0
    for c in [*cuts, len(words)]:
        parts.append(" ".join(words[last:c]))
        last = int(c)
    return parts


def say_turn(
    rng: np.random.Generator,
    audio: np.ndarray,
    parts: list[str],
    pos: int,
    voice: Voice,
    gain: float | None,
    heard: list[tuple[int, str]],
) -> tuple[int, float | None, list[tuple[int, int]]]:
    """The user says a turn's parts from sample `pos` on, with a pause of 0.3-1.2 s after each
    but the last; a part before a pause ends with a comma (espeak's continuation, rising,
    intonation), the last with a period (falling). gain None: drawn from the first clip (a call
    keeps its level). Each part's last word is appended to `heard` at its end.
    -> (the sample where the turn ends, the gain, the pauses [start, end))."""
    pauses = []
    for j, part in enumerate(parts):
        clip = speech(part_text(part, j == len(parts) - 1), voice)
        if gain is None:
            gain = speech_gain(rng, clip)
        pos = place(audio, clip, pos, gain)
        heard.append((pos // MT + 1, part.split()[-1].strip(",.?!")))
        if j < len(parts) - 1:
            gap = int(rng.uniform(0.3, 1.2) * 16000)
            pauses.append((pos, pos + gap))
            pos += gap
    return pos, gain, pauses


def turn_episode(
    rng: np.random.Generator,
    n: int,
    task: str,
    voice_of: Callable[[np.random.Generator], Voice],
    parts_of: Callable[[np.random.Generator], list[str]],
    p_barge: float = 0.7,
    barge_after_s: tuple[float, float] = (0.2, 1.0),
    gap_s: tuple[float, float] = (0.3, 1.5),
) -> Episode:
    """The user speaks turns (with mid-sentence pauses of 0.3-1.2 s, whose micro-turns are held:
    their silence weighs like an answer); after each turn ends the model answers with its long
    reply; with probability `p_barge` the user barges in on it
    (`barge_after_s` into the reply), the model stops (silent from the micro-turn whose input
    holds 80 ms of the barge-in), and after the barge-in turn it says
    "okay"; the next turn starts `gap_s` after the model is done. The user's voice and what
    they say are drawn by `voice_of` and `parts_of`."""
    ep, audio = new_episode(task, rng, n)
    voice = voice_of(rng)
    gain = None
    pos = int(rng.integers(2, 10)) * MT
    turns = []
    barge = []
    pauses = []
    while pos < (n - 25) * MT:
        start = pos
        end, gain, said_pauses = say_turn(rng, audio, parts_of(rng), pos, voice, gain, ep.heard)
        pauses += said_pauses
        for a, b in said_pauses:  # staying quiet in a pause weighs as much as taking the floor
            ep.hold += range(a // MT, b // MT + 1)
        m = take_mt(end)
        if m >= n:  # the episode ends first: nothing to take, but nothing to interrupt either
            turns.append({"start": start, "end": min(end, n * MT), "take_mt": None, "long": True})
            break
        # a turn gets the long reply (what a barge-in can cut short); a barge-in turn gets "okay"
        ep.say.append(Utterance(m, LONG_REPLY, "take"))
        reply_mts = utter_mts(LONG_REPLY)
        turns.append({"start": start, "end": end, "take_mt": m, "long": True})
        if rng.random() < p_barge and m + 6 < n:
            # the user barges in while the model replies; the model stops within 2 micro-turns
            b = (m + 1) * MT + int(rng.uniform(*barge_after_s) * 16000)
            parts2 = parts_of(rng)
            clip = speech(in_one_breath(parts2), voice)
            bend = place(audio, clip, b, gain or 1.0)
            ep.heard.append((bend // MT + 1, parts2[-1].split()[-1].strip(",.?!")))
            # silent from the first micro-turn whose input holds 80 ms of the barge-in: live,
            # the transport adds ~0.25 s to whatever the model takes
            stop_mt = -(-(b + BARGE_HEARD) // MT) - 1
            ep.silence.append((stop_mt, m + reply_mts + 1))
            barge.append({"at": b, "stop_mt": stop_mt, "end": bend})
            # and then takes the floor again after the barge-in turn
            m2 = take_mt(bend)
            if m2 < n:
                ep.say.append(Utterance(m2, TAKE, "take"))
                turns.append({"start": b, "end": bend, "take_mt": m2, "long": False})
            pos = (m2 + utter_mts(TAKE)) * MT + int(rng.uniform(*gap_s) * 16000)
        else:
            pos = (m + reply_mts) * MT + int(rng.uniform(*gap_s) * 16000)
    ep.info.update(turns=turns, barge=barge, pauses=pauses, voice=voice.name)
    ep.audio = audio
    return ep


def turn(rng: np.random.Generator, n: int) -> Episode:
    """Turn-taking and barge-in in the lab's voices and sentences (see `turn_episode`), often
    with the camera on."""
    ep = turn_episode(rng, n, "turn", bank_voice, _sentence_parts)
    add_video(rng, ep, p_motion=0.3)
    return ep


def turn_corpus(rng: np.random.Generator, n: int) -> Episode:
    """Turn-taking and barge-in in open speech: a speaker of the training bank
    (lab/tasks/speakers.py: corpus sentences cut at their commas and hesitations, in the
    training voices)."""
    from lab.tasks import speakers

    i = speakers.pick(rng)
    ep = turn_episode(
        rng, n, "turn_corpus", lambda r: speakers.warped(speakers.voice(i), r), speakers.turns_of(i)
    )
    add_video(rng, ep, p_motion=0.3)
    return ep


def turn_heldout(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation only: held-out corpus sentences (the `dev` split) in training voices."""
    from lab.tasks.corpus import turn_parts

    ep = turn_episode(rng, n, "turn_heldout", random_user_voice, lambda r: turn_parts(r, "dev"))
    add_video(rng, ep, p_motion=0.3)
    return ep


def turn_flite(rng: np.random.Generator, n: int) -> Episode:
    """Evaluation only: held-out corpus sentences in flite's voices (an engine no training
    stage uses), the turn family's shape."""
    from lab.tasks.corpus import turn_parts

    ep = turn_episode(rng, n, "turn_flite", flite_voice, lambda r: turn_parts(r, "dev"))
    add_video(rng, ep, p_motion=0.3)
    return ep
