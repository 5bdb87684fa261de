"""What the person does when: a schedule of idling, moving between poses and bouts of reps.

A bout of R reps runs its phase from 0 to R over its duration through a smooth monotone tempo
warp (speed jitter), so rep k completes at the exact time t where phase(t) = k
(`Schedule.rep_times`); the model hears about it at the first micro-turn whose *seen* frame was
captured at or after that time (`Video.rep_mts` in video.py, as lab/tasks/motion.py). Between
bouts the person idles (standing; swaying and fidgeting a little: body.py's `Person`); push-ups
start and end with getting down to and up from a plank, a motion that is not a repetition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lab.tasks.figure.poses import N_JOINTS, STAND, J, Kind, mirrored, rep_shape, with_yaw


@dataclass
class Segment:
    t0: float
    t1: float
    kind: str  # "idle" (hold `a`), "move" (from `a` to `b`) or the exercise's kind name
    a: np.ndarray  # idle: the pose held; move: from; exercise: the rest pose
    b: np.ndarray  # move: to; exercise: the peak pose
    reps: int = 0
    out_frac: float = 0.5
    hold: float = 0.0
    warp: tuple[float, float, float] = (0.0, 0.0, 0.0)
    alternate: bool = False

    def phase(self, t: np.ndarray) -> np.ndarray:
        """Exercise phase in reps (0..reps) at times t (clipped to the segment)."""
        u = np.clip((t - self.t0) / (self.t1 - self.t0), 0.0, 1.0)
        return self.reps * warp(u, self.warp)


def warp(u: np.ndarray, coef: tuple[float, float, float]) -> np.ndarray:
    """A monotone tempo warp of [0, 1] onto itself (slope 1 +- sum |coef| <= 0.15)."""
    out = np.array(u, dtype=np.float64)
    for i, a in enumerate(coef, start=1):
        out = out + a * np.sin(np.pi * i * u) / (np.pi * i)
    return out


def unwarp(v: float, coef: tuple[float, float, float]) -> float:
    """u with warp(u) = v (Newton; the slope is within 15 % of 1)."""
    u = v
    for _ in range(30):
        slope = 1.0 + sum(a * math.cos(math.pi * i * u) for i, a in enumerate(coef, start=1))
        step = (float(warp(np.array(u), coef)) - v) / slope
        u -= step
        if abs(step) < 1e-13:
            break
    return u


@dataclass
class Bout:
    """One stretch of an exercise or action: [start, end) of the action itself (with its getting
    into and out of position when the kind says so), reps completed in it."""

    kind: str
    start: float
    end: float
    reps: int


@dataclass
class Schedule:
    segments: list[Segment] = field(default_factory=list)
    bouts: list[Bout] = field(default_factory=list)
    t_start: float = 0.0

    @property
    def end(self) -> float:
        return self.segments[-1].t1 if self.segments else self.t_start

    @property
    def current(self) -> np.ndarray:
        """The pose the schedule ends in."""
        if not self.segments:
            return STAND
        last = self.segments[-1]
        return last.b if last.kind == "move" else last.a

    def idle(self, seconds: float, at: np.ndarray | None = None) -> None:
        held = self.current if at is None else at
        self.segments.append(Segment(self.end, self.end + seconds, "idle", held, held))

    def move(self, seconds: float, to: np.ndarray) -> None:
        self.segments.append(Segment(self.end, self.end + seconds, "move", self.current, to))

    def bout(
        self,
        kind: Kind,
        reps: int,
        period: float,
        rng: np.random.Generator,
        amp: float = 1.0,
        yaw: float = 0.0,
    ) -> Bout:
        """A bout of `reps` repetitions at about `period` s each, seen at `yaw`: turning to it
        first and getting into the kind's rest pose when the person is not in it (and back to
        standing after, when the kind's rest pose is not standing)."""
        rest = with_yaw(kind.rest, yaw)
        if abs(float(self.current[J["yaw"]]) - yaw) > 1e-6:
            self.move(float(rng.uniform(0.6, 1.2)), with_yaw(self.current, yaw))
        start = self.end
        to_rest = not np.allclose(self.current, rest)
        if to_rest:
            self.move(float(rng.uniform(0.7, 1.3)), rest)
            self.idle(float(rng.uniform(0.2, 0.7)))
        t0 = self.end
        moving = np.abs(kind.peak - kind.rest) > 0.05
        jitter = np.radians(rng.normal(0, 6, N_JOINTS)) * moving
        jitter[J["lift"]] = jitter[J["yaw"]] = 0.0
        peak = rest + amp * (kind.peak - kind.rest) + jitter
        coef = rng.uniform(-1, 1, 3)
        coef = coef / np.abs(coef).sum() * rng.uniform(0, 0.15)
        self.segments.append(
            Segment(
                t0,
                t0 + reps * period,
                kind.name,
                rest,
                peak,
                reps,
                float(rng.uniform(0.35, 0.65)),
                float(rng.uniform(0.0, 0.15)),
                (float(coef[0]), float(coef[1]), float(coef[2])),
                kind.alternate,
            )
        )
        t1 = self.end
        if not np.allclose(kind.rest, STAND):
            self.idle(float(rng.uniform(0.2, 0.6)))
            self.move(float(rng.uniform(0.7, 1.3)), with_yaw(STAND, yaw))
        b = (
            Bout(kind.name, start, self.end, reps)
            if kind.with_transitions
            else Bout(kind.name, t0, t1, reps)
        )
        self.bouts.append(b)
        return b

    def poses(self, t: np.ndarray) -> np.ndarray:
        """Joint angles at times t: [len(t), N_JOINTS] (before the first segment: its start
        pose; after the last: the pose it ends in)."""
        out = np.tile(self.segments[0].a if self.segments else STAND, (len(t), 1))
        for seg in self.segments:
            m = t >= seg.t0
            if not m.any():
                break
            tt = t[m]
            if seg.kind == "idle":
                out[m] = seg.a
            elif seg.kind == "move":
                u = np.clip((tt - seg.t0) / (seg.t1 - seg.t0), 0, 1)
                s = (0.5 - 0.5 * np.cos(np.pi * u))[:, None]
                out[m] = seg.a + s * (seg.b - seg.a)
            else:
                ph = seg.phase(tt)
                k = np.minimum(np.floor(ph), seg.reps - 1)
                p = rep_shape(np.clip(ph - k, 0, 1), seg.out_frac, seg.hold)[:, None]
                d = np.tile(seg.b - seg.a, (len(tt), 1))
                if seg.alternate:
                    odd = k % 2 == 1
                    d[odd] = mirrored(d[odd])
                out[m] = seg.a + p * d
        return out

    def completed(self, t: np.ndarray) -> np.ndarray:
        """Repetitions completed by times t (fractional within a rep)."""
        out = np.zeros(len(t))
        for seg in self.segments:
            if seg.reps:
                out += seg.phase(t)
        return out

    def rep_times(self) -> list[float]:
        """The exact times at which repetitions complete (the return to the rest pose)."""
        out = []
        for seg in self.segments:
            for k in range(1, seg.reps + 1):
                u = 1.0 if k == seg.reps else unwarp(k / seg.reps, seg.warp)
                out.append(seg.t0 + u * (seg.t1 - seg.t0))
        return out
