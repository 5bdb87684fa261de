"""The figure's poses, the kinds of exercise and action it does, and the splits.

A person is an articulated 2-D figure (capsules for torso, limbs and feet, a disc for the head)
posed by joint angles in a simple 3-D body frame and projected at a yaw (front, three-quarter or
side view; body.py). Exercises are joint-angle trajectories over a phase:

    pose(phase) = rest + p(frac(phase)) * (peak - rest)

with p a cosine bump 0 -> 1 -> 0 (an out stroke, a hold at the peak, a back stroke; random
asymmetry per bout). **One repetition is one full cycle, and it completes when the phase crosses
an integer: the return to the rest pose.** (How a bout's phase runs in time: schedule.py.)

Kinds: the training exercises (squat, arm raise, push-up, jumping jack), actions that are not
counted exercises (waving, clapping: the start/stop task), the held-out exercises (lunge, side bend,
knee raise; evaluation only) and procedurally random periodic "exercises" (random joints, random
amplitudes), so that counting is learnt as counting cycles, not as one motion.

The splits live here too: the kinds, and the backgrounds, builds and patterns of each split
(`split="heldout"` draws only from the held-out ones, `split="train"` never does; scene.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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


def pick_yaw(kind: Kind, rng: np.random.Generator, current: float | None = None) -> float:
    """A yaw (radians) the kind is seen well from, either way round; mostly the current one
    when that will do (people turn now and then, not for every bout)."""
    lo, hi = kind.yaw
    if current is not None and lo <= abs(math.degrees(current)) <= hi and rng.random() < 0.7:
        return current
    return math.radians(float(rng.uniform(lo, hi))) * float(rng.choice([-1, 1]))
