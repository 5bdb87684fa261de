"""RepCount: "count my reps" while something moves on camera; "how many?" -> the total."""

from __future__ import annotations

import numpy as np

from lab.tasks.common import (
    add_distractor_speech,
    early_text,
    first_free,
    new_episode,
    typed_eou,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.motion import harness_motion, random_motion, render

# ---- repcount --------------------------------------------------------------------------------------
COUNT_PROMPTS = [
    "count my reps",
    "count the reps",
    "count out loud",
    "count the repetitions",
    "count my pushups",
    "count how many times it goes around",
    "please count my reps",
]
HOW_MANY = ["how many?", "how many reps?", "how many was that?", "what's the count?"]


def repcount(rng: np.random.Generator, n: int, harness: bool | None = None) -> Episode:
    ep, audio = new_episode("repcount", rng, n)
    use_harness = rng.random() < 0.25 if harness is None else harness
    motion = harness_motion() if use_harness else random_motion(rng)
    if use_harness:
        motion.phase0 = float(rng.random())
    # the object moves in one stretch [a, b), holds still otherwise
    a = int(rng.integers(0, max(1, n // 4))) if rng.random() < 0.6 else 0
    b = n if rng.random() < 0.4 else int(rng.integers(max(a + 10, n // 2), n + 1))
    moving = np.zeros(n, bool)
    moving[a:b] = True
    ep.frames, ep.has_frame, _, reps = render(motion, n, moving, rng)
    t_typed = early_text(rng, n) if rng.random() < 0.8 else int(rng.integers(1, max(2, n // 2)))
    ep.typed.append((t_typed, str(rng.choice(COUNT_PROMPTS))))
    t0 = typed_eou(ep, t_typed)
    counted = [int(m) for m in reps if m > t0]
    ask = None
    if rng.random() < 0.7:
        lo = min(n - 8, max(t0 + 5, (counted[-1] + 2) if counted else t0 + 5))
        if lo < n - 6:
            ask = int(rng.integers(lo, n - 5))
    count = 0
    for m in counted:
        if ask is not None and typed_eou_after(ep, ask) is not None and m >= ask:
            break
        count += 1
        ep.say.append(Utterance(m, str(count), "count"))
    total = count
    if ask is not None:
        ep.typed.append((ask, str(rng.choice(HOW_MANY))))
        q0 = typed_eou(ep, ask)
        # answer right away (after any count still being said); counting stops once asked
        ep.say = [u for u in ep.say if u.mt < q0]
        total = len(ep.say)
        m = first_free(ep.say, q0)
        if m < n:
            ep.say.append(Utterance(m, str(total), "answer"))
        ep.info.update(ask_mt=ask, q0=q0)
    ep.info.update(
        t0=t0,
        count_mts=[u.mt for u in ep.say if u.kind == "count"],
        total=total,
        harness=use_harness,
        period_s=motion.period_s,
    )
    # counts too close to each other to be said in turn: drop the episode's later ones is not
    # needed: the shortest period (1 s = 5 micro-turns) leaves room for "20 " (2 micro-turns)
    add_distractor_speech(rng, ep, audio, p=0.2)
    ep.audio = audio
    return ep


def typed_eou_after(ep: Episode, mt: int) -> int | None:
    return mt
