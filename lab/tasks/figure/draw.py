"""Drawing: paints (solid, stripes, checks, a gradient along a limb), random colours, and
anti-aliased capsules composited into a chunk of frames at once, motion blur (the exposure time)
included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Paint:
    """How a capsule is coloured: solid c1, stripes across it (period in figure heights),
    checks (stripes x the two halves along it), or a gradient from c1 to c2 along it."""

    mode: str
    c1: np.ndarray
    c2: np.ndarray
    period: float = 0.05


def hsv(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return hsv(float(rng.random()), float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.15, 0.95)))


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
