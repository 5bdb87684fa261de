"""Synthetic camera video: an object moving periodically, rendered straight at the model's 40x40.

Two motions: around an ellipse (the QA harness's camera, media/synthetic.py `moving_square_frame`:
a white square circling on grey, one revolution per 2 s, as the server crops and shrinks it) and up
and down (push-up like). A repetition completes each time the object passes the top of its path.

The square is drawn with exact area coverage (anti-aliased), which is what shrinking a sharp
320x240 picture to 40x40 gives. One frame per micro-turn, sampled like the server does: the newest
camera frame of the 200 ms slice (a little before its end), sometimes none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.config import FRAME_SIZE
from inference.protocol import MICROTURN_MS

S = FRAME_SIZE
DT = MICROTURN_MS / 1000


_BANK = np.random.default_rng(12345).standard_normal(1 << 22, dtype=np.float32)


def noise_slice(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit Gaussian noise, a random slice of a fixed bank (drawing fresh noise was the data
    pipeline's main cost); random sign and order keep slices from repeating exactly."""
    out = np.empty(size, np.float32)
    filled = 0
    while filled < size:
        take = min(size - filled, len(_BANK) // 2)
        start = int(rng.integers(0, len(_BANK) - take))
        chunk = _BANK[start : start + take]
        out[filled : filled + take] = chunk if rng.random() < 0.5 else -chunk[::-1]
        filled += take
    return out


def _coverage(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fraction of each pixel [i, i+1) covered by [lo, hi): lo, hi [n] -> [n, S]."""
    edges = np.arange(S, dtype=np.float32)[None, :]
    return np.clip(np.minimum(edges + 1, hi[:, None]) - np.maximum(edges, lo[:, None]), 0.0, 1.0)


def draw_squares(
    bg: np.ndarray, cx: np.ndarray, cy: np.ndarray, side: float, color: np.ndarray
) -> np.ndarray:
    """Squares centred at (cx[i], cy[i]) (pixel units) on a flat background: float32 [n, S, S, 3]."""
    cy, cx = cy.astype(np.float32), cx.astype(np.float32)
    cov = (
        _coverage(cy - side / 2, cy + side / 2)[:, :, None]
        * _coverage(cx - side / 2, cx + side / 2)[:, None, :]
    )
    bg32, fg32 = bg.astype(np.float32), color.astype(np.float32)
    return bg32 + (fg32 - bg32) * cov[..., None]


@dataclass
class Motion:
    kind: str  # "ellipse" | "updown"
    period_s: float
    cx: float
    cy: float
    rx: float
    ry: float
    side: float
    direction: int  # +1 / -1 (ellipse)
    phase0: float  # phase (revolutions) at t = 0
    bg: np.ndarray  # [3]
    fg: np.ndarray  # [3]
    noise: float  # pixel noise std

    def position(self, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """phase in revolutions; top of the path at phase = 0 (mod 1)."""
        angle = 2 * np.pi * phase
        if self.kind == "ellipse":
            # top (min y) at phase 0: y = cy - ry cos(angle), x = cx + dir rx sin(angle)
            return self.cx + self.direction * self.rx * np.sin(angle), self.cy - self.ry * np.cos(
                angle
            )
        return np.full_like(angle, self.cx), self.cy - self.ry * np.cos(angle)


def harness_motion() -> Motion:
    """The QA harness camera as the server sees it: 320x240, centre-cropped to 240x240, shrunk to
    40x40 (scale 1/6); square side 48 -> 8; centre (160, 120) -> (20, 20) after the 40 px crop;
    radii (112, 72) -> (18.7, 12); one revolution per 2 s, clockwise on screen (y down) starting
    at the right (angle = 2 pi t / 2, y down): its top is reached at t = 1.5 s."""
    return Motion(
        kind="ellipse",
        period_s=2.0,
        cx=20.0,
        cy=20.0,
        rx=112 / 6,
        ry=72 / 6,
        side=8.0,
        direction=1,  # x = cx + rx cos(a), y = cy + ry sin(a): top at a = 3pi/2, moving rightwards
        phase0=0.25,  # phase 0 (top) at t = 1.5 s: phase = t/2 + 0.25
        bg=np.full(3, 64.0),
        fg=np.full(3, 255.0),
        noise=1.5,
    )


def random_motion(rng: np.random.Generator) -> Motion:
    if rng.random() < 0.3:
        m = harness_motion()
        m.period_s = float(rng.uniform(1.6, 2.4)) if rng.random() < 0.5 else 2.0
        m.phase0 = float(rng.random())
        m.noise = float(rng.uniform(0.5, 4.0))
        return m
    kind = "ellipse" if rng.random() < 0.6 else "updown"
    side = float(rng.uniform(5, 11))
    bg_level = rng.uniform(20, 200)
    bg = np.clip(bg_level + rng.normal(0, 15, 3), 0, 255)
    fg_level = bg_level + rng.choice([-1, 1]) * rng.uniform(60, 200)
    if not 0 <= fg_level <= 255:
        fg_level = bg_level - np.sign(fg_level - bg_level) * rng.uniform(60, 150)
    fg = np.clip(fg_level + rng.normal(0, 30, 3), 0, 255)
    rx = float(rng.uniform(5, 17))
    ry = float(rng.uniform(5, 14))
    return Motion(
        kind=kind,
        period_s=float(rng.uniform(1.0, 3.0)),
        cx=float(rng.uniform(14, 26)),
        cy=float(rng.uniform(16, 24)),
        rx=rx,
        ry=ry,
        side=side,
        direction=int(rng.choice([-1, 1])),
        phase0=float(rng.random()),
        bg=bg,
        fg=fg,
        noise=float(rng.uniform(0.5, 6.0)),
    )


def render(
    motion: Motion, n: int, moving: np.ndarray, rng: np.random.Generator, lag_s: float = 0.03
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames for n micro-turns; `moving` [n] bool says when the object moves (else it holds still).

    -> frames uint8 [n, S, S, 3], has_frame [n], phase [n] (revolutions, unwrapped, at the frame
    time), and rep_mt: micro-turns whose frame is the first past a top (a repetition completed).
    """
    # each micro-turn: time advances 0.2 s; phase advances only while moving (with a little jitter
    # of speed so periods are not exactly constant)
    speed = np.where(moving, 1.0, 0.0) * rng.uniform(0.93, 1.07, n)
    # frame time within the slice: the newest camera frame, a little before the slice end
    offset = DT - lag_s - rng.uniform(0.0, 1 / 15, n)
    d_phase = speed * DT / motion.period_s
    phase_start = motion.phase0 + np.concatenate([[0.0], np.cumsum(d_phase)[:-1]])
    phase = phase_start + speed * offset / motion.period_s
    x, y = motion.position(phase)
    img = draw_squares(motion.bg, x, y, motion.side, motion.fg)
    if motion.noise > 0:
        img += noise_slice(rng, img.size).reshape(img.shape) * np.float32(motion.noise)
    frames = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    has_frame = rng.random(n) > 0.04
    # repetitions: floor(phase) increases between consecutive *seen* frames
    reps = []
    last = None
    for m in range(n):
        if not has_frame[m]:
            continue
        k = int(np.floor(phase[m]))
        if last is not None and k > last:
            reps.append(m)
        last = k
    return frames, has_frame, phase, np.array(reps, dtype=np.int64)


def still_frames(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A static scene (an object that does not move), for episodes without motion."""
    motion = random_motion(rng)
    frames, has_frame, _, _ = render(motion, n, np.zeros(n, bool), rng)
    return frames, has_frame
