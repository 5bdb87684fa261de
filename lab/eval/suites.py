"""The held-out suites, in report order, and `evaluate()`: episodes, runs, scores."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from inference.model import InteractionModel
from lab.eval.metrics.heard import Heard, judge_suite, summarize
from lab.eval.metrics.requests import (
    eval_chat,
    eval_delegate,
    eval_delegate_talking,
    eval_idle,
    false_delegation,
)
from lab.eval.metrics.speech import stoi_of_phrases, vocoder_ceiling
from lab.eval.metrics.timing import (
    eval_cuespeak,
    eval_demo,
    eval_long_timespeak,
    eval_recall,
    eval_repcount,
    eval_timespeak,
)
from lab.eval.metrics.turns import eval_monologue, eval_turn
from lab.eval.metrics.vision import eval_repcount_vision, eval_startstop
from lab.eval.runner import EVAL_SEED_BASE, Run, run_episodes
from lab.tasks.codec import opus_roundtrip
from lab.tasks.episode import Episode
from lab.tasks.families.delegate import HOLD
from lab.tasks.registry import make


class Suite(NamedTuple):
    # held-out episode lengths in micro-turns, longer than training's where it matters
    lengths: tuple[int, int]
    evaluate: Callable[[list[Run]], dict[str, Any]]


# the held-out suites, in report order; each is the generator family of the same name
SUITES: dict[str, Suite] = {
    "timespeak": Suite((150, 250), eval_timespeak),
    "cuespeak": Suite((150, 200), eval_cuespeak),
    "repcount": Suite((150, 250), eval_repcount),
    "turn": Suite((200, 200), eval_turn),
    "monologue": Suite((200, 200), eval_monologue),
    "delegate": Suite((100, 100), eval_delegate),
    "chat": Suite((60, 60), eval_chat),
    "idle": Suite((100, 100), eval_idle),
    "demo": Suite((200, 200), eval_demo),
    "timespeak_spoken": Suite((150, 250), eval_timespeak),
    "chat_spoken": Suite((60, 60), eval_chat),
    # open speech: corpus sentences of the training split in training voices (held-in), the
    # held-out split in training engines' voices, the held-out split in flite's (held-out engine)
    "turn_corpus": Suite((200, 200), eval_turn),
    "turn_heldout": Suite((200, 200), eval_turn),
    "turn_flite": Suite((200, 200), eval_turn),
    "noisy_room": Suite((150, 150), eval_idle),
    # long calls, stepped in full: 10 minutes of "say W every N seconds", 3 minutes of counting,
    # 5 of remembering a number
    "long_timespeak": Suite((3000, 3000), eval_long_timespeak),
    "long_repcount": Suite((900, 900), eval_repcount),
    "long_recall": Suite((1500, 1500), eval_recall),
    # a background result 1 to 4 minutes after the request (families/late_result.py)
    "long_delegate": Suite((1300, 1300), eval_delegate),
    # a person exercising on camera through the served video path (issue 29), with the centroid
    # and frame-difference baselines on the same episodes; held-out kinds, backgrounds, figures
    "repcount_figure": Suite((150, 250), eval_repcount_vision),
    "repcount_figure_heldout": Suite((150, 250), eval_repcount_vision),
    "startstop": Suite((150, 250), eval_startstop),
    "startstop_heldout": Suite((150, 250), eval_startstop),
    # saying what it was given (issue 26): values of any digits and held-out words in background
    # results; "say W every N seconds" with a held-out W
    "delegate_heldout": Suite((100, 100), eval_delegate),
    "timespeak_newword": Suite((150, 250), eval_timespeak),
    "delegate_talking": Suite((100, 100), eval_delegate_talking),
}


def episodes_for(
    suite: str, count: int, seed: int, length: int | None = None, live_path: float = 0.0
) -> list[Episode]:
    lo, hi = (length, length) if length else SUITES[suite].lengths
    rng = np.random.default_rng([seed, len(suite)])
    out = []
    for i in range(count):
        n = max(10, int(rng.integers(lo, hi + 1)) // 10 * 10)
        ep_seed = (seed + 1) * EVAL_SEED_BASE + i
        out.append(make(suite, ep_seed, n, training=False, live_path=live_path))
    return out


def evaluate(
    model: InteractionModel,
    suites: list[str],
    count: int,
    seed: int,
    sessions: int = 8,
    baseline: bool = False,
    progress: bool = False,
    length: int | None = None,
    codec_bitrate: int | None = None,
    live_path: float = 0.0,
) -> dict[str, Any]:
    """codec_bitrate: pass every episode's microphone through Opus at this bitrate first (the
    live path's codec, lab/tasks/codec.py), to measure train/serve skew. live_path: the whole
    live path of training (lab/tasks/room.py) at this strength."""
    report: dict[str, Any] = {
        "suites": {},
        "seed": seed,
        "episodes_per_suite": count,
        "sessions": sessions,
    }
    if codec_bitrate is not None:
        report["codec"] = {"name": "opus", "bitrate": codec_bitrate}
    if live_path:
        report["live_path"] = live_path
    all_runs: list[Run] = []
    heard_suites: dict[str, Any] = {}
    all_heard: list[Heard] = []
    for suite in suites:
        t = time.time()
        episodes = episodes_for(suite, count, seed, length, live_path)
        if codec_bitrate is not None:
            for ep in episodes:
                if ep.audio is not None:
                    ep.audio = opus_roundtrip(ep.audio, codec_bitrate)
        runs = run_episodes(model, episodes, sessions, progress)
        res = SUITES[suite].evaluate(runs)
        if SUITES[suite].evaluate not in (eval_delegate, eval_delegate_talking):
            res["false_delegation_episodes"] = false_delegation(runs)
        if baseline and suite == "turn":
            from lab.baseline import vad_baseline

            res["vad_baseline"] = vad_baseline(episodes)
        report["suites"][suite] = res
        all_runs += runs
        print(f"{suite} ({time.time() - t:.0f} s): {json.dumps(res)}", file=sys.stderr, flush=True)
        # the model's voice transcribed: what a listener heard (heard.py), apart from the
        # text stream's scores
        t = time.time()
        heard_block, heard = judge_suite(runs, SUITES[suite].evaluate)
        if heard_block:
            heard_suites[suite] = heard_block
            all_heard += heard
            print(f"  heard ({time.time() - t:.0f} s): {json.dumps(heard_block)}", file=sys.stderr)
    report["speech"] = stoi_of_phrases(all_runs)
    if heard_suites:
        report["speech"]["heard"] = {**summarize(all_heard), "suites": heard_suites}
    from lab.tasks.vocab import SAY_WORDS

    report["speech"]["vocoder_ceiling"] = vocoder_ceiling([*SAY_WORDS, HOLD, "hi there", "3", "12"])
    return report
