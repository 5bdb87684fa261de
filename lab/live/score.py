"""Scores of live calls from the heard speech segments, and the same scores offline.

Turn-taking is scored as lab/eval/metrics/turns.py scores it offline, on heard time instead of
micro-turn indices: a turn is taken when model speech is first heard after the turn's end (within
3 s); a false interruption is an onset heard inside a (non-barge-in) turn; a barge-in counts when
model speech was being heard when the user cut in, and succeeds when it stops within 400 ms.
Offline, a micro-turn k that speaks is heard from (k + 1) * 0.2 s, so the same functions score
both (`offline_segments`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agent.weave import parse_ask
from inference.protocol import SAMPLE_RATE_HZ
from lab.eval.metrics.heard import MARGIN_S, judge_suite, offline_clips
from lab.eval.metrics.timing import pct
from lab.eval.metrics.turns import summarize_turns
from lab.eval.runner import Run, Said
from lab.live.heard import BRIDGE_S, MICROTURN_S, LiveRun
from lab.tasks.episode import Episode

TAKE_WITHIN_S = 3.0
# latency_parts' keys, in the order time passes
LATENCY_PARTS = (
    "network (rtt)",
    "wait for the micro-turn to close",
    "model reaction (whole micro-turns)",
    "grace",
    "step and queueing",
    "cushion, jitter buffer, playout",
)

# barge_parts' keys, in the order time passes
BARGE_PARTS = (
    "network (rtt)",
    "wait for the micro-turn to close",
    "model reaction (whole micro-turns)",
    "grace",
    "step and queueing",
    "jitter buffer, playout, the last word's tail",
)

# timing_parts' keys, in the order time passes
TIMING_PARTS = (
    "the typed text entering the model late (whole micro-turns)",
    "the model's timing (whole micro-turns)",
    "the server's micro-turn grid against the page's",
    "grace",
    "step and queueing",
    "downlink (rtt / 2)",
    "cushion, jitter buffer, playout, the word's onset",
)

Segments = list[tuple[float, float]]
LEAD_S = 0.1  # received audio kept before a heard onset and after its segment's end


def offline_segments(run: Run) -> Segments:
    """An offline run's speaking track as heard-time segments."""
    out: list[list[float]] = []
    for k, on in enumerate(run.speaking()):
        if not on:
            continue
        t = (k + 1) * MICROTURN_S
        if out and abs(out[-1][1] - t) < 1e-9:
            out[-1][1] = t + MICROTURN_S
        else:
            out.append([t, t + MICROTURN_S])
    return [(a, b) for a, b in out]


def segments_of(run: Run) -> Segments:
    return run.heard if isinstance(run, LiveRun) else offline_segments(run)


def turn_events(ep: Episode, segs: Segments) -> dict[str, list[float]]:
    sr = SAMPLE_RATE_HZ
    onsets = [a for a, _ in segs]
    barges = ep.info.get("barge", [])
    barge_starts = {b["at"] for b in barges}
    lat, false_int, barge_stop = [], [], []
    for tr in ep.info.get("turns", []):
        start_s, end_s = tr["start"] / sr, tr["end"] / sr
        if tr["start"] not in barge_starts:
            false_int.append(1.0 if any(start_s < o < end_s for o in onsets) else 0.0)
        if tr["take_mt"] is None:
            continue
        after = [o for o in onsets if o >= end_s]
        took = after and after[0] - end_s < TAKE_WITHIN_S
        lat.append(after[0] - end_s if took else float("inf"))
    for b in barges:
        at_s = b["at"] / sr
        talking = talking_at(segs, at_s)
        if talking is not None:
            barge_stop.append(talking[1] - at_s)
    return {"latency": lat, "false_interruption": false_int, "barge_stop": barge_stop}


def talking_at(segs: Segments, t_s: float) -> tuple[float, float] | None:
    """The heard segment the model was talking in at `t_s` (a barge-in's), if any."""
    return next(((a, e) for a, e in segs if a <= t_s < e), None)


def score_turns(runs: list[Run]) -> dict[str, Any]:
    return summarize_turns([turn_events(r.ep, segments_of(r)) for r in runs])


