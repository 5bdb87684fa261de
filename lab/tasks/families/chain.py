"""Typed tasks one after another in one call, as the demo page uses them (training)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lab.tasks.common import (
    PER_S,
    add_distractor_speech,
    early_text,
    first_free,
    new_episode,
    num_text,
    typed_eou,
    utter_mts,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.families.chat import chat_message
from lab.tasks.families.demo import harness_mic
from lab.tasks.families.repcount import COUNT_PROMPTS, HOW_MANY
from lab.tasks.families.timespeak import ONCE_TEMPLATES, STOPS
from lab.tasks.motion import harness_motion, random_motion, render
from lab.tasks.vocab import (
    SAY_WORDS,
)


# ---- chain: typed tasks one after another in one call (training) -----------------------------------
def _every(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(2, 7))
    ep.typed.append((at, f"say {word} every {num_text(period, rng)} seconds"))
    t0 = typed_eou(ep, at)
    gap = period * PER_S
    times = [t0 + k * gap for k in range(1, int(rng.integers(1, 6)) + 1)]
    times = [m for m in times if m < ep.n]
    ep.say.extend(Utterance(m, word, "say") for m in times)
    last = times[-1] if times else t0
    lo = last + utter_mts(word)
    stop_at = int(rng.integers(lo, max(lo + 1, last + gap - 3)))
    if stop_at < ep.n:
        ep.typed.append((stop_at, str(rng.choice(STOPS))))
    return typed_eou(ep, stop_at) if stop_at < ep.n else ep.n


def _count(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    ep.typed.append((at, str(rng.choice(COUNT_PROMPTS))))
    c0 = typed_eou(ep, at)
    coming = [m for m in reps if c0 < m < ep.n]
    if not coming:
        return ep.n
    k = int(rng.integers(1, min(len(coming), 8) + 1))
    # asked as soon as the k-th count is heard, or a while later (the demo page test asks right
    # after the 4th: with 2-8 the polish model, asked 0-1 micro-turns after, missed the answer)
    ask = coming[k - 1] + int(rng.integers(1, 9))
    counted = [m for m in coming if m < ask]
    ep.say.extend(Utterance(m, str(i + 1), "count") for i, m in enumerate(counted))
    if ask >= ep.n - 2:
        return ep.n
    ep.typed.append((ask, str(rng.choice(HOW_MANY))))
    q0 = typed_eou(ep, ask)
    m = first_free(ep.say, q0)
    if m < ep.n:
        ep.say.append(Utterance(m, str(len(counted)), "answer"))
    return m + utter_mts(str(len(counted)))


def _countdown(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    start = int(rng.integers(3, 7))
    ep.typed.append((at, f"count down from {num_text(start, rng)}"))
    t0 = typed_eou(ep, at)
    ep.say.extend(
        Utterance(t0 + k * PER_S, str(start + 1 - k), "count")
        for k in range(1, start + 1)
        if t0 + k * PER_S < ep.n
    )
    return t0 + start * PER_S + 2


def _once(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    word = str(rng.choice(SAY_WORDS))
    delay = int(rng.integers(2, 21))
    template = rng.choice(ONCE_TEMPLATES)
    ep.typed.append((at, template.format(w=word, n=num_text(delay, rng))))
    m = typed_eou(ep, at) + delay * PER_S
    if m < ep.n:
        ep.say.append(Utterance(m, word, "say"))
    return m + utter_mts(word)


def _chat(rng: np.random.Generator, ep: Episode, at: int, reps: list[int]) -> int:
    msg, reply = chat_message(rng)
    ep.typed.append((at, msg))
    t0 = typed_eou(ep, at)
    if t0 < ep.n:
        ep.say.append(Utterance(t0, reply, "reply"))
    return t0 + utter_mts(reply)


SEGMENTS: dict[str, Callable[[np.random.Generator, Episode, int, list[int]], int]] = {
    "every": _every,
    "count": _count,
    "countdown": _countdown,
    "once": _once,
    "chat": _chat,
}
SEGMENT_MIX = {"every": 0.3, "count": 0.3, "countdown": 0.14, "once": 0.11, "chat": 0.15}


def chain(rng: np.random.Generator, n: int, p_mic: float = 0.3) -> Episode:
    """Typed tasks one after another in one call, each begun once the previous is over (stopped,
    done or answered): "say W every N seconds" ... "stop", "count my reps" ... "how many?", a
    countdown, a reminder, small talk. The demo page's sequence is one such chain; a model trained
    on each task alone does them far worse in sequence. The camera shows a moving object the whole
    time (the harness's square in 40 %); the mic plays the harness's looped speech with
    probability `p_mic` (to be ignored: a model that listens answers it instead, so `chain_quiet`,
    the listening stage's variant, never plays it), else the room's noise, sometimes with somebody
    talking in the background."""
    ep, audio = new_episode("chain", rng, n)
    use_harness = rng.random() < 0.4
    motion = harness_motion() if use_harness else random_motion(rng)
    if use_harness:
        motion.phase0 = float(rng.random())
    ep.frames, ep.has_frame, _, rep_mts = render(motion, n, np.ones(n, bool), rng)
    reps = [int(m) for m in rep_mts]
    kinds = list(SEGMENT_MIX)
    p = np.array(list(SEGMENT_MIX.values()))
    at = early_text(rng, n)
    done = []
    while at < n - 10:
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        gap = int(rng.integers(1, 12))
        if kind == "count" and rng.random() < 0.4:
            # the camera keeps moving after the answer and nothing is counted until asked again
            # (the polish model started counting again 15-25 s after answering)
            gap = int(rng.integers(20, 150))
        at = SEGMENTS[kind](rng, ep, at, reps) + gap
        done.append(kind)
    ep.say.sort(key=lambda u: u.mt)
    ep.info.update(segments=done, harness=use_harness)
    if rng.random() < p_mic:  # the QA harness's fake mic, as loud as in the demo page
        audio += harness_mic(n)
    else:
        add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep
