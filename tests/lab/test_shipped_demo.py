"""The shipped model on the demo page's first request, typed as soon as the call is up (its first
micro-turn, as the page test types it): "say hello every 3 seconds" is said every 3 s whatever the
quiet room's noise. The `cues` checkpoint misread it as every 2 s in about four calls of ten (text
in the first micro-turn was never in its training); the browser test met that one call at a time.

The episodes are the held-out demo family's (a fresh noise draw each), run through the serving
engine; the first four hellos must come 15 micro-turns apart (+-1)."""

from __future__ import annotations

import itertools

from inference.checkpoint import load
from lab.eval.runner import run_episodes
from lab.tasks.registry import make

CALLS = 12
HELLO_PERIOD_MT = 15


def test_hellos_typed_in_the_first_micro_turn_keep_time_in_quiet_rooms() -> None:
    episodes = [make("demo", 1000 + seed, 80, training=False) for seed in range(CALLS)]
    assert all(ep.typed[0][0] == 0 for ep in episodes)
    runs = run_episodes(load(), episodes, sessions=CALLS)
    said = [[s.mt for s in r.utterances() if s.text.lower() == "hello"][:4] for r in runs]
    on_time = [
        len(h) == 4 and all(abs(b - a - HELLO_PERIOD_MT) <= 1 for a, b in itertools.pairwise(h))
        for h in said
    ]
    # one call of twelve may differ on another CPU (bf16 sums round differently there)
    assert sum(on_time) >= CALLS - 1, said
