"""Turn-taking metrics: latency, false interruptions, barge-ins, backchannels."""

from __future__ import annotations

from typing import Any

import numpy as np

from lab.eval.metrics.timing import (
    match,
    norm,
    pct,
)
from lab.eval.runner import Run
from lab.tasks.common import utter_mts
from lab.tasks.episode import Episode
from lab.tasks.families.monologue import BACKCHANNEL


def turn_events(ep: Episode, speaking: np.ndarray) -> dict[str, list[float]]:
    """Latencies (s) and outcomes from a speaking track [n] (micro-turn k's audio plays from
    (k+1) * 0.2 s on, as soon as its step is done)."""
    sr = 16_000
    lat, false_int, barge_lat = [], [], []
    n = len(speaking)
    onsets = [k for k in range(n) if speaking[k] and (k == 0 or not speaking[k - 1])]
    barges = ep.info.get("barge", [])
    barge_turn_starts = {b["at"] for b in barges}
    for tr in ep.info.get("turns", []):
        start_s, end_s = tr["start"] / sr, tr["end"] / sr
        # the model started talking during the user's turn (not while it was already talking)
        during = [k for k in onsets if start_s < (k + 1) * 0.2 < end_s]
        if tr["start"] not in barge_turn_starts:
            false_int.append(1.0 if during else 0.0)
        if tr["take_mt"] is None:
            continue  # the episode ended before the turn did: no latency to measure
        after = [k for k in onsets if (k + 1) * 0.2 >= end_s]
        if after and (after[0] + 1) * 0.2 - end_s < 3.0:
            lat.append((after[0] + 1) * 0.2 - end_s)
        else:
            lat.append(float("inf"))
    for b in barges:
        at_s = b["at"] / sr
        k0 = int(at_s // 0.2)
        if k0 >= n or not speaking[k0]:
            continue  # this system was not talking when the user cut in: no barge-in to handle
        stop = next((k for k in range(k0, n) if not speaking[k]), n)
        barge_lat.append((stop + 1) * 0.2 - at_s)
    return {"latency": lat, "false_interruption": false_int, "barge_stop": barge_lat}


def _seconds(x: float) -> float | None:
    """A latency statistic for the report: None when it is "never" (a turn not taken)."""
    return round(float(x), 3) if np.isfinite(x) else None


def summarize_turns(events: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Turns never taken count as infinitely late: the median / p90 is None ("never") when they
    reach it. Percentiles use the nearest turn (no interpolation with infinity)."""
    lat = np.array([x for e in events for x in e["latency"]])
    fi = np.array([x for e in events for x in e["false_interruption"]])
    bs = np.array([x for e in events for x in e["barge_stop"]])
    finite = lat[np.isfinite(lat)]
    return {
        "latency_median_s": _seconds(np.percentile(lat, 50, method="higher")) if len(lat) else None,
        "latency_p90_s": _seconds(np.percentile(lat, 90, method="higher")) if len(lat) else None,
        "took_floor": pct(float(len(finite) / len(lat))) if len(lat) else None,
        "false_interruption_rate": pct(float(fi.mean())) if len(fi) else None,
        "barge_in_stop_median_s": round(float(np.median(bs)), 3) if len(bs) else None,
        "barge_in_success": pct(float(np.mean(bs <= 0.4))) if len(bs) else None,
        "turns": len(lat),
        "barge_ins": len(bs),
    }


def eval_turn(runs: list[Run]) -> dict[str, Any]:
    return summarize_turns([turn_events(r.ep, r.speaking()) for r in runs])


def eval_monologue(runs: list[Run]) -> dict[str, Any]:
    """Backchannels in long tellings: said on time (+-1 micro-turn) or misplaced; and the turn
    metrics with the backchannels taken out of the speaking track (they do not take the floor)."""
    hits, expected, misplaced, events = 0, 0, 0, []
    for r in runs:
        utterances = r.utterances()
        said = [s for s in utterances if norm(s.text) == norm(BACKCHANNEL)]
        exp = r.expected(("backchannel",))
        h, _ = match(exp, said)
        hits, expected, misplaced = hits + h, expected + len(exp), misplaced + len(said) - h
        speaking = r.speaking().copy()
        starts = [s.mt for s in utterances]
        for s in said:  # its audio: from its text on for its length (+2 of vocoder lag), or
            # until the next utterance begins, which then counts on its own
            nxt = min((m for m in starts if m > s.mt), default=len(speaking))
            speaking[s.mt : min(s.mt + utter_mts(BACKCHANNEL) + 2, nxt)] = False
        events.append(turn_events(r.ep, speaking))
    turns = summarize_turns(events)
    return {
        "backchannel_rate": pct(hits / expected) if expected else None,
        "misplaced_backchannels_per_episode": round(misplaced / max(1, len(runs)), 2),
        "backchannels": expected,
        **{k: v for k, v in turns.items() if not k.startswith("barge")},
    }
