"""The shipped model says what it was given (issue 26, the copy pointer): background results whose
values it never trained on (held-out words, numbers of any digits) and "say W every N seconds"
with a held-out W, through the serving engine. Text stream only: what a listener hears of them
is `make eval`'s (lab/eval/metrics/heard.py)."""

from __future__ import annotations

from inference.checkpoint import load
from lab.eval.metrics.requests import eval_delegate
from lab.eval.metrics.timing import norm
from lab.eval.runner import run_episodes
from lab.tasks.registry import make

CALLS = 12


def test_results_with_held_out_values_are_read_out() -> None:
    episodes = [make("delegate_heldout", 2000 + seed, 100, training=False) for seed in range(CALLS)]
    runs = run_episodes(load(), episodes, sessions=CALLS)
    score = eval_delegate(runs)
    said = [[s.text for s in r.utterances()] for r in runs]
    # v1 (no pointer) said none of them; v2 says 7 of 12 here (a margin for other CPUs, where
    # bf16 sums round differently and flip an episode or two)
    assert score["result_spoken"] >= 30.0, (score, said)


def test_a_word_never_trained_on_is_said_back() -> None:
    episodes = [
        make("timespeak_newword", 3000 + seed, 150, training=False) for seed in range(CALLS)
    ]
    runs = run_episodes(load(), episodes, sessions=CALLS)
    said_word = [
        any(norm(s.text) == norm(ep.info["word"]) for s in r.utterances())
        for ep, r in zip(episodes, runs, strict=True)
    ]
    # v1 said none; v2 says 6 of 12 here (the same margin)
    assert sum(said_word) >= CALLS // 3, [
        (ep.info["word"], [s.text for s in r.utterances()][:3])
        for ep, r in zip(episodes, runs, strict=True)
    ]
