"""Seeing metrics (issue 29): start/stop temporal IoU, and what a model that does not see a person
would score on the same episodes (frame-level baselines), reported beside the model.

Start/stop, scored as the lab scores Charades (temporal IoU of the said moment with the true one,
mean over episodes): per episode, the said intervals are built from the model's "start" and
"stop" in order (a "start" opens an interval unless one is open; a "stop" closes the open one and
is ignored when none is; an interval still open at the end runs to the end of the episode); the
true intervals are the named action's (lab/tasks/families/exercise.py `info["intervals"]`:
micro-turns whose frame shows it, no reaction allowance). IoU = |said ∩ true| / |said ∪ true| in
micro-turns, over the union of all the episode's intervals, so a missing "stop" costs the
stretch after the action, a missing "start" all of it, an extra start/stop pair on another
action its length. An episode with nothing true and nothing said scores 1. mIoU = the mean over
episodes; R@0.5 and R@0.7 = the share of episodes with IoU >= 0.5 / 0.7 (Charades-STA's R@1).

Baselines, on the episodes' own 40x40 frames (what the model sees):

    centroid   the foreground blob (pixels > 25 grey levels from the episode's median frame):
               its centroid's height, smoothed; a rep is counted each time the centroid turns
               back down after rising by more than 0.75 px (one per cycle: the top of the path).
               The "15-line tracker" of issue 29, which counts the old square scenes well
    energy     frame-difference energy (mean |frame_t - frame_t-1|, smoothed): its peaks above
               the episode's median + half its spread; two peaks per cycle (a reciprocating
               motion is fastest twice per rep), so a count at every second peak
    energy start/stop  the same energy against its quiet level (the 20th percentile) + 0.4:
               "start" after 2 active micro-turns, "stop" after 5 quiet ones (blind to which
               action it is; thresholds tuned on training-split episodes)
    always on  "start" right after the instruction, never "stop": the floor any start/stop
               answer must beat (its IoU is the share of the rest of the episode the action takes)

Each says its counts (or start/stop) at the micro-turn it decides, from the instruction on, and
answers "how many?" with its count, and goes through the model's own scoring (`eval_repcount`,
`eval_startstop`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.eval.metrics.timing import eval_repcount, norm, pct, timing_accuracy
from lab.eval.runner import Run, Said
from lab.tasks.episode import Episode

FOREGROUND = 25.0  # grey levels from the median frame
TURN_PX = 0.75  # the centroid must rise this much before a turn counts


@dataclass
class SaidRun(Run):
    """A run whose utterances are given (a baseline's), scored like the model's."""

    said: list[Said] = field(default_factory=list)

    def utterances(self) -> list[Said]:
        return self.said


# ---- start/stop IoU --------------------------------------------------------------------------------
def said_intervals(said: list[Said], n: int) -> list[tuple[int, int]]:
    """[start, stop) micro-turn intervals from said "start"/"stop" (see the module doc)."""
    out: list[tuple[int, int]] = []
    opened: int | None = None
    for s in sorted(said, key=lambda s: s.mt):
        word = norm(s.text)
        if word.startswith("start") and opened is None:
            opened = s.mt
        elif word.startswith("stop") and opened is not None:
            out.append((opened, s.mt))
            opened = None
    if opened is not None:
        out.append((opened, n))
    return out


def interval_iou(said: list[tuple[int, int]], true: list[tuple[int, int]], n: int) -> float:
    """IoU of two sets of [a, b) micro-turn intervals within [0, n)."""
    a, b = np.zeros(n, bool), np.zeros(n, bool)
    for lo, hi in said:
        a[max(0, lo) : max(0, hi)] = True
    for lo, hi in true:
        b[max(0, lo) : max(0, hi)] = True
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def startstop_iou(ep: Episode, said: list[Said]) -> float:
    true = [(int(a), int(b)) for a, b in ep.info["intervals"]]
    return interval_iou(said_intervals(said, ep.n), true, ep.n)


def summarize_iou(ious: list[float]) -> dict[str, Any]:
    x = np.array(ious, float)
    if not len(x):
        return {"miou": None, "r_at_0_5": None, "r_at_0_7": None}
    return {
        "miou": pct(float(x.mean())),
        "r_at_0_5": pct(float((x >= 0.5).mean())),
        "r_at_0_7": pct(float((x >= 0.7).mean())),
    }


def eval_startstop(runs: list[Run]) -> dict[str, Any]:
    """mIoU and R@0.5/0.7 of the model; the targets' own (the reaction allowance's cost: the
    ceiling); the timing of "start"/"stop" against the targets (+-1 micro-turn); words said that
    are not start/stop; and the energy baseline on the same episodes."""
    ious, timing, other, ceiling = [], [], 0, []
    for r in runs:
        said = r.utterances()
        ious.append(startstop_iou(r.ep, said))
        exp = r.expected()
        ceiling.append(startstop_iou(r.ep, [Said(u.mt, u.text) for u in r.ep.say]))
        marks = [s for s in said if norm(s.text).startswith(("start", "stop"))]
        timing.append(timing_accuracy(exp, marks))
        other += len(said) - len(marks)
    out = summarize_iou(ious)
    out.update(
        target_miou=summarize_iou(ceiling)["miou"],
        start_stop_timing_accuracy=pct(float(np.mean(timing))) if timing else None,
        other_utterances_per_episode=round(other / max(1, len(runs)), 2),
        episodes=len(runs),
        energy_baseline=baseline_startstop([r.ep for r in runs]),
        always_on_baseline=baseline_startstop([r.ep for r in runs], always_on=True),
    )
    return out


# ---- frame features --------------------------------------------------------------------------------
def grey(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    """Grey frames [n, 40, 40] float32 (a missing frame repeats the last seen) and has_frame."""
    assert ep.frames is not None and ep.has_frame is not None
    g = ep.frames.astype(np.float32).mean(-1)
    has = ep.has_frame.astype(bool)
    last = None
    for m in range(ep.n):
        if has[m]:
            last = g[m]
        elif last is not None:
            g[m] = last
    return g, has


def smooth(x: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4, edges held."""
    p = np.concatenate([x[:1], x, x[-1:]])
    return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def centroid_heights(ep: Episode) -> np.ndarray:
    """The foreground blob's centroid row per micro-turn (held where there is none)."""
    g, has = grey(ep)
    bg = np.median(g[has] if has.any() else g, axis=0)
    fg = np.abs(g - bg) > FOREGROUND
    rows = np.arange(g.shape[1], dtype=np.float32)[None, :, None]
    area = fg.sum(axis=(1, 2))
    y = np.where(area > 0, (fg * rows).sum(axis=(1, 2)) / np.maximum(area, 1), np.nan)
    for m in range(ep.n):  # hold the last seen
        if np.isnan(y[m]):
            y[m] = y[m - 1] if m else g.shape[1] / 2
    return smooth(y)


