"""Procedural camera video of a person exercising, through the video path as served.

A person is an articulated 2-D figure (capsules for torso, limbs and feet, a disc for the head)
posed by joint angles in a simple 3-D body frame and projected at a yaw (front, three-quarter or
side view). Exercises are joint-angle trajectories over a phase:

    pose(phase) = rest + p(frac(phase)) * (peak - rest)

with p a cosine bump 0 -> 1 -> 0 (an out stroke, a hold at the peak, a back stroke; random
asymmetry per bout). **One repetition is one full cycle, and it completes when the phase crosses
an integer: the return to the rest pose.** A bout of R reps runs its phase from 0 to R over its
duration through a smooth monotone tempo warp (speed jitter), so rep k completes at the exact time
t where phase(t) = k (`Schedule.rep_times`); the model hears about it at the first micro-turn whose
*seen* frame was captured at or after that time (`Video.rep_mts`, as lab/tasks/motion.py).

Kinds: the training exercises (squat, arm raise, push-up, jumping jack), actions that are not
counted exercises (waving, clapping: the start/stop task), the held-out exercises (lunge, side bend,
knee raise; evaluation only) and procedurally random periodic "exercises" (random joints, random
amplitudes), so that counting is learnt as counting cycles, not as one motion. Between bouts the
person idles (standing, swaying, fidgeting a little); push-ups start and end with getting down to
and up from a plank, a motion that is not a repetition.

Scenes: textured and cluttered backgrounds, figure styles (builds, colours, clothing patterns),
lighting drift and steps, camera noise, motion blur (the exposure time), camera shake, a moving
object in the background and a second person standing still. Backgrounds, builds and patterns are
split: `split="heldout"` draws only from the held-out ones, `split="train"` never does.

The served path (issue 29, point 2): a scene is rendered as a camera picture of the aspect the page
sends (the browser's default 640x480 among others), at a reduced height (`RENDER_H` rows; the
geometry of media/video_in.py's crop is unchanged by the reduction, see `render_size`), converted
to I420 as a camera's frames are, and handed to media/video_in.py's own `to_model_frame` (centre
crop, swscale resize to 40x40). One frame per micro-turn, the newest the server would have: the
camera's frames arrive `lag` after capture, and the sampler takes the newest that arrived within
the 200 ms slice (`frame_times`). Only those frames are rendered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from inference.config import FRAME_SIZE
from inference.protocol import MICROTURN_MS
from lab.tasks.motion import noise_slice
from media.video_in import to_model_frame

DT = MICROTURN_MS / 1000
RENDER_H = 120  # rows a frame is drawn at before the served resize (3x the model's 40)
CHUNK = 32  # frames drawn together (vectorised over frames)
P_DROP = 0.04  # a micro-turn without a frame now and then (as lab/tasks/motion.py)

# ---- splits ----------------------------------------------------------------------------------------
TRAIN_KINDS = ("squat", "arm_raise", "pushup", "jumping_jack")
ACTION_KINDS = ("waving", "clapping")  # actions of the start/stop task, not counted exercises
HELDOUT_KINDS = ("lunge", "side_bend", "knee_raise")
TRAIN_BACKGROUNDS = ("flat", "gradient", "noise", "stripes", "rects", "room")
HELDOUT_BACKGROUNDS = ("tiles", "blobs")
TRAIN_BUILDS = ("average", "slim", "broad")
HELDOUT_BUILDS = ("stocky", "lanky")
TRAIN_PATTERNS = ("solid", "stripes", "two_tone")
HELDOUT_PATTERNS = ("checker", "fade")  # checks; a colour fading along each limb


def split_sets(split: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(backgrounds, builds, patterns) of a split."""
    if split == "train":
        return TRAIN_BACKGROUNDS, TRAIN_BUILDS, TRAIN_PATTERNS
    if split == "heldout":
        return HELDOUT_BACKGROUNDS, HELDOUT_BUILDS, HELDOUT_PATTERNS
    raise ValueError(split)


# ---- poses -----------------------------------------------------------------------------------------
# World-frame joint angles (radians; `lift` in figure heights). Body frame: x to the figure's left,
# y down, z forward. A limb direction from abduction a (outwards) and flexion f (forwards) is
# (side sin a cos f, cos a cos f, sin f): a = f = 0 hangs straight down. The forearm and shin add
# their own angles to the upper segment's (fabd/fflex; the knee bends the shin backwards).
JOINTS = (
    "lean",  # torso forwards from upright
    "side",  # torso side bend (towards the figure's left)
    "lift",  # the whole body up (a jump), in figure heights
    "yaw",  # turned away from facing the camera (+: the left side away, facing right)
    *(f"{s}_{j}" for s in "lr" for j in ("abd", "flex", "fabd", "fflex")),
    *(f"{s}_{j}" for s in "lr" for j in ("labd", "lflex", "knee")),
)
J = {name: i for i, name in enumerate(JOINTS)}
N_JOINTS = len(JOINTS)
# left <-> right (alternating kinds do every other rep on the other side)
MIRROR = np.array(
    [J[n.replace("l_", "#").replace("r_", "l_").replace("#", "r_")] for n in JOINTS], np.int64
)
MIRROR_SIGN = np.where(np.array(JOINTS) == "side", -1.0, 1.0)


def pose(base: np.ndarray | None = None, **values: float) -> np.ndarray:
    """A pose from degrees (`lift` in figure heights); a name without l_/r_ sets both sides."""
    out = np.zeros(N_JOINTS) if base is None else base.copy()
    for key, value in values.items():
        for name in [key] if key in J else [f"l_{key}", f"r_{key}"]:
            out[J[name]] = value if name == "lift" else math.radians(value)
    return out


def mirrored(p: np.ndarray) -> np.ndarray:
    return p[..., MIRROR] * MIRROR_SIGN


def with_yaw(p: np.ndarray, yaw: float) -> np.ndarray:
    out = p.copy()
    out[J["yaw"]] = yaw
    return out


STAND = pose(abd=8, fflex=12, labd=4)
# a plank: the body line at ~65 degrees from upright, straight arms under the shoulders
PLANK = pose(lean=65, lflex=-65, abd=4, labd=3)
WAVE_READY = pose(STAND, r_abd=95, r_fabd=55, r_fflex=0)
CLAP_READY = pose(STAND, abd=45, flex=75, fflex=25)


