"""Bodies and clothes: builds (proportions; held-out ones), the skeleton's forward kinematics
and its projection at a yaw, the capsules a figure is drawn with and their order, clothing styles
(colours and patterns; held-out ones), and a person on camera: where, how tall, swaying and
fidgeting a little, doing what their schedule says."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lab.tasks.figure.draw import Capsule, Paint, random_colour
from lab.tasks.figure.poses import N_JOINTS, STAND, J
from lab.tasks.figure.schedule import Schedule


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
class Style:
    build: str
    pattern: str
    paints: dict[str, Paint]  # clothing part -> paint


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
