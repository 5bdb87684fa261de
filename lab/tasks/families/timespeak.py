"""TimeSpeak: typed (or spoken) "say W every N seconds", "remind me in N s", "count down from N"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lab.tasks.common import (
    PER_S,
    add_distractor_speech,
    add_video,
    early_text,
    instruct,
    new_episode,
    num_text,
    scheduled,
    utter_mts,
)
from lab.tasks.episode import Episode, Utterance
from lab.tasks.speakers import bank_voice
from lab.tasks.vocab import (
    SAY_WORDS,
)

# ---- timespeak -------------------------------------------------------------------------------------
STOPS = ["stop", "ok stop", "stop now", "that's enough"]


ONCE_TEMPLATES = [
    "remind me to {w} in {n} seconds",
    "in {n} seconds say {w}",
    "say {w} in {n} seconds",
]
TIMESPEAK_KINDS = {"every": 0.45, "once": 0.3, "countdown": 0.25}


def timespeak(
    rng: np.random.Generator,
    n: int,
    spoken: bool = False,
    kinds: dict[str, float] = TIMESPEAK_KINDS,
    delays: tuple[int, int] = (2, 20),
    words: Sequence[str] = SAY_WORDS,
) -> Episode:
    kind = str(rng.choice(list(kinds), p=list(kinds.values())))
    ep, audio = new_episode(f"timespeak/{kind}", rng, n)
    t_typed = early_text(rng, n)
    voice = bank_voice(rng) if spoken else None
    if kind == "every":
        word = str(rng.choice(words))
        period = int(rng.integers(2, 11))
        if (period * PER_S) < utter_mts(word) + 2:
            period = 3
        nt = num_text(period, rng)
        template = rng.choice(
            [
                "say {w} every {n} seconds",
                "every {n} seconds say {w}",
                "remind me to {w} every {n} seconds",
                "say {w} every {n} seconds until I say stop",
                "please say {w} every {n} seconds",
            ]
        )
        t0 = instruct(ep, rng, audio, t_typed, template.format(w=word, n=nt), voice)
        stop_at = n + 10
        if rng.random() < 0.5 and t0 + period * PER_S < n + 5:
            stop_at = int(rng.integers(t0 + period * PER_S, n + 5))
            if stop_at < n:
                instruct(ep, rng, audio, stop_at, str(rng.choice(STOPS)), voice)
        k = 1
        times = []
        while t0 + k * period * PER_S < min(n, stop_at):
            m = t0 + k * period * PER_S
            ep.say.append(scheduled(m, word))
            times.append(m)
            k += 1
        ep.info.update(word=word, period=period, t0=t0, stop_at=stop_at, expected=times)
    elif kind == "once":
        word = str(rng.choice(words))
        delay = int(rng.integers(delays[0], delays[1] + 1))
        template = rng.choice(ONCE_TEMPLATES)
        t0 = instruct(
            ep, rng, audio, t_typed, template.format(w=word, n=num_text(delay, rng)), voice
        )
        m = t0 + delay * PER_S
        times = []
        if m < n:
            ep.say.append(scheduled(m, word))
            times.append(m)
        ep.info.update(word=word, delay=delay, t0=t0, expected=times)
    else:
        start = int(rng.integers(3, 11))
        template = rng.choice(
            ["count down from {n}", "countdown from {n}", "please count down from {n}"]
        )
        t0 = instruct(ep, rng, audio, t_typed, template.format(n=num_text(start, rng)), voice)
        times = []
        for k in range(1, start + 1):
            m = t0 + k * PER_S
            if m < n:
                # said when due, not ahead: a model times a count from its last one and the
                # message (the clocks clock_ahead leaves), so it is heard a micro-turn late
                ep.say.append(Utterance(m, str(start + 1 - k), "count"))
                times.append(m)
        ep.info.update(start=start, t0=t0, expected=times)
    add_video(rng, ep)
    add_distractor_speech(rng, ep, audio, p=0.3)
    ep.audio = audio
    return ep