def score_noise(runs: list[Run]) -> dict[str, Any]:
    """Nobody talked to the model: any model speech is false."""
    spoke: list[bool] = []
    seconds = 0.0
    by_kind: dict[str, list[bool]] = {}
    for r in runs:
        segs = segments_of(r)
        spoke.append(bool(segs))
        seconds += sum(b - a for a, b in segs)
        by_kind.setdefault(r.ep.info["kind"], []).append(bool(segs))
    minutes = sum(r.ep.n for r in runs) * MICROTURN_S / 60
    return {
        "false_speech_episodes": pct(float(np.mean(spoke))) if spoke else None,
        "false_speech_s_per_min": round(seconds / max(minutes, 1e-9), 2),
        "per_kind": {k: pct(float(np.mean(v))) for k, v in sorted(by_kind.items())},
        "episodes": len(runs),
    }


def score_echo(runs: list[Run]) -> dict[str, Any]:
    """The model answered the turn (so its voice came back into the mic), then spoke again in
    the stretch after its reply: it answered itself."""
    took, unprompted, stretches = [], [], []
    for r in runs:
        segs = segments_of(r)
        end_s = r.ep.info["turns"][0]["end"] / SAMPLE_RATE_HZ
        stretch_s = r.ep.info["stretch_start"] / SAMPLE_RATE_HZ
        stretches.append(r.ep.n * MICROTURN_S - stretch_s)
        answered = any(end_s <= a < end_s + TAKE_WITHIN_S for a, _ in segs)
        took.append(answered)
        if answered:
            unprompted.append(any(a >= stretch_s for a, _ in segs))
    return {
        "took_floor": pct(float(np.mean(took))) if took else None,
        "spoke_unprompted": pct(float(np.mean(unprompted))) if unprompted else None,
        "stretches_with_echo": len(unprompted),
        "stretch_s": round(float(np.mean(stretches)), 1) if stretches else None,
        "episodes": len(runs),
    }


def latency_parts(runs: list[LiveRun]) -> dict[str, Any]:
    """Where the time from the end of a user's turn to the first model audio heard went, per
    taken turn (means in ms, which add up; and the total's median), from the server's timing
    on `output_audio.started` (`after_slice_end_ms`, `grace_ms`, `step_ms`) and the call's
    round trip:

        heard - end of speech = uplink (rtt / 2) + waiting for that micro-turn to close
            + the model's reaction (whole micro-turns before it speaks) + grace + step
            + the event's downlink (rtt / 2) + what follows the event on the page (the output
            cushion, the jitter buffer, decoding, WebAudio)

    The page's time of a micro-turn's slice end is the event's arrival less
    `after_slice_end_ms` and the downlink; the parts add up to the total by construction."""
    rows: list[dict[str, float]] = []
    for r in runs:
        started = timed_events(r, "output_audio.started")
        for tr in r.ep.info.get("turns", []):
            if tr["take_mt"] is None:
                continue
            end_s = tr["end"] / SAMPLE_RATE_HZ
            onset = next((a for a, _ in r.heard if a >= end_s), None)
            if onset is None or onset - end_s >= TAKE_WITHIN_S:
                continue
            ev = max((e for e in started if e["t"] <= onset), key=lambda e: e["t"], default=None)
            if ev is None or onset - ev["t"] > 1.0:
                continue
            rows.append(path_row(end_s, onset, ev, r.rtt_ms, LATENCY_PARTS))
    return summarized(rows, "turns")


def barge_parts(runs: list[LiveRun], late_event_s: float = 0.25) -> dict[str, Any]:
    """Where the time from a user cutting in to the model's audio ending went, per barge-in
    while it talked (turn_events' `barge_stop`), as latency_parts decomposes a reply: the
    model's reaction is the whole micro-turns from the one the user's first sound reached to
    the one whose output was quiet (`output_audio.stopped`, which flushes what is queued); the
    last part is the jitter buffer and playout of what was sent before the flush, and the tail
    of its last word. The event is the latest `stopped` arriving after the cut-in and no more
    than `late_event_s` after the audio ended (events and audio travel apart)."""
    rows: list[dict[str, float]] = []
    for r in runs:
        stopped = timed_events(r, "output_audio.stopped")
        for b in r.ep.info.get("barge", []):
            at_s = b["at"] / SAMPLE_RATE_HZ
            talking = talking_at(r.heard, at_s)
            if talking is None:
                continue
            end = talking[1]
            ev = max(
                (e for e in stopped if at_s <= e["t"] <= end + late_event_s),
                key=lambda e: e["t"],
                default=None,
            )
            if ev is not None:
                rows.append(path_row(at_s, end, ev, r.rtt_ms, BARGE_PARTS))
    return summarized(rows, "barge_ins")


