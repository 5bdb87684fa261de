"""Schedules kept on the instruction's grid (issue 30), for the phase clock (config
`phase_clock`, inference/model.PhaseClock).

    timespeak_grid  "say W every N seconds" (N 3-20): each W due where the clock since the
                    instruction reads a whole number of periods, whatever the history says. A
                    third of the Ws in the history are off by 1-3 micro-turns and some gaps hold
                    a stray W (a model's own slips running free); those are inputs only, no
                    loss around them, and the next W is still due on the grid. Sometimes a
                    "stop" or a new period ("now every M seconds", its grid from that message)
                    typed after a W. Periods of 8 s and more are shown in little in 70 %.

Running free, the v3 model and the drift probe lost the schedule at the first slip: v3 learnt
that the instruction's clock and the clock since its own last W agree, the drift probe timed
each W from the last one said, and then shortened long periods to the gaps in view (a 14 s
period said every 10, 8, then 6 s). The grid is what the long-call measure scores, and the
phase clock makes it readable at any age.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.tasks.common import PER_S, add_video, early_text, instruct, new_episode, num_text
from lab.tasks.episode import Episode
from lab.tasks.families.long import CHANGES, EVERY, _skips, place_ws
from lab.tasks.families.timespeak import STOPS
from lab.tasks.vocab import SAY_WORDS

P_OFF = 0.35  # a W of the history said off time
P_STRAY = 0.12  # a gap with a W said in it
TYPING_MT = 30  # micro-turns kept contiguous after a typed change (its words entering)


def timespeak_grid(rng: np.random.Generator, n: int) -> Episode:
    """Training: "say W every N seconds" kept on the instruction's grid (module docstring)."""
    ep, audio = new_episode("timespeak_grid", rng, n)
    word = str(rng.choice(SAY_WORDS))
    period = int(rng.integers(3, 21))
    text = str(rng.choice(EVERY)).format(w=word, n=num_text(period, rng))
    t0 = instruct(ep, rng, audio, early_text(rng, n), text, None)
    compress = period >= 8 and rng.random() < 0.7
    r = rng.random()
    change_kind = "stop" if r < 0.2 else "period" if r < 0.4 else None
    change_after = int(rng.integers(1, 5))
    clock: list[int] = list(range(min(n, t0 + 1)))
    grid0, p5, k = t0, period * PER_S, 1
    said: list[tuple[int, bool]] = []  # (clock value, on the grid)
    change: dict[str, Any] | None = None
    stopped = False
    while len(clock) < n:
        due = grid0 + k * p5
        at = due
        if not stopped and rng.random() < P_OFF:
            at = due + int(rng.choice([-3, -2, -1, 1, 2, 3]))
        start = clock[-1] + 1
        if compress and k > 1:
            start = max(at - int(rng.integers(6, max(7, p5 - 4))), start)
        if not stopped and at - start > 16 and rng.random() < P_STRAY:
            said.append((int(rng.integers(start + 3, at - 8)), False))
        tail = int(rng.integers(4, 13)) if compress else 1
        clock.extend(range(start, at + tail))
        if not stopped:
            said.append((at, at == due))
        k += 1
        if change_kind is None or change is not None or k - 1 != change_after:
            continue
        # the change typed a few micro-turns after this W, its words entering in view
        typed_c = at + 3
        clock.extend(range(clock[-1] + 1, typed_c + TYPING_MT))
        if typed_c >= clock[min(len(clock), n) - 1]:
            break  # past the episode's end
        idx = clock.index(typed_c)
        if change_kind == "stop":
            instruct(ep, rng, audio, idx, str(rng.choice(STOPS)), None)
            stopped = True
            change = {"kind": "stop", "mt": idx}
        else:
            new_period = int(rng.integers(3, 21))
            msg = str(rng.choice(CHANGES)).format(w=word, n=num_text(new_period, rng))
            eou = instruct(ep, rng, audio, idx, msg, None)
            if eou >= len(clock) or eou >= n:
                ep.typed.pop()
                break
            grid0, p5, k = clock[eou], new_period * PER_S, 1
            compress = new_period >= 8 and compress
            change = {"kind": "period", "mt": idx, "from": eou, "period": new_period}
    clock = clock[:n]
    ep.skips = _skips(clock)
    quiet = [(c - 4, c + 4) for c, on_grid in said if not on_grid]
    place_ws(ep, clock, [c for c, _ in said], word, quiet)
    ep.info.update(word=word, period=period, t0=t0, said=said, change=change, compressed=compress)
    add_video(rng, ep, p_motion=0.3)
    ep.audio = audio
    return ep
