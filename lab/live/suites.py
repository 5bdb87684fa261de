"""The live suites: which episodes, scored how, and the seeds they may be drawn with.

    turn       the lab's turn episodes (espeak voices, the lab's sentences): offline vs live of
               the very same episodes shows what the transport costs
    turn_open  held-out sentences in a held-out TTS engine (flite), with barge-ins
    cuespeak   the lab's spoken cues (timing heard)
    timespeak  the lab's typed timing instructions (timing heard)
    noise      a quiet room, a fan, music, distant babble: no speech wanted
    echo       one turn, then 20 s of the model's own voice coming back into the microphone
    timespeak_newword  (not in the default run) "say W every N seconds" typed, W a word no
               training family drew (families/readout.py): the copy pointer, heard
    long_timespeak  (not in the default run: 10 minutes a call) "say W every N seconds" typed at
               the start of a 10-minute call, sometimes a "stop" or a new period minutes later;
               timing heard over the whole call

Seeds: `DEV_SEEDS` are for development (decide on them); `TEST_SEEDS` are frozen, for the numbers
a claim rests on: report them, never tune on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from lab.eval.metrics.timing import eval_cuespeak, eval_long_timespeak, eval_timespeak, match
from lab.eval.runner import EVAL_SEED_BASE, Run
from lab.eval.suites import episodes_for
from lab.live.episodes import LIVE_FAMILIES
from lab.live.runner import Echo, random_echo
from lab.live.score import score_echo, score_noise, score_turns
from lab.tasks.episode import Episode
from lab.tasks.registry import hash_family

DEV_SEEDS = range(10, 20)
TEST_SEEDS = range(100, 110)  # frozen: report only


def timing_bias(runs: list[Run]) -> dict[str, Any]:
    """How late what was due was heard, in micro-turns (matched within +-3): a constant
    pipeline delay shows here, apart from the +-1 micro-turn accuracy."""
    errs: list[int] = []
    for r in runs:
        _, e = match(r.expected(), r.utterances(), tol=3)
        errs += e
    return {
        "heard_minus_due_mt_mean": round(float(np.mean(errs)), 2) if errs else None,
        "matched_within_3": len(errs),
    }


def with_bias(
    score: Callable[[list[Run]], dict[str, Any]],
) -> Callable[[list[Run]], dict[str, Any]]:
    return lambda runs: {**score(runs), **timing_bias(runs)}


class LiveSuite(NamedTuple):
    length: int  # micro-turns per episode
    score: Callable[[list[Run]], dict[str, Any]]
    echo: bool = False  # the page feeds the model's voice back into its microphone
    turns: bool = False  # turn-taking: decompose the latency
    default: bool = True  # in a plain `python -m lab.live` run


SUITES: dict[str, LiveSuite] = {
    "turn": LiveSuite(150, score_turns, turns=True),
    "turn_open": LiveSuite(150, score_turns, turns=True),
    "cuespeak": LiveSuite(150, with_bias(eval_cuespeak)),
    "timespeak": LiveSuite(150, with_bias(eval_timespeak)),
    "noise": LiveSuite(150, score_noise),
    "echo": LiveSuite(150, score_echo, echo=True),  # a 20 s stretch after the reply
    "timespeak_newword": LiveSuite(150, with_bias(eval_timespeak), default=False),
    "long_timespeak": LiveSuite(3000, with_bias(eval_long_timespeak), default=False),
}


def live_episodes(
    suite: str, count: int, seed: int, length: int | None = None
) -> tuple[list[Episode], list[Echo | None]]:
    """A suite's episodes for a seed (and the echo each gets); lab families as `microturn eval`
    draws them, the live families the same way from their own generators."""
    n = length or SUITES[suite].length
    if suite in LIVE_FAMILIES:
        eps = []
        for i in range(count):
            rng = np.random.default_rng([hash_family(suite), (seed + 1) * EVAL_SEED_BASE + i, n])
            eps.append(LIVE_FAMILIES[suite](rng, n))
    else:
        eps = episodes_for(suite, count, seed, n)
    rng = np.random.default_rng([seed, hash_family(suite), 7])
    echoes: list[Echo | None] = [random_echo(rng) if SUITES[suite].echo else None for _ in eps]
    return eps, echoes