def path_row(
    start_s: float, heard_s: float, ev: dict[str, Any], rtt_ms: float | None, keys: tuple[str, ...]
) -> dict[str, float]:
    """One row of latency_parts / barge_parts: from a sound the user made at `start_s` (page
    time) to what the page heard at `heard_s`, through the server event `ev` that answered it
    (its arrival `t`, `after_slice_end_ms`, `grace_ms`), in `keys`' six parts (seconds)."""
    half_rtt = (rtt_ms or 0.0) / 2000
    d = slice_end_s(ev, rtt_ms) - (start_s + half_rtt)
    reaction = max(0, int(np.floor(d / MICROTURN_S + 1e-9)))
    parts = (
        2 * half_rtt,
        d - reaction * MICROTURN_S,
        reaction * MICROTURN_S,
        ev["grace_ms"] / 1000,
        (ev["after_slice_end_ms"] - ev["grace_ms"]) / 1000,
        heard_s - ev["t"],
    )
    return {"total": heard_s - start_s, **dict(zip(keys, parts, strict=True))}


def slice_end_s(ev: dict[str, Any], rtt_ms: float | None) -> float:
    """When the audio slice of the micro-turn a timed server event answers ended, on the page's
    clock: the event's arrival less the server's time after the slice and the downlink."""
    return float(ev["t"] - ev["after_slice_end_ms"] / 1000 - (rtt_ms or 0.0) / 2000)


def grid_offset_s(run: LiveRun) -> float | None:
    """Where the server's micro-turn grid lies on the page's: server micro-turn k's slice ends
    at page time (k + 1) * 0.2 s + this (the median over the call's timed events; None: the
    model never spoke)."""
    timed = timed_events(run, "output_audio.started") + timed_events(run, "output_audio.stopped")
    offsets = [
        slice_end_s(e, run.rtt_ms) - (e["microturn"] + 1) * MICROTURN_S
        for e in timed
        if isinstance(e.get("microturn"), int)
    ]
    return float(np.median(offsets)) if offsets else None


def typed_entries(run: LiveRun) -> list[tuple[int, int]]:
    """Each typed message's micro-turn on the page and how many whole micro-turns after it the
    server handed it to the model (`input_text.committed`, mapped onto the page's grid): 0 is
    on time, as offline, where a message typed in micro-turn m is read from m. In typing order
    (an `/ask` goes to the background model, not announced); empty when the server sent no such
    events or the grid is unknown."""
    committed = [e for e in run.events if e.get("type") == "input_text.committed"]
    offset = grid_offset_s(run)
    if not committed or offset is None:
        return []
    typed = [mt for mt, text in run.ep.typed if parse_ask(text) is None]
    return [
        (mt, int(ev["microturn"]) - round(mt - offset / MICROTURN_S))
        for mt, ev in zip(typed, committed, strict=False)
    ]


def typed_late(runs: list[LiveRun]) -> dict[str, Any]:
    """How late the typed messages entered the model, in whole micro-turns on the page's grid:
    text that entered late delays everything timed from it, through no fault of the model."""
    late = [k for r in runs for _, k in typed_entries(r)]
    if not late:
        return {"messages": 0}
    return {
        "messages": len(late),
        "late_mt_mean": round(float(np.mean(late)), 2),
        "late_mt_max": int(max(late)),
        "on_time": round(100 * sum(k <= 0 for k in late) / len(late), 1),
    }


def timed_events(run: LiveRun, kind: str) -> list[dict[str, Any]]:
    """The call's events of type `kind` (`output_audio.started` / `.stopped`) that carry the
    server's timing."""
    return [e for e in run.events if e.get("type") == kind and "grace_ms" in e]


def summarized(rows: list[dict[str, float]], count: str) -> dict[str, Any]:
    """Rows of parts in seconds -> each part's mean in ms, the total's median, and the row
    count under `count`."""
    if not rows:
        return {count: 0}
    out: dict[str, Any] = {
        k: round(float(np.mean([row[k] for row in rows])) * 1000, 1) for k in rows[0]
    }
    out["total_median"] = round(float(np.median([row["total"] for row in rows])) * 1000, 1)
    out[count] = len(rows)
    return out


