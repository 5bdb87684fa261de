"""The served path (issue 29, point 2): a scene is rendered as a camera picture of the aspect the
page sends (the browser's default 640x480 among others), at a reduced height (`RENDER_H` rows; the
geometry of media/video_in.py's crop is unchanged by the reduction, see `render_size`), converted
to I420 as a camera's frames are, and handed to media/video_in.py's own `to_model_frame` (centre
crop, swscale resize to 40x40). One frame per micro-turn, the newest the server would have: the
camera's frames arrive `lag` after capture, and the sampler takes the newest that arrived within
the 200 ms slice (`frame_times`). Only those frames are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from inference.config import FRAME_SIZE
from inference.protocol import MICROTURN_MS
from lab.tasks.figure.draw import Capsule, draw_capsule
from lab.tasks.figure.scene import Camera, Scene
from lab.tasks.motion import noise_slice
from media.video_in import to_model_frame

DT = MICROTURN_MS / 1000
RENDER_H = 120  # rows a frame is drawn at before the served resize (3x the model's 40)
CHUNK = 32  # frames drawn together (vectorised over frames)
P_DROP = 0.04  # a micro-turn without a frame now and then (as lab/tasks/motion.py)


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