def centroid_counts(ep: Episode) -> list[int]:
    """Micro-turns at which the centroid tracker counts a rep (the top of its path passed)."""
    y = centroid_heights(ep)
    out, rising, extreme = [], False, y[0]
    for m in range(1, ep.n):
        if rising:
            if y[m] < extreme:
                extreme = y[m]
            elif y[m] > extreme + TURN_PX:  # turned back down: a top
                out.append(m)
                rising, extreme = False, y[m]
        else:
            if y[m] > extreme:
                extreme = y[m]
            elif y[m] < extreme - TURN_PX:
                rising, extreme = True, y[m]
    return out


def energy(ep: Episode) -> np.ndarray:
    """Mean |frame_t - frame_t-1| per micro-turn (0 where either frame is missing), smoothed."""
    g, has = grey(ep)
    e = np.zeros(ep.n, np.float32)
    e[1:] = np.abs(g[1:] - g[:-1]).mean(axis=(1, 2))
    e[1:][~(has[1:] & has[:-1])] = np.nan
    e[0] = np.nan
    e = np.where(np.isnan(e), np.nanmedian(e) if np.isfinite(e).any() else 0.0, e)
    return smooth(e)


def energy_counts(ep: Episode) -> list[int]:
    """A count at every second peak of the frame-difference energy."""
    e = energy(ep)
    med = float(np.median(e))
    thr = med + 0.5 * (float(np.percentile(e, 90)) - med)
    peaks = [m for m in range(1, ep.n - 1) if e[m] > thr and e[m] >= e[m - 1] and e[m] > e[m + 1]]
    return peaks[1::2]


