"""Scenes: textured and cluttered backgrounds, figure styles (builds, colours, clothing
patterns), lighting drift and steps, camera noise, motion blur (the exposure time), camera shake,
a moving object in the background and a second person standing still. Backgrounds, builds and
patterns are split: `split="heldout"` draws only from the held-out ones, `split="train"` never
does (the sets: poses.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lab.tasks.figure.body import Person, random_person
from lab.tasks.figure.draw import Capsule, Paint, random_colour
from lab.tasks.figure.poses import split_sets


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
