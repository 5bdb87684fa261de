"""The task families by name, and `make(family, seed, n)`: one episode, seeded, deterministic.

Each family lives in its own module under lab/tasks/families/.

    timespeak  typed "say W every N seconds" / "remind me to W in N seconds" / "count down from N";
               the model says the word at T0 + N s (T0 = the micro-turn whose input completes the
               instruction), again every N s for "every" until a typed "stop"
    repcount   typed "count my reps", a periodically moving object on camera (the QA harness's
               circling square among others); the model says 1, 2, 3 ... as each repetition
               completes (the object passes the top of its path); "how many?" -> the total
    delegate   typed requests that need a tool ("what is 12 times 7"): the model delegates at
               T0, says "one moment", and says the result's value when "[agent] ... = V" arrives
    chat       typed small talk ("thank you"): a fixed short reply, never a delegation
    idle       camera motion, noise and speech, no instruction: the model stays silent
    cuespeak   typed "when I say C, say R" then the user talks; R right after each C, not after
               near-miss words (needs the dMel input)
    turn       the user speaks a turn with mid-sentence pauses; the model takes the floor right
               after the end of the turn (not in the pauses) and stops within 2 micro-turns
               when the user barges in (needs the dMel input)
    monologue  the user tells something at length; the model backchannels ("uh-huh") in the
               pauses late in the telling without taking the floor, then takes it at the end
    repcount_figure  typed "count my reps", a rendered person exercising (lab/tasks/figure/,
               through the served video path); 1, 2, 3 ... as each rep completes (the return
               to the rest pose); "how many?" -> the total
    startstop  typed "tell me when I start and stop <action>"; "start" / "stop" as the named
               action begins / ends (not for other motions)
    delegate_open / timespeak_open  saying what it was given (families/readout.py): results
               with values of any digits and open words, "say W every N seconds" with an open W;
               `_heldout` / `_newword`: the held-out words (evaluation only)

Every family draws background noise on the microphone; some draw distractor speech.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from lab.tasks.episode import Episode
from lab.tasks.families.chain import chain
from lab.tasks.families.chat import chat, idle, noisy_room
from lab.tasks.families.cuespeak import cuespeak
from lab.tasks.families.delegate import add_result_targets, delegate
from lab.tasks.families.demo import demo
from lab.tasks.families.exercise import (
    repcount_figure,
    repcount_figure_heldout,
    startstop,
    startstop_heldout,
)
from lab.tasks.families.grid import timespeak_grid
from lab.tasks.families.late_result import delegate_long, long_delegate
from lab.tasks.families.long import (
    long_recall,
    long_repcount,
    long_timespeak,
    recall_long,
    repcount_long,
    timespeak_drift,
    timespeak_long,
    timespeak_slow,
)
from lab.tasks.families.monologue import monologue, monologue_corpus
from lab.tasks.families.readout import delegate_open, delegate_talking, timespeak_open
from lab.tasks.families.repcount import repcount
from lab.tasks.families.timespeak import timespeak
from lab.tasks.families.turn import turn, turn_corpus, turn_flite, turn_heldout

Generator = Callable[[np.random.Generator, int], Episode]
FAMILIES: dict[str, Generator] = {
    "timespeak": timespeak,
    "repcount": repcount,
    "delegate": delegate,
    "chat": chat,
    "idle": idle,
    # the same instructions said aloud (one user voice, at the user's level) instead of typed
    "timespeak_spoken": functools.partial(timespeak, spoken=True),
    "chat_spoken": functools.partial(chat, spoken=True),
    # training only: the two kinds that read a number and keep time by it, half each ("in N
    # seconds" and "every N seconds" differ in one word; the countdown is learnt)
    "timespeak_timed": functools.partial(timespeak, kinds={"every": 0.5, "once": 0.5}),
    # training only: the late reminders alone ("in 12-20 seconds"; the settle model said 18-19 s
    # ones ~2.5 s early, 14-16 s ones 1-2 s late)
    "timespeak_late": functools.partial(timespeak, kinds={"once": 1.0}, delays=(12, 20)),
    "cuespeak": cuespeak,
    "turn": turn,
    "monologue": monologue,
    # training only: more near misses, so telling the cue from them carries more of the loss
    "cuespeak_near": functools.partial(cuespeak, kinds={"cue": 0.4, "near": 0.5, "none": 0.1}),
    # open speech (lab/tasks/corpus.py): corpus sentences in the training voices; the held-out
    # split and the held-out engine (flite) are evaluation only
    "turn_corpus": turn_corpus,
    "monologue_corpus": monologue_corpus,
    "noisy_room": noisy_room,
    "turn_heldout": turn_heldout,
    "turn_flite": turn_flite,
    # long calls (families/long.py): training shows minutes in little (a skipped stretch);
    # evaluation steps real calls of 10 and 3 minutes
    "timespeak_long": timespeak_long,
    "timespeak_far": functools.partial(timespeak_long, far=True),
    "timespeak_drift": timespeak_drift,
    "timespeak_grid": timespeak_grid,  # families/grid.py: for the phase clock
    "timespeak_slow": timespeak_slow,
    "repcount_long": repcount_long,
    # always asked, jumps to 4 minutes: answers of 15-140 (repcount_long's are 20-70), so the
    # three-minute calls' 50-90 are not rare
    "repcount_asked": functools.partial(repcount_long, skip=(150, 1200), ask_p=1.0),
    # always asked, no jump: the whole count in view, as a real call has it (long episodes)
    "repcount_counted": functools.partial(repcount_long, skip=None, ask_p=1.0),
    "recall_long": recall_long,
    "delegate_long": delegate_long,
    "long_timespeak": long_timespeak,
    "long_repcount": long_repcount,
    "long_recall": long_recall,
    "long_delegate": long_delegate,
    "demo": demo,  # evaluation only (no training mix names it)
    # training only (the demo suite evaluates the demo page's chain)
    "chain": chain,
    "chain_quiet": functools.partial(chain, p_mic=0.0),
    # a person exercising on camera, through the served video path (families/exercise.py):
    # counting reps, "start"/"stop" at a named action; the held-out exercises, backgrounds and
    # figure styles are evaluation only
    "repcount_figure": repcount_figure,
    "repcount_figure_heldout": repcount_figure_heldout,
    "startstop": startstop,
    "startstop_heldout": startstop_heldout,
    # saying what it was given (families/readout.py): open values and words, held-out words
    "delegate_open": delegate_open,
    "timespeak_open": timespeak_open,
    "delegate_heldout": functools.partial(delegate_open, split="heldout"),
    "timespeak_newword": functools.partial(
        timespeak_open, split="heldout", kinds=(("every", 1.0),)
    ),
    # the result arrives while the user talks: it waits for the end of the sentence
    "delegate_wait": functools.partial(delegate_talking, split="train"),
    "delegate_talking": delegate_talking,
}


EVAL_ONLY = frozenset(
    {
        "demo",
        "turn_heldout",
        "turn_flite",
        "long_timespeak",
        "long_repcount",
        "long_recall",
        "long_delegate",
        "repcount_figure_heldout",
        "startstop_heldout",
        "delegate_heldout",
        "timespeak_newword",
        "delegate_talking",
    }
)


def make(
    family: str,
    seed: int,
    n: int,
    training: bool = True,
    live_path: float = 0.0,
    voice_warp: float = 0.0,
) -> Episode:
    """One episode, fully determined by (family, seed, n, live_path, voice_warp).

    training: background results are placed in the typed stream `delay` micro-turns after the
    expected delegation (teacher forcing); otherwise (evaluation) they stay in `ep.results` and
    the harness delivers them only when the model really delegates.
    live_path: the strength of the live audio path on its microphone (lab/tasks/room.py: own
    echo, room, noise, level, Opus); 0: the clean microphone.
    voice_warp: the share of the training bank's voices heard warped (lab/tasks/speakers.py).
    """
    from lab.tasks.speakers import warping

    rng = np.random.default_rng([hash_family(family), seed, n])
    with warping(voice_warp):
        ep = FAMILIES[family](rng, n)
    if training and ep.results:
        add_result_targets(ep)
    if live_path > 0:
        from lab.tasks.room import live_path as through_live_path

        through_live_path(ep, rng, live_path)
    return ep


def hash_family(family: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(family))