@dataclass(frozen=True)
class Kind:
    """An exercise or action: rest pose, the pose at the peak of a repetition, periods (s), the
    yaw range (degrees off facing the camera), whether every other rep mirrors left/right, and
    whether getting into and out of its rest pose is part of the action (waving: the arm going
    up is waving; getting down to a plank is not a push-up)."""

    name: str
    rest: np.ndarray
    peak: np.ndarray
    period: tuple[float, float]
    yaw: tuple[float, float]
    alternate: bool = False
    with_transitions: bool = False


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "squat",
            STAND,
            pose(STAND, lflex=85, knee=105, lean=38, flex=80, abd=10, labd=10, fflex=5),
            (1.6, 3.2),
            (0, 90),
        ),
        Kind("arm_raise", STAND, pose(STAND, abd=168, fflex=5), (1.4, 3.0), (0, 40)),
        Kind(
            "pushup",
            PLANK,
            pose(PLANK, lean=75, lflex=-75, flex=-50, fflex=100),
            (1.4, 3.0),
            (65, 90),
        ),
        Kind("jumping_jack", STAND, pose(STAND, abd=165, labd=24, lift=0.03), (1.3, 2.0), (0, 25)),
        Kind("waving", WAVE_READY, pose(WAVE_READY, r_fabd=105), (0.9, 1.6), (0, 40), False, True),
        Kind("clapping", CLAP_READY, pose(CLAP_READY, abd=2, flex=80), (0.6, 1.2), (20, 70)),
        # held out (evaluation only)
        Kind(
            "lunge",
            STAND,
            pose(STAND, l_lflex=75, l_knee=85, r_lflex=-25, r_knee=75, lean=5),
            (1.8, 3.2),
            (55, 90),
            True,
        ),
        Kind(
            "side_bend", STAND, pose(STAND, side=30, r_abd=150, l_abd=12), (1.8, 3.2), (0, 30), True
        ),
        Kind(
            "knee_raise",
            STAND,
            pose(STAND, l_lflex=95, l_knee=100, flex=20, fflex=80),
            (1.2, 2.4),
            (10, 60),
            True,
        ),
    )
}

# joint groups a random periodic "exercise" moves: (joints, degree range); "both" = both sides
_RANDOM_GROUPS: tuple[tuple[tuple[str, ...], tuple[float, float]], ...] = (
    (("abd",), (60, 160)),
    (("flex",), (60, 160)),
    (("fflex",), (60, 120)),
    (("lean",), (25, 60)),
    (("side",), (15, 35)),
    (("labd",), (12, 30)),
    (("lflex", "knee"), (40, 90)),
)


def random_kind(rng: np.random.Generator) -> Kind:
    """A procedurally random periodic motion: 1-3 joint groups, random amplitudes, one side or
    both, sometimes alternating. Counting these is counting cycles, whatever moves."""
    peak = STAND.copy()
    for g in rng.choice(len(_RANDOM_GROUPS), size=int(rng.integers(1, 4)), replace=False):
        joints, (lo, hi) = _RANDOM_GROUPS[int(g)]
        amp = float(rng.uniform(lo, hi)) * (1 if joints[0] != "side" else rng.choice([-1, 1]))
        sides = ["l_", "r_"] if rng.random() < 0.6 else [str(rng.choice(["l_", "r_"]))]
        for j in joints:
            names = [j] if j in J else [s + j for s in sides]
            for name in names:
                peak[J[name]] += math.radians(amp * (1.15 if j == "knee" else 1.0))
    period = float(rng.uniform(1.3, 3.2))
    return Kind("random", STAND, peak, (period, period), (0, 90), bool(rng.random() < 0.3))


def rep_shape(x: np.ndarray, out_frac: float, hold: float) -> np.ndarray:
    """Position 0..1 within a rep -> how far towards the peak (0 at both ends): a cosine out
    stroke over out_frac of the moving time, a hold at the peak, a cosine back stroke."""
    t_out = out_frac * (1 - hold)
    t_back = (1 - out_frac) * (1 - hold)
    out = 0.5 - 0.5 * np.cos(np.pi * np.clip(x / t_out, 0, 1))
    back = 0.5 + 0.5 * np.cos(np.pi * np.clip((x - t_out - hold) / t_back, 0, 1))
    return np.where(x < t_out + hold, out, back)


# ---- schedule: what the person does when ---------------------------------------------------------
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


# ---- bodies and clothes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """Proportions in units of a standing height of about 1."""

    head_r: float = 0.062
    neck: float = 0.035
    torso: float = 0.30
    shoulder: float = 0.10  # half the shoulder width
    hip: float = 0.055  # half the hip width
    upper: float = 0.17
    fore: float = 0.16
    thigh: float = 0.245
    shin: float = 0.235
    foot: float = 0.06
    torso_r: float = 0.075
    arm_r: float = 0.032
    leg_r: float = 0.042


BUILDS: dict[str, Build] = {
    "average": Build(),
    "slim": Build(torso_r=0.06, arm_r=0.025, leg_r=0.033, shoulder=0.09),
    "broad": Build(torso_r=0.095, arm_r=0.04, leg_r=0.052, shoulder=0.12, hip=0.065),
    # held out
    "stocky": Build(
        head_r=0.085,
        torso=0.28,
        upper=0.15,
        fore=0.14,
        thigh=0.21,
        shin=0.20,
        torso_r=0.11,
        arm_r=0.045,
        leg_r=0.058,
        shoulder=0.12,
    ),
    "lanky": Build(
        head_r=0.05,
        torso=0.32,
        upper=0.19,
        fore=0.18,
        thigh=0.27,
        shin=0.26,
        torso_r=0.055,
        arm_r=0.022,
        leg_r=0.03,
    ),
}


def jittered(build: Build, rng: np.random.Generator) -> Build:
    """Every proportion +-8 %: no two people alike."""
    vals = {k: v * float(rng.uniform(0.92, 1.08)) for k, v in build.__dict__.items()}
    return Build(**vals)


# points of the skeleton, in this order
POINTS = (
    "pelvis",
    "neck",
    "head",
    *(
        f"{s}_{p}"
        for s in "lr"
        for p in ("shoulder", "elbow", "hand", "hip", "knee", "ankle", "toe")
    ),
)
P = {name: i for i, name in enumerate(POINTS)}


def dirv(abd: np.ndarray, flex: np.ndarray, side: float) -> np.ndarray:
    """Limb direction [n, 3] (see JOINTS)."""
    return np.stack(
        [side * np.sin(abd) * np.cos(flex), np.cos(abd) * np.cos(flex), np.sin(flex)], axis=-1
    )


