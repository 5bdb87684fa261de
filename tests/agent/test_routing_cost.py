"""The builtin router reads up to 4,000 characters of user text: every pattern is linear in it.

Each case repeats what one of the old patterns backtracked on. Linear work grows 4x from 1 KB to
4 KB; quadratic grows 16x. The best of several runs keeps the ratio steady on a loaded machine.
"""

from __future__ import annotations

import time

import pytest

from agent.backends.builtin import route

CASES = {
    "clock phrase, then many 'in'": lambda n: "what time in " + "in " * (n // 3),
    "clock phrase, then a long run of spaces": lambda n: "what time in a" + " " * n + "1",
    "timer words, no length": lambda n: "timer " * (n // 6) + "x",
    "notes words over lines": lambda n: "search notes " + "notes " * (n // 6) + "\nx\n",
    "a long number before %": lambda n: "1" * n + " km to",
    "a long number, percent of": lambda n: "what is " + "1" * n + "% of",
    "how many, many words": lambda n: "how many " + "a " * (n // 2) + "1",
    "clock phrases repeated": lambda n: "what time " * (n // 10) + "1",
}


def best_of(text: str, runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        route(text, notes=True)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("name", sorted(CASES))
def test_routing_cost_grows_linearly_with_the_request(name: str) -> None:
    make = CASES[name]
    small, large = make(1000)[:1000], make(4000)[:4000]
    t_small, t_large = best_of(small), best_of(large)
    # Below ~0.5 ms the clock's resolution decides; both are then plainly cheap.
    assert t_large < 5e-4 or t_large / max(t_small, 1e-6) < 9, (
        f"{name}: {t_small * 1e3:.2f} ms at 1 KB, {t_large * 1e3:.2f} ms at 4 KB"
    )