def energy_startstop(ep: Episode, t0: int) -> list[Said]:
    """ "start" once the energy has been over its quiet level + 0.4 for 2 micro-turns, "stop"
    once it has been under for 5 (from the instruction on)."""
    e = energy(ep)
    quiet = float(np.percentile(e[t0:] if t0 < ep.n else e, 20))
    active = e > quiet + 0.4
    out, on, run = [], False, 0
    for m in range(t0 + 1, ep.n):
        run = run + 1 if active[m] != on else 0
        if not on and run >= 2:
            out.append(Said(m, "start"))
            on, run = True, 0
        elif on and run >= 5:
            out.append(Said(m, "stop"))
            on, run = False, 0
    return out


# ---- baselines through the model's scoring ---------------------------------------------------------
def counts_said(ep: Episode, counts: list[int]) -> list[Said]:
    """A counter's counts as said from the instruction on, and its answer to "how many?"."""
    t0, q0 = int(ep.info["t0"]), ep.info.get("q0")
    stop = ep.n if q0 is None else int(q0) - 1
    said = [Said(m, str(i + 1)) for i, m in enumerate(m for m in counts if t0 < m < stop)]
    if q0 is not None and int(q0) < ep.n:
        said.append(Said(int(q0), str(len(said))))
    return said


BASELINES: dict[str, Callable[[Episode], list[int]]] = {
    "centroid": centroid_counts,
    "energy": energy_counts,
}


def baseline_repcount(episodes: list[Episode], counter: str) -> dict[str, Any]:
    runs: list[Run] = [SaidRun(ep, said=counts_said(ep, BASELINES[counter](ep))) for ep in episodes]
    res = eval_repcount(runs)
    keep = ("off_by_one_accuracy", "exact_accuracy", "mae", "count_timing_accuracy", "episodes")
    return {k: res[k] for k in keep}


def baseline_startstop(episodes: list[Episode], always_on: bool = False) -> dict[str, Any]:
    """The energy baseline's mIoU (always_on: the "start" at once, never "stop" floor's)."""
    ious = []
    for ep in episodes:
        t0 = int(ep.info["t0"])
        said = [Said(t0 + 1, "start")] if always_on else energy_startstop(ep, t0)
        ious.append(startstop_iou(ep, said))
    return summarize_iou(ious)


def eval_repcount_vision(runs: list[Run]) -> dict[str, Any]:
    """`eval_repcount`, the off-by-one accuracy per exercise kind (episodes of one kind), and the
    centroid and frame-difference baselines on the same episodes."""
    out = eval_repcount(runs)
    by: dict[str, list[bool]] = {}
    one = eval_repcount  # per-kind: score each run alone
    for r in runs:
        kinds = r.ep.info.get("kinds", [])
        if len(kinds) == 1:
            by.setdefault(kinds[0], []).append(one([r])["off_by_one_accuracy"] == 100.0)
    out["off_by_one_per_kind"] = {k: pct(float(np.mean(v))) for k, v in sorted(by.items())}
    episodes = [r.ep for r in runs]
    out["centroid_baseline"] = baseline_repcount(episodes, "centroid")
    out["energy_baseline"] = baseline_repcount(episodes, "energy")
    return out
