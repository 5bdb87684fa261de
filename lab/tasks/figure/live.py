"""The live check: a held-out scene as a Y4M for Chromium's fake camera (the demo page's check
of the served path with a real browser), and its true rep times."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lab.tasks.figure.poses import KINDS, STAND, pick_yaw, with_yaw
from lab.tasks.figure.scene import Camera, Scene, sample_scene
from lab.tasks.figure.video import CHUNK, backdrop, draw_scene
from lab.tasks.motion import noise_slice


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