def skeleton3d(poses: np.ndarray, b: Build) -> np.ndarray:
    """Forward kinematics: poses [n, N_JOINTS] -> points [n, len(POINTS), 3] (pelvis at 0)."""
    n = len(poses)
    lean, side = poses[:, J["lean"]], poses[:, J["side"]]
    up = np.stack([np.sin(side) * np.cos(lean), -np.cos(side) * np.cos(lean), np.sin(lean)], -1)
    lat = np.stack([np.cos(side), np.sin(side), np.zeros(n)], -1)
    pts = np.zeros((n, len(POINTS), 3))
    pts[:, P["neck"]] = up * b.torso
    pts[:, P["head"]] = up * (b.torso + b.neck + b.head_r)
    for s, sign in (("l", 1.0), ("r", -1.0)):
        q = {k: poses[:, J[f"{s}_{k}"]] for k in ("abd", "flex", "fabd", "fflex", "labd", "lflex")}
        knee = poses[:, J[f"{s}_knee"]]
        sh = pts[:, P["neck"]] + sign * lat * b.shoulder
        el = sh + dirv(q["abd"], q["flex"], sign) * b.upper
        ha = el + dirv(q["abd"] + q["fabd"], q["flex"] + q["fflex"], sign) * b.fore
        hip = np.zeros((n, 3))
        hip[:, 0] = sign * b.hip
        kn = hip + dirv(q["labd"], q["lflex"], sign) * b.thigh
        an = kn + dirv(q["labd"], q["lflex"] - knee, sign) * b.shin
        toe = an + np.array([0.0, 0.0, b.foot])
        for name, v in (
            ("shoulder", sh),
            ("elbow", el),
            ("hand", ha),
            ("hip", hip),
            ("knee", kn),
            ("ankle", an),
            ("toe", toe),
        ):
            pts[:, P[f"{s}_{name}"]] = v
    return pts


def standing_height(b: Build) -> float:
    pts = skeleton3d(STAND[None], b)[0]
    top = pts[P["head"], 1] - b.head_r
    bottom = max(pts[P["l_ankle"], 1], pts[P["l_toe"], 1]) + b.leg_r
    return float(bottom - top)


# (name, point a, point b, radius attribute, radius factor, clothing part); drawn in the order of
# `draw_order` (far side first in a side view)
CAPSULES = (
    ("l_thigh", "l_hip", "l_knee", "leg_r", 1.0, "trousers"),
    ("l_shin", "l_knee", "l_ankle", "leg_r", 0.9, "shins"),
    ("l_foot", "l_ankle", "l_toe", "leg_r", 0.75, "shoes"),
    ("r_thigh", "r_hip", "r_knee", "leg_r", 1.0, "trousers"),
    ("r_shin", "r_knee", "r_ankle", "leg_r", 0.9, "shins"),
    ("r_foot", "r_ankle", "r_toe", "leg_r", 0.75, "shoes"),
    ("pelvis", "l_hip", "r_hip", "leg_r", 1.1, "trousers"),
    ("torso", "pelvis", "neck", "torso_r", 1.0, "shirt"),
    ("shoulders", "l_shoulder", "r_shoulder", "arm_r", 1.1, "shirt"),
    ("head", "head", "head", "head_r", 1.0, "skin"),
    ("l_upper", "l_shoulder", "l_elbow", "arm_r", 1.0, "sleeves"),
    ("l_fore", "l_elbow", "l_hand", "arm_r", 0.9, "forearms"),
    ("r_upper", "r_shoulder", "r_elbow", "arm_r", 1.0, "sleeves"),
    ("r_fore", "r_elbow", "r_hand", "arm_r", 0.9, "forearms"),
)
CAP = {c[0]: i for i, c in enumerate(CAPSULES)}


def draw_order(yaw: float) -> list[int]:
    """Capsule order for a yaw: front-on, legs, then torso and head, then arms; side-on, the far
    arm and leg, the torso and head, the near leg and arm."""
    body = [CAP[c] for c in ("pelvis", "torso", "shoulders", "head")]
    leg = {s: [CAP[f"{s}_{p}"] for p in ("thigh", "shin", "foot")] for s in "lr"}
    arm = {s: [CAP[f"{s}_{p}"] for p in ("upper", "fore")] for s in "lr"}
    if abs(yaw) < math.radians(45):
        return leg["l"] + leg["r"] + body + arm["l"] + arm["r"]
    far, near = ("l", "r") if yaw > 0 else ("r", "l")  # yaw > 0 turns the left side away
    return arm[far] + leg[far] + body + leg[near] + arm[near]


@dataclass
class Paint:
    """How a capsule is coloured: solid c1, stripes across it (period in figure heights),
    checks (stripes x the two halves along it), or a gradient from c1 to c2 along it."""

    mode: str
    c1: np.ndarray
    c2: np.ndarray
    period: float = 0.05


@dataclass
class Style:
    build: str
    pattern: str
    paints: dict[str, Paint]  # clothing part -> paint


def hsv(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return hsv(float(rng.random()), float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.15, 0.95)))


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    dark, light = np.array([70.0, 45, 32]), np.array([240.0, 205, 175])
    return dark + float(rng.random()) * (light - dark) + rng.normal(0, 6, 3)


def random_style(
    rng: np.random.Generator, builds: tuple[str, ...], patterns: tuple[str, ...]
) -> Style:
    build, pattern = str(rng.choice(builds)), str(rng.choice(patterns))
    skin, shirt, shirt2 = skin_colour(rng), random_colour(rng), random_colour(rng)
    trousers, shoes = random_colour(rng), random_colour(rng) * 0.6
    period = float(rng.uniform(0.03, 0.07))
    if pattern == "stripes":
        top = Paint("stripes", shirt, shirt2, period)
    elif pattern == "checker":
        top = Paint("checker", shirt, shirt2, period)
    elif pattern == "fade":
        top = Paint("gradient", shirt, shirt2)
    else:
        top = Paint("solid", shirt, shirt)
    sleeves = Paint("solid", shirt2, shirt2) if pattern == "two_tone" else top
    long_sleeves, long_trousers = rng.random() < 0.5, rng.random() < 0.6
    paints = {
        "skin": Paint("solid", skin, skin),
        "shirt": top,
        "sleeves": sleeves,
        "forearms": sleeves if long_sleeves else Paint("solid", skin, skin),
        "trousers": Paint("solid", trousers, trousers),
        "shins": Paint("solid", trousers, trousers)
        if long_trousers
        else Paint("solid", skin, skin),
        "shoes": Paint("solid", shoes, shoes),
    }
    return Style(build, pattern, paints)