def timing_parts(runs: list[LiveRun], within_mt: int = 3) -> dict[str, Any]:
    """Where the time between when a due utterance should be heard and when it was went, per
    due utterance heard (within `within_mt` micro-turns; means in ms, which add up, and the
    total's median), from the server's timing on `output_audio.started` and the round trip:

        heard - due = the typed text's lateness in whole micro-turns (the last message typed
            before the utterance, `typed_entries`) + the model's own error in whole
            micro-turns + the offset of the server's
            micro-turn grid from the page's (where the page's micro-turns fall on the server's
            clock: the uplink, and the phase of the call's grid) + grace + step + the event's
            downlink + what follows the event on the page (the output cushion, the jitter
            buffer, decoding, WebAudio, and where in its first 200 ms the word becomes audible)

    "Due" is the offline convention: micro-turn k's output heard from (k + 1) * 0.2 s, k the
    micro-turn the utterance is due in (`Utterance.mt + lead`: a schedule's word said ahead). The
    model's whole micro-turns are the server slice's end less the due time, rounded, and the
    grid offset is what that leaves (within +-100 ms)."""
    rows: list[dict[str, float]] = []
    for r in runs:
        half_rtt = (r.rtt_ms or 0.0) / 2000
        started = timed_events(r, "output_audio.started")
        entries = typed_entries(r)
        onsets = [a for a, _ in r.heard]
        used: set[float] = set()
        for u in r.ep.say:
            due = (u.mt + r.lead(u) + 1) * MICROTURN_S  # when it is due to be heard
            near = [o for o in onsets if abs(o - due) <= within_mt * MICROTURN_S and o not in used]
            if not near:
                continue
            onset = min(near, key=lambda o: abs(o - due))
            ev = max((e for e in started if e["t"] <= onset), key=lambda e: e["t"], default=None)
            if ev is None or onset - ev["t"] > 1.0:
                continue
            used.add(onset)
            slice_end = slice_end_s(ev, r.rtt_ms)
            whole = round((slice_end - due) / MICROTURN_S)
            text = next((k for mt, k in reversed(entries) if mt <= u.mt), 0)
            rows.append(
                {
                    "total": onset - due,
                    TIMING_PARTS[0]: text * MICROTURN_S,
                    TIMING_PARTS[1]: (whole - text) * MICROTURN_S,
                    TIMING_PARTS[2]: slice_end - due - whole * MICROTURN_S,
                    TIMING_PARTS[3]: ev["grace_ms"] / 1000,
                    TIMING_PARTS[4]: (ev["after_slice_end_ms"] - ev["grace_ms"]) / 1000,
                    TIMING_PARTS[5]: half_rtt,
                    TIMING_PARTS[6]: onset - ev["t"],
                }
            )
    return summarized(rows, "utterances")


# ---- the words heard (lab/eval/metrics/heard.py) ----------------------------------------------------
def live_clips(run: Run, items: list[tuple[Said, str]]) -> list[np.ndarray]:
    """A live call's received audio of each judged utterance: the heard segment its text was
    placed on (utterances() puts it on that onset's micro-turn), from `LEAD_S` before it to its
    end, no longer than the teacher's rendering allows and never into the next segment. Text
    with no heard onset gets no audio: nothing was heard. Offline runs: their own audio."""
    if not isinstance(run, LiveRun) or run.received is None:
        return offline_clips(run, items)
    from lab.tasks.voice import model_audio

    received = run.received
    out = []
    for said, text in items:
        t = (said.mt + 1) * MICROTURN_S  # heard_microturn's inverse, to within half a micro-turn
        seg = min(run.heard, key=lambda s: abs(s[0] - t), default=None)
        if seg is None or abs(seg[0] - t) > MICROTURN_S / 2 + 1e-6:
            out.append(np.zeros(0, np.float32))
            continue
        longest = len(model_audio(text)) / SAMPLE_RATE_HZ + MARGIN_S + BRIDGE_S
        end = min(seg[1], seg[0] + longest) + LEAD_S
        nxt = next((a for a, _ in run.heard if a > seg[0]), None)
        if nxt is not None:
            end = min(end, nxt)
        a, b = int(max(0.0, seg[0] - LEAD_S) * SAMPLE_RATE_HZ), int(end * SAMPLE_RATE_HZ)
        out.append(received[a:b])
    return out


def score_heard(runs: list[Run], score: Callable[[list[Run]], dict[str, Any]]) -> dict[str, Any]:
    """{"heard": the speech judge's block} of a suite's runs, live or offline ({} if the suite
    expects no words): what the page heard of the model's phrases, and the suite's word scores
    with the words heard right too."""
    block, _ = judge_suite(runs, score, live_clips)
    return {"heard": block} if block else {}
