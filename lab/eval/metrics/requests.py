"""Request metrics: delegation, small-talk replies, false speech and false delegation."""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.text import TextQueue
from lab.eval.metrics.timing import (
    norm,
    pct,
    timing_accuracy,
)
from lab.eval.runner import Run
from lab.tasks.families.delegate import HOLD


def eval_delegate(runs: list[Run]) -> dict[str, Any]:
    ok, fired, held, answered = [], [], [], []
    for r in runs:
        t0 = r.ep.info["t0"]
        said = r.utterances()
        d_ok = len(r.delegations) == 1 and t0 - 1 <= r.delegations[0] <= t0 + 2
        h_ok = any(norm(s.text) == norm(HOLD) and t0 - 1 <= s.mt <= t0 + 3 for s in said)
        a_ok = False
        if r.result_typed:
            at = r.result_typed[0][0]
            # the micro-turn in which the result fully entered the model (8 ids per micro-turn)
            r0 = at + entry_mts(r.result_typed[0][1]) - 1
            value = r.ep.info["value"]
            a_ok = any(norm(s.text) == norm(value) and r0 - 1 <= s.mt <= r0 + 3 for s in said)
        fired.append(d_ok)
        held.append(h_ok)
        answered.append(a_ok)
        ok.append(d_ok and h_ok and a_ok)
    return {
        "success": pct(float(np.mean(ok))),
        "delegated_on_time": pct(float(np.mean(fired))),
        "holding_phrase": pct(float(np.mean(held))),
        "result_spoken": pct(float(np.mean(answered))),
        "episodes": len(runs),
    }


def eval_delegate_talking(runs: list[Run]) -> dict[str, Any]:
    """Results that arrive while the user talks (families/readout.delegate_talking): said at all
    (after they arrived, by 3 s after the user's sentence ended), and of those said, the share
    whose first micro-turn fell while the user was still talking."""
    said_any, over = [], []
    for r in runs:
        if not r.result_typed:
            continue
        at = r.result_typed[0][0]
        start, end = r.ep.info["talk"]
        value = norm(r.ep.info["value"])
        onsets = [s.mt for s in r.utterances() if norm(s.text) == value and at <= s.mt <= end + 15]
        said_any.append(bool(onsets))
        if onsets:
            over.append(start <= onsets[0] < end)
    return {
        **eval_delegate(runs),
        "result_after_arrival": pct(float(np.mean(said_any))) if said_any else 0.0,
        "result_over_user": pct(float(np.mean(over))) if over else 0.0,
        "results_said": len(over),
    }


def entry_mts(text: str, slots: int = 8) -> int:
    """Micro-turns a message takes to enter the model (the engine's word-per-micro-turn queue)."""
    q = TextQueue(10_000)
    q.push(text)
    n = 0
    while q.ids:
        q.take(slots)
        n += 1
    return n


def eval_chat(runs: list[Run]) -> dict[str, Any]:
    acc = [timing_accuracy(r.expected(), r.utterances()) for r in runs]
    return {"reply_accuracy": pct(float(np.mean(acc))), "episodes": len(runs)}


def eval_idle(runs: list[Run]) -> dict[str, Any]:
    spoke = [bool(r.utterances()) for r in runs]
    return {"false_speech_episodes": pct(float(np.mean(spoke))), "episodes": len(runs)}


def false_delegation(runs: list[Run]) -> float:
    return pct(float(np.mean([bool(r.delegations) for r in runs]))) if runs else 0.0