@dataclass
class Person:
    """Someone on camera: where (feet at x, on the ground line y, both in picture heights), how
    tall (picture heights), their build and clothes, the yaw they face, what they do."""

    style: Style
    build: Build
    yaw: float  # radians, added to the poses' yaw (a bystander's way of standing)
    height: float
    x: float
    ground: float
    schedule: Schedule = field(default_factory=Schedule)
    sway: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))  # (amp, freq, phase) rows
    fidget: np.ndarray = field(default_factory=lambda: np.zeros((3, N_JOINTS)))
    fidget_freq: np.ndarray = field(default_factory=lambda: np.ones(3))
    fidget_phase: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def poses(self, t: np.ndarray) -> np.ndarray:
        out = self.schedule.poses(t)
        wob = np.sin(2 * np.pi * self.fidget_freq[None, :] * t[:, None] + self.fidget_phase)
        return out + wob @ self.fidget

    def points(self, t: np.ndarray) -> np.ndarray:
        """Image points [n, len(POINTS), 2] in picture heights (x right, y down)."""
        x, y = project(self.poses(t), self.build, self.yaw, self.height)
        sway = self.sway[:, 0] * np.sin(2 * np.pi * self.sway[:, 1] * t[:, None] + self.sway[:, 2])
        return np.stack([self.x + sway.sum(1)[:, None] + x, self.ground + y], -1)

    def centre_on(self, rest: np.ndarray, x: float) -> None:
        """Stand so that the person in pose `rest` is centred on x (a plank is long: standing
        where its feet go would put the head out of the picture)."""
        px, _ = project(rest[None], self.build, self.yaw, self.height)
        self.x = x - 0.5 * float(px.min() + px.max())

    def capsules(self, t: np.ndarray, t_blur: np.ndarray | None) -> list[Capsule]:
        pts = self.points(t)
        pts2 = self.points(t_blur) if t_blur is not None else None
        scale = self.height / standing_height(self.build)
        out = []
        mid = t[len(t) // 2 : len(t) // 2 + 1]
        for i in draw_order(self.yaw + float(self.schedule.poses(mid)[0, J["yaw"]])):
            _, a, b, rattr, rfac, part = CAPSULES[i]
            r = getattr(self.build, rattr) * rfac * scale
            paint = self.style.paints[part]
            out.append(
                Capsule(
                    pts[:, P[a]],
                    pts[:, P[b]],
                    r,
                    paint,
                    None if pts2 is None else pts2[:, P[a]],
                    None if pts2 is None else pts2[:, P[b]],
                    paint.period * self.height,
                )
            )
        return out


def radii(b: Build) -> np.ndarray:
    """Each point's thickness (how far below it the figure reaches)."""
    r = np.full(len(POINTS), b.arm_r)
    r[P["pelvis"]] = r[P["neck"]] = b.torso_r
    r[P["head"]] = b.head_r
    for s in "lr":
        for p in ("hip", "knee", "ankle", "toe"):
            r[P[f"{s}_{p}"]] = b.leg_r
    return r


def project(
    poses: np.ndarray, build: Build, yaw: float, height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Poses [n, N_JOINTS] -> image x, y [n, len(POINTS)] in picture heights, x from the middle
    of the ankles, y from the ground (the lowest point of the figure, less any lift)."""
    tall = standing_height(build)
    pts = skeleton3d(poses, build) / tall
    ang = (yaw + poses[:, J["yaw"]])[:, None]
    x = pts[..., 0] * np.cos(ang) + pts[..., 2] * np.sin(ang)
    y = pts[..., 1]
    lowest = (y + radii(build) / tall).max(axis=1, keepdims=True)
    feet = 0.5 * (x[:, P["l_ankle"]] + x[:, P["r_ankle"]])[:, None]
    lift = poses[:, J["lift"]][:, None]
    return (x - feet) * height, (y - lowest - lift) * height


def random_person(
    rng: np.random.Generator, builds: tuple[str, ...], patterns: tuple[str, ...], aspect: float
) -> Person:
    style = random_style(rng, builds, patterns)
    height = float(rng.uniform(0.4, 0.88))
    left = (aspect - 1) / 2  # the picture's x of the model's crop's left edge
    person = Person(
        style=style,
        build=jittered(BUILDS[style.build], rng),
        yaw=0.0,
        height=height,
        x=left + float(rng.uniform(0.3, 0.7)),
        ground=float(rng.uniform(max(0.62, height + 0.06), 0.98)),
    )
    person.sway = np.stack(
        [rng.uniform(0, 0.008, 3) * height, rng.uniform(0.05, 0.4, 3), rng.uniform(0, 6.3, 3)], 1
    )
    amp = np.zeros(N_JOINTS)
    for k in ("abd", "flex", "fflex"):
        amp[J[f"l_{k}"]] = amp[J[f"r_{k}"]] = 3.0
    amp[J["lean"]] = amp[J["side"]] = 1.5
    person.fidget = np.radians(rng.normal(0, 1, (3, N_JOINTS)) * amp)
    person.fidget_freq = rng.uniform(0.1, 0.6, 3)
    person.fidget_phase = rng.uniform(0, 2 * np.pi, 3)
    return person


def pick_yaw(kind: Kind, rng: np.random.Generator, current: float | None = None) -> float:
    """A yaw (radians) the kind is seen well from, either way round; mostly the current one
    when that will do (people turn now and then, not for every bout)."""
    lo, hi = kind.yaw
    if current is not None and lo <= abs(math.degrees(current)) <= hi and rng.random() < 0.7:
        return current
    return math.radians(float(rng.uniform(lo, hi))) * float(rng.choice([-1, 1]))


# ---- drawing ---------------------------------------------------------------------------------------
@dataclass
class Capsule:
    """A segment a-b [n, 2] (picture heights) of radius r, per frame; a2-b2: where it was at the
    start of the exposure (motion blur), or None."""

    a: np.ndarray
    b: np.ndarray
    r: float
    paint: Paint
    a2: np.ndarray | None = None
    b2: np.ndarray | None = None
    period: float = 0.05  # stripe period, picture heights


def _coverage(
    px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray, r: float, cross: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Anti-aliased coverage of a capsule at pixel centres (px [c, 1, w], py [c, h, 1]; a, b
    [c, 2] in pixels), the position along it (0..1), which side of its axis a pixel lies on
    (when `cross`), and its length."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    abx, aby = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    l2 = np.maximum(abx * abx + aby * aby, np.float32(1e-6))
    dx, dy = px - ax, py - ay
    t = np.clip((dx * (abx / l2)) + (dy * (aby / l2)), 0.0, 1.0)
    ex, ey = dx - t * abx, dy - t * aby
    alpha = np.clip(np.float32(r + 0.5) - np.sqrt(ex * ex + ey * ey), 0.0, 1.0)
    side = (dx * aby - dy * abx) if cross else None
    return alpha, t, side, np.sqrt(l2)


def draw_capsule(canvas: np.ndarray, cap: Capsule, scale: float, offset: np.ndarray) -> None:
    """Composite one capsule onto canvas [c, H, W, 3] (float32) in place. scale: pixels per
    picture height; offset [c, 2]: pixel offset of the picture in the canvas (shake). Each frame
    draws in its own window round the capsule (the largest over the frames, clamped into the
    canvas), all frames at once."""
    c, H, W, _ = canvas.shape
    a = (cap.a * scale + offset).astype(np.float32)
    b = (cap.b * scale + offset).astype(np.float32)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    blur = None
    if cap.a2 is not None and cap.b2 is not None:
        a2 = (cap.a2 * scale + offset).astype(np.float32)
        b2 = (cap.b2 * scale + offset).astype(np.float32)
        lo = np.minimum(lo, np.minimum(a2, b2))
        hi = np.maximum(hi, np.maximum(a2, b2))
        blur = (a2, b2)
    r = cap.r * scale
    lo = np.floor(lo - r - 1).astype(np.int64)  # [c, 2]
    hi = np.ceil(hi + r + 1).astype(np.int64)
    visible = (hi[:, 0] > 0) & (lo[:, 0] < W) & (hi[:, 1] > 0) & (lo[:, 1] < H)
    if not visible.any():
        return
    bw = int(min(W, max(1, (hi[:, 0] - lo[:, 0]).max())))
    bh = int(min(H, max(1, (hi[:, 1] - lo[:, 1]).max())))
    x0 = np.clip(lo[:, 0], 0, W - bw)
    y0 = np.clip(lo[:, 1], 0, H - bh)
    px = x0.astype(np.float32)[:, None, None] + (np.arange(bw, dtype=np.float32) + 0.5)
    py = y0.astype(np.float32)[:, None, None] + (np.arange(bh, dtype=np.float32) + 0.5)[:, None]
    checker = cap.paint.mode == "checker"
    alpha, t, side, length = _coverage(px, py, a, b, r, checker)
    if blur is not None:
        alpha = 0.5 * (alpha + _coverage(px, py, blur[0], blur[1], r)[0])
    if not visible.all():
        alpha *= visible[:, None, None]
    colour = paint_colour(cap.paint, t, side, length, cap.period * scale)
    base = (np.arange(c) * H + y0) * W + x0
    idx = base[:, None, None] + (np.arange(bh)[:, None] * W + np.arange(bw))
    flat = canvas.reshape(-1, 3)
    cur = flat[idx]
    cur += alpha[..., None] * (colour - cur)
    flat[idx] = cur


def paint_colour(
    paint: Paint, t: np.ndarray, side: np.ndarray | None, length: np.ndarray, period: float
) -> np.ndarray:
    c1, c2 = paint.c1.astype(np.float32), paint.c2.astype(np.float32)
    if paint.mode == "solid":
        return c1
    if paint.mode == "gradient":
        return c1 + t[..., None] * (c2 - c1)
    band = np.floor(t * (length / max(period, 1.0))).astype(np.int64)
    if side is not None:
        band = band + (side > 0)
    return np.where((band % 2 == 0)[..., None], c1, c2)


# ---- backgrounds -----------------------------------------------------------------------------------
@dataclass
class Background:
    """A static backdrop defined on picture coordinates (picture heights), so that it looks the
    same at any resolution. Colours [k, 3]; shapes: rows of (x0, y0, x1, y1) or (cx, cy, rx, ry)."""

    kind: str
    colours: np.ndarray
    angle: float = 0.0
    period: float = 0.1
    shapes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    shape_colours: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    grid: np.ndarray = field(default_factory=lambda: np.zeros((4, 4, 3)))  # value noise
    horizon: float = 0.7

    def render(self, xs: np.ndarray, ys: np.ndarray, px: float) -> np.ndarray:
        """[len(ys), len(xs), 3] float32 at pixel centres xs, ys (picture heights); px: the
        pixel size (for anti-aliased edges)."""
        X, Y = np.meshgrid(xs, ys)
        c = self.colours
        k = self.kind
        if k == "flat":
            img = np.broadcast_to(c[0], (*X.shape, 3)).copy()
        elif k == "gradient":
            s = np.clip(
                0.5 + 0.7 * (X * math.cos(self.angle) + Y * math.sin(self.angle) - 0.6), 0, 1
            )
            img = c[0] + s[..., None] * (c[1] - c[0])
        elif k == "stripes":
            u = (X * math.cos(self.angle) + Y * math.sin(self.angle)) / self.period
            s = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * u) / max(px / self.period * 4, 0.15), 0, 1)
            img = c[0] + s[..., None] * (c[1] - c[0])
        elif k == "tiles":
            u, v = X / self.period, Y / self.period
            check = ((np.floor(u) + np.floor(v)) % 2)[..., None]
            img = c[0] + check * (c[1] - c[0])
            edge = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * self.period
            grout = np.clip((0.006 - edge) / px + 0.5, 0, 1)[..., None]
            img = img + grout * (c[2] - img)
        elif k == "room":
            floor = np.clip((Y - self.horizon) / px + 0.5, 0, 1)[..., None]
            img = c[0] + floor * (c[1] - c[0])
        else:  # noise, rects, blobs: a base of value noise
            img = c[0] + self.noise(X, Y)[..., None] * (c[1] - c[0])
        if self.kind in ("noise", "flat", "room", "rects", "blobs"):
            img = img + (self.noise(X * 3.1, Y * 3.1) - 0.5)[..., None] * 18
        for shape, colour in zip(self.shapes, self.shape_colours, strict=True):
            if self.kind == "blobs":
                cx, cy, rx, ry = shape
                d = np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
                cov = np.clip((1 - d) * min(rx, ry) / px + 0.5, 0, 1)
            else:
                x0, y0, x1, y1 = shape
                cov = np.clip(np.minimum(X - x0, x1 - X) / px + 0.5, 0, 1) * np.clip(
                    np.minimum(Y - y0, y1 - Y) / px + 0.5, 0, 1
                )
            img = img + cov[..., None] * (colour - img)
        return np.clip(img, 0, 255).astype(np.float32)

    def noise(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Smooth value noise in 0..1 (bilinear over a random grid, wrapping)."""
        g = self.grid[..., 0]
        gh, gw = g.shape
        u, v = (X / self.period) % gw, (Y / self.period) % gh
        i0, j0 = np.floor(v).astype(int), np.floor(u).astype(int)
        fv, fu = v - i0, u - j0
        i1, j1 = (i0 + 1) % gh, (j0 + 1) % gw
        top = g[i0, j0] * (1 - fu) + g[i0, j1] * fu
        bottom = g[i1, j0] * (1 - fu) + g[i1, j1] * fu
        return top * (1 - fv) + bottom * fv


def random_background(
    rng: np.random.Generator, kinds: tuple[str, ...], aspect: float
) -> Background:
    kind = str(rng.choice(kinds))
    colours = np.stack([random_colour(rng) for _ in range(3)])
    bg = Background(
        kind,
        colours,
        angle=float(rng.uniform(0, np.pi)),
        period=float(rng.uniform(0.04, 0.25)),
        grid=rng.random((8, 8, 1)),
        horizon=float(rng.uniform(0.5, 0.8)),
    )
    if kind == "noise":
        bg.period = float(rng.uniform(0.08, 0.3))
    if kind == "tiles":
        bg.period = float(rng.uniform(0.09, 0.25))
    if kind in ("rects", "room", "blobs"):
        count = int(rng.integers(3, 8)) if kind == "room" else int(rng.integers(8, 35))
        cx = rng.uniform(-0.1, aspect + 0.1, count)
        cy = rng.uniform(-0.1, bg.horizon if kind == "room" else 1.1, count)
        w, h = rng.uniform(0.03, 0.3, count), rng.uniform(0.03, 0.3, count)
        if kind == "blobs":
            bg.shapes = np.stack([cx, cy, w / 2, h / 2], 1)
        else:
            bg.shapes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        bg.shape_colours = np.stack([random_colour(rng) for _ in range(count)])
        bg.period = float(rng.uniform(0.15, 0.4))
    return bg


# ---- the rest of the scene -------------------------------------------------------------------------
@dataclass
class Mover:
    """Something moving in the background: a disc bouncing or circling, or a bar swinging or
    sliding, with its own period; only during [on, off)."""

    path: str  # bounce | orbit | swing | slide
    cx: float
    cy: float
    size: float  # radius (disc) / half length (bar), picture heights
    extent: float
    period: float
    phase: float
    paint: Paint
    on: float
    off: float

    def capsule(self, t: np.ndarray, t_blur: np.ndarray | None) -> Capsule:
        a, b = self._ends(t)
        a2, b2 = self._ends(t_blur) if t_blur is not None else (None, None)
        r = self.size if self.path in ("bounce", "orbit") else self.size * 0.25
        return Capsule(a, b, r, self.paint, a2, b2)

    def _ends(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.clip(t, self.on, self.off)
        w = 2 * np.pi * (t / self.period + self.phase)
        c = np.stack([np.full_like(t, self.cx), np.full_like(t, self.cy)], -1)
        if self.path == "bounce":
            c[:, 1] -= self.extent * np.abs(np.sin(w / 2))
            return c, c
        if self.path == "orbit":
            c[:, 0] += self.extent * np.cos(w)
            c[:, 1] += self.extent * np.sin(w)
            return c, c
        if self.path == "slide":
            c[:, 0] += self.extent * np.sin(w)
            d = np.stack([np.full_like(t, self.size), np.zeros_like(t)], -1)
            return c - d, c + d
        ang = 0.6 * np.sin(w)  # swing: a pendulum hanging from c
        tip = c + 2 * self.size * np.stack([np.sin(ang), np.cos(ang)], -1)
        return c, tip


@dataclass
class Light:
    """Exposure over time: a slow drift, a step (a lamp switched), a white-balance drift, and a
    static side light across the picture."""

    level: float
    drift: float
    drift_period: float
    drift_phase: float
    step_at: float
    step: float
    tint: np.ndarray  # [3] drift amplitude per channel
    tint_period: float
    side: float  # gain change across the picture width

    def gain(self, t: np.ndarray) -> np.ndarray:
        """[n, 3] per-channel gain at times t."""
        g = self.level * (
            1 + self.drift * np.sin(2 * np.pi * t / self.drift_period + self.drift_phase)
        )
        g = g * np.where(t >= self.step_at, 1 + self.step, 1.0)
        tint = 1 + self.tint[None, :] * np.sin(2 * np.pi * t[:, None] / self.tint_period)
        return g[:, None] * tint


@dataclass
class Camera:
    """What the page sends: the picture size and frame rate of the camera, and how long a frame
    takes from capture to the server's sampler."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    lag: float = 0.05

    @property
    def aspect(self) -> float:
        return self.width / self.height


# (width, height, weight): getUserMedia({video: true}) gives 640x480 in Chrome; laptops' 16:9
# cameras, and WebRTC's scaling down under a tight bandwidth estimate, give the others
CAMERAS = ((640, 480, 0.45), (320, 240, 0.15), (480, 360, 0.1), (640, 360, 0.15), (1280, 720, 0.15))


def random_camera(rng: np.random.Generator) -> Camera:
    w = np.array([c[2] for c in CAMERAS])
    width, height, _ = CAMERAS[int(rng.choice(len(CAMERAS), p=w / w.sum()))]
    fps = float(rng.choice([30.0, 24.0, 15.0], p=[0.6, 0.15, 0.25]))
    return Camera(width, height, fps, float(rng.uniform(0.03, 0.09)))


@dataclass
class Scene:
    camera: Camera
    background: Background
    person: Person
    split: str
    bystander: Person | None = None  # a second person, standing still
    mover: Mover | None = None
    light: Light | None = None
    noise: float = 0.0  # camera noise std (0..255 luma) at the rendered resolution
    shake: np.ndarray = field(default_factory=lambda: np.zeros((3, 4)))  # (ax, ay, freq, phase)
    exposure: float = 0.0  # seconds the shutter is open (motion blur)

    def shake_at(self, t: np.ndarray) -> np.ndarray:
        """Camera shake [n, 2] in picture heights."""
        s = np.sin(2 * np.pi * self.shake[None, :, 2] * t[:, None] + self.shake[None, :, 3])
        return np.stack([(s * self.shake[:, 0]).sum(1), (s * self.shake[:, 1]).sum(1)], -1)

    def describe(self) -> dict[str, object]:
        """What an episode's info records about its scene (and what the split tests check)."""
        return {
            "split": self.split,
            "background": self.background.kind,
            "build": self.person.style.build,
            "pattern": self.person.style.pattern,
            "bystander": None
            if self.bystander is None
            else [self.bystander.style.build, self.bystander.style.pattern],
            "mover": None if self.mover is None else self.mover.path,
            "camera": [self.camera.width, self.camera.height, self.camera.fps],
        }


def sample_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A random scene of a split, with an idle person (the family gives them a schedule)."""
    backgrounds, builds, patterns = split_sets(split)
    camera = random_camera(rng)
    aspect = camera.aspect
    scene = Scene(
        camera,
        random_background(rng, backgrounds, aspect),
        random_person(rng, builds, patterns, aspect),
        split,
    )
    if rng.random() < 0.35:
        other = random_person(rng, builds, patterns, aspect)
        other.height = scene.person.height * float(rng.uniform(0.5, 0.95))
        other.x = scene.person.x + float(rng.choice([-1, 1]) * rng.uniform(0.2, 0.45))
        other.ground = min(0.99, scene.person.ground - float(rng.uniform(0.0, 0.15)))
        other.yaw = math.radians(float(rng.uniform(-60, 60)))
        scene.bystander = other
    if rng.random() < 0.45:
        path = str(rng.choice(["bounce", "orbit", "swing", "slide"]))
        on = float(rng.uniform(-5, 20)) if rng.random() < 0.5 else -1e9
        scene.mover = Mover(
            path,
            cx=float(rng.uniform(0.1, aspect - 0.1)),
            cy=float(rng.uniform(0.1, 0.8)),
            size=float(rng.uniform(0.02, 0.07)),
            extent=float(rng.uniform(0.05, 0.25)),
            period=float(rng.uniform(0.6, 4.0)),
            phase=float(rng.random()),
            paint=Paint("solid", random_colour(rng), random_colour(rng)),
            on=on,
            off=on + float(rng.uniform(5, 40)) if on > -1e8 else 1e9,
        )
    scene.light = Light(
        level=float(rng.uniform(0.7, 1.15)),
        drift=float(rng.uniform(0, 0.2)),
        drift_period=float(rng.uniform(5, 40)),
        drift_phase=float(rng.uniform(0, 2 * np.pi)),
        step_at=float(rng.uniform(0, 60)) if rng.random() < 0.25 else 1e9,
        step=float(rng.uniform(-0.3, 0.3)),
        tint=rng.uniform(-0.06, 0.06, 3),
        tint_period=float(rng.uniform(10, 60)),
        side=float(rng.uniform(-0.3, 0.3)),
    )
    scene.noise = float(rng.uniform(1.0, 10.0))
    if rng.random() < 0.6:
        scene.shake = np.stack(
            [
                rng.uniform(0, 0.006, 3),
                rng.uniform(0, 0.006, 3),
                rng.uniform(0.3, 3.0, 3),
                rng.uniform(0, 2 * np.pi, 3),
            ],
            1,
        )
    scene.exposure = float(rng.uniform(0.01, 0.04)) if rng.random() < 0.5 else 0.0
    return scene


# ---- the served path -------------------------------------------------------------------------------
def render_size(camera: Camera, rows: int = RENDER_H) -> tuple[int, int]:
    """(width, height) to draw a camera picture at: `rows` high, even, and the same intermediate
    size in media/video_in.py's `to_model_frame` as the camera's own picture (so the crop keeps
    exactly the served geometry)."""
    want = round(camera.width * FRAME_SIZE / camera.height)
    width = 2 * round(camera.width * rows / camera.height / 2)
    for w in sorted(range(width - 4, width + 6, 2), key=lambda v: abs(v - width)):
        if round(w * FRAME_SIZE / rows) == want:
            return w, rows
    raise ValueError(f"no render width for {camera}")


# BT.601 limited range: what swscale assumes for an untagged yuv420p frame, as a camera's
# I420 and a decoded WebRTC frame are
_YUV = np.array(
    [[65.738, 129.057, 25.064], [-37.945, -74.494, 112.439], [112.439, -94.154, -18.285]],
    np.float32,
) / np.float32(256)


def to_i420(
    rgb: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float RGB [c, h, w, 3] (0..255) -> uint8 Y [c, h, w], U, V [c, h/2, w/2] (chroma of the
    mean of each 2x2 block), with camera noise of std `noise` on luma (half on chroma) from rng.
    (One matrix-vector product per plane: numpy's [N, 3] @ [3, 3] is ~100x slower, and strided
    reads of RGB triples ~5x.)"""
    planes = [rgb @ _YUV[0] + np.float32(16.5)]
    for row in _YUV[1:]:
        full = rgb @ (row / 4)
        rows = full[:, 0::2] + full[:, 1::2]
        planes.append(rows[:, :, 0::2] + rows[:, :, 1::2] + np.float32(128.5))
    if noise > 0 and rng is not None:
        for i, p in enumerate(planes):  # + 0.5 above: rounding by truncation below
            p += noise_slice(rng, p.size).reshape(p.shape) * np.float32(
                noise if i == 0 else noise / 2
            )
    y, u, v = (np.clip(p, 0, 255).astype(np.uint8) for p in planes)
    return y, u, v


class ModelFramer:
    """media/video_in.py's `to_model_frame` on I420 pictures of one size, through one reused
    av.VideoFrame (its swscale context is made once; a new VideoFrame per picture costs ~0.3 ms
    for the context alone, against ~0.06 ms for the scaling)."""

    def __init__(self, width: int, height: int, size: int = FRAME_SIZE) -> None:
        self.frame = av.VideoFrame(width, height, "yuv420p")
        self.size = size
        self.planes = [
            np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size)[:, : p.width]
            for p in self.frame.planes
        ]

    def __call__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        for plane, data in zip(self.planes, (y, u, v), strict=True):
            plane[...] = data
        return to_model_frame(self.frame, self.size)


def frame_times(rng: np.random.Generator, n: int, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Capture time of the frame the server gives micro-turn m (the newest that arrived in the
    slice [m, m+1) x 200 ms, `lag` +- 5 ms after its capture), and whether there was one."""
    offset = float(rng.uniform(0, 1 / camera.fps))  # the camera's clock against the call's
    lag = camera.lag + rng.uniform(-0.005, 0.005, n)
    end = (np.arange(n) + 1) * DT - lag
    times = offset + np.floor((end - offset) * camera.fps) / camera.fps
    has = rng.random(n) > P_DROP
    return times, has


@dataclass
class Backdrop:
    """The background drawn once per episode, `margin` pixels wider all round than the picture
    (room for the camera shake)."""

    pixels: np.ndarray
    margin: int


def backdrop(scene: Scene, width: int, height: int) -> Backdrop:
    """The background with the bystander, who stands still, drawn into it."""
    margin = int(np.ceil(np.abs(scene.shake[:, :2]).sum(0).max() * height)) + 1
    xs = (np.arange(width + 2 * margin) - margin + 0.5) / height
    ys = (np.arange(height + 2 * margin) - margin + 0.5) / height
    pixels = scene.background.render(xs, ys, 1 / height)
    if scene.bystander is not None:
        offset = np.full((1, 2), margin, np.float32)
        for cap in scene.bystander.capsules(np.zeros(1), None):
            draw_capsule(pixels[None], cap, float(height), offset)
    return Backdrop(pixels, margin)


def draw_scene(
    scene: Scene,
    times: np.ndarray,
    rng: np.random.Generator,
    width: int,
    height: int,
    back: Backdrop | None = None,
) -> np.ndarray:
    """The camera pictures at `times`, drawn `width` x `height`: float32 [n, height, width, 3]."""
    n = len(times)
    scale = float(height)  # pixels per picture height
    back = back if back is not None else backdrop(scene, width, height)
    margin, pixels = back.margin, back.pixels
    t_blur = times - scene.exposure if scene.exposure > 0 else None
    shift = np.rint(scene.shake_at(times) * scale).astype(np.int64)
    canvas = np.empty((n, height, width, 3), np.float32)
    for i in range(n):
        dx, dy = shift[i]
        canvas[i] = pixels[margin + dy : margin + dy + height, margin + dx : margin + dx + width]
    offset = -shift.astype(np.float32)
    caps: list[Capsule] = []
    if scene.mover is not None:
        caps.append(scene.mover.capsule(times, t_blur))
    caps += scene.person.capsules(times, t_blur)
    for cap in caps:
        draw_capsule(canvas, cap, scale, offset)
    if scene.light is not None:
        side = 1 + scene.light.side * (np.arange(width, dtype=np.float32) / width - 0.5)
        canvas *= scene.light.gain(times).astype(np.float32)[:, None, None, :] * side[:, None]
    return canvas


@dataclass
class Video:
    frames: np.ndarray  # uint8 [n, 40, 40, 3], what the model sees
    has_frame: np.ndarray  # bool [n]
    times: np.ndarray  # capture time (s, from micro-turn 0's start) of each micro-turn's frame
    completed: np.ndarray  # repetitions completed by each frame's capture time
    rep_mts: np.ndarray  # micro-turns whose (seen) frame is the first past a rep completion


def render_video(scene: Scene, n: int, rng: np.random.Generator, rows: int = RENDER_H) -> Video:
    """The episode's model frames, one per micro-turn, through the served crop and resize."""
    times, has = frame_times(rng, n, scene.camera)
    width, height = render_size(scene.camera, rows)
    framer = ModelFramer(width, height)
    back = backdrop(scene, width, height)
    frames = np.zeros((n, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    seen = np.flatnonzero(has)
    for c0 in range(0, len(seen), CHUNK):
        idx = seen[c0 : c0 + CHUNK]
        pic = draw_scene(scene, times[idx], rng, width, height, back)
        y, u, v = to_i420(pic, rng, scene.noise)
        for j, m in enumerate(idx):
            frames[m] = framer(y[j], u[j], v[j])
    completed = scene.person.schedule.completed(times)
    return Video(frames, has, times, completed, rep_micro_turns(completed, has))


def rep_micro_turns(completed: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Micro-turns whose seen frame is the first past a rep's completion (one entry per rep)."""
    out: list[int] = []
    last = None
    for m in np.flatnonzero(has):
        k = int(np.floor(completed[m] + 1e-9))
        if last is not None and k > last:
            out += [int(m)] * (k - last)
        last = k
    return np.array(out, np.int64)


def micro_turn_of(t: float, times: np.ndarray) -> int:
    """The first micro-turn whose frame was captured at or after t (len(times) if none)."""
    return int(np.searchsorted(times, t - 1e-9))


# ---- the live check: Chromium's fake camera ---------------------------------------------------------
def write_y4m(path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int) -> Path:
    """uint8 RGB pictures [height, width, 3] as a Y4M for Chromium's fake camera: the same header
    and colour conversion as tests/browser/harness.py's `make_motion_y4m` (a test checks the bytes
    are identical on the harness's circling square)."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f = rgb.astype(np.float32)
            r, g, b = f[..., 0], f[..., 1], f[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = (b - y) * 0.564 + 128
            v = (r - y) * 0.713 + 128
            out.write(b"FRAME\n")
            for plane in (y, _sub(u, height, width), _sub(v, height, width)):
                out.write(np.clip(plane, 0, 255).astype(np.uint8).tobytes())
    return path


def _sub(c: np.ndarray, height: int, width: int) -> np.ndarray:
    return c.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))


def live_scene(seed: int = 0, seconds: float = 20.0, fps: int = 15) -> Scene:
    """A held-out scene for the demo page's live check: a held-out background and figure doing
    squats (a kind the model counts in training; the scene is what is held out) between idle
    stretches, starting and ending at rest so that Chromium's looping of the file has no jump."""
    rng = np.random.default_rng([29, seed])
    scene = sample_scene(rng, "heldout")
    scene.camera = Camera(320, 240, float(fps), 0.05)
    scene.mover = None  # a fixed, calm check: the figure is what moves
    scene.person.x = 320 / 240 / 2
    assert scene.light is not None
    scene.light.step_at = 1e9  # no lamp switched; drifts that loop with the file
    scene.light.drift_period = scene.light.tint_period = seconds
    kind = KINDS["squat"]
    yaw = pick_yaw(kind, rng)
    sched = scene.person.schedule
    sched.idle(2.0, with_yaw(STAND, yaw))
    while sched.end < seconds - 6:
        period = float(rng.uniform(1.8, 2.6))
        reps = min(int(rng.integers(3, 6)), int((seconds - 2 - sched.end) / period))
        sched.bout(kind, reps, period, rng, yaw=yaw)
        sched.idle(float(rng.uniform(1.5, 3.0)))
    sched.idle(max(0.0, seconds - sched.end))
    return scene


def write_live_y4m(
    path: Path,
    seed: int = 0,
    seconds: float = 20.0,
    width: int = 320,
    height: int = 240,
    fps: int = 15,
) -> list[float]:
    """Write the live check's Y4M (`live_scene` at the camera's full resolution) and return the
    true rep completion times in seconds from the file's first frame (the file loops in
    Chromium: add multiples of `seconds`)."""
    scene = live_scene(seed, seconds, fps)
    rng = np.random.default_rng([29, seed, 1])
    times = np.arange(int(seconds * fps)) / fps
    back = backdrop(scene, width, height)

    def pictures() -> Iterable[np.ndarray]:
        for c0 in range(0, len(times), CHUNK):
            pic = draw_scene(scene, times[c0 : c0 + CHUNK], rng, width, height, back)
            pic += noise_slice(rng, pic.size).reshape(pic.shape) * np.float32(scene.noise)
            yield from np.clip(pic + 0.5, 0, 255).astype(np.uint8)

    write_y4m(path, pictures(), width, height, fps)
    return [t for t in scene.person.schedule.rep_times() if t < seconds]
